"""The customer portal: ``/portal/<signed link>`` and what a customer does there.

The customer is always the one the verified link names (``_customer``): no path segment or
form field can point anywhere else, and an invoice named by a form must be one of that
customer's open invoices. The console asks the services with its own token
(``RECEIVABLES_CONSOLE_TOKEN``); disputes go to ``ar.disputes`` as ``dispute.opened`` with source
``receivables/portal``. Each form carries a random id drawn with the page, which becomes the
event's or plan's id, so a form sent twice counts once.
"""

from __future__ import annotations

import asyncio
import hashlib
import hmac
import logging
import re
import uuid
from dataclasses import replace
from datetime import UTC, date, datetime, timedelta
from decimal import ROUND_DOWN, Decimal, InvalidOperation
from typing import Any

from babel.numbers import NumberFormatError, get_decimal_symbol, parse_decimal
from fastapi import APIRouter, Request
from fastapi.responses import HTMLResponse, RedirectResponse, Response

from services.console.backends import Answer, segment
from services.console.formatting import LOCALES
from services.console.i18n import gettext as _
from services.console.payment_reference import epc_qr_svg, printed, rf_reference
from services.console.portal_links import LinkRefused, PortalLink, PortalLinks
from services.console.publisher import Publisher, PublishFailed
from services.console.statement_pdf import statement_pdf
from services.console.web import Refused, backends_of, language, render, settings_of
from shared.money import quantum

router = APIRouter(tags=["portal"])
log = logging.getLogger(__name__)
SOURCE = "receivables/portal"
MAX_INSTALMENTS = 12
# The form ids the home page draws (16 hex digits, "-<n>" for the n-th invoice's form): the id
# becomes an event's, dispute's or plan's id, so nothing else a caller writes there is taken.
FORM_ID = re.compile(r"[0-9a-f]{16}(-[0-9]{1,4})?")


def _links(request: Request) -> PortalLinks:
    links: PortalLinks = request.app.state.portal_links
    return links


def _customer(request: Request, link: str) -> PortalLink:
    try:
        return _links(request).verify(link)
    except LinkRefused as error:
        raise Refused(403, str(error)) from None


def _csrf(request: Request, link: str) -> str:
    key = hashlib.sha256(f"portal-csrf\x1f{settings_of(request).console_secret}".encode()).digest()
    return hmac.new(key, link.encode(), hashlib.sha256).hexdigest()


async def _form(request: Request, link: str) -> dict[str, str]:
    form = await request.form()
    fields = {key: str(value) for key, value in form.items() if isinstance(value, str)}
    # As bytes: compare_digest raises TypeError on a str that is not ASCII (a 500, not a 403).
    offered = fields.get("csrf_token", "").encode("utf-8", "surrogatepass")
    if not hmac.compare_digest(_csrf(request, link).encode(), offered):
        raise Refused(403, _("This form did not come from your portal page; reload it and try again."))
    return fields


def _form_id(form: dict[str, str]) -> str:
    """The form's id as the page drew it (a new one for a form without any)."""
    form_id = form.get("form_id", "")
    if not form_id:
        return uuid.uuid4().hex
    if not FORM_ID.fullmatch(form_id):
        raise Refused(422, _("This form did not come from your portal page; reload it and try again."))
    return form_id


def _today() -> date:
    return datetime.now(UTC).date()


async def _ask(request: Request, method: str, service: str, path: str, body: Any = None,
               **params: Any) -> Answer:
    token = settings_of(request).console_token
    answer = await backends_of(request).call(service, method, path, token, params=params, json=body)
    if answer.status in (401, 403):
        # The console's own token is missing or short of a scope: the operator's to fix, and
        # nothing a customer should read about tokens.
        log.error("the %s service refused RECEIVABLES_CONSOLE_TOKEN on %s %s: %s", service, method, path,
                  answer.trouble)
        return replace(answer, trouble=_("Your account cannot be shown right now; please try again later."))
    return answer


async def _open_items(request: Request, customer_id: str) -> Answer:
    return await _ask(request, "GET", "ledger", f"/customers/{segment(customer_id)}/open-items",
                      as_of=_today().isoformat())


def _page(request: Request, link: str, template: str, status: int = 200, **context: Any) -> HTMLResponse:
    return render(request, template, None, status=status, link=link, portal_csrf=_csrf(request, link),
                  creditor=settings_of(request).creditor_name, **context)


def _done(link: str, what: str) -> Response:
    return RedirectResponse(f"/portal/{link}?done={what}", status_code=303)


def _not_done(request: Request, link: str, answer: Answer | None, message: str | None = None,
              status: int = 422) -> HTMLResponse:
    """A refusal page: the service's answer, or ``message`` with ``status`` (the form's fault: 422)."""
    if message is None:
        status = answer.status if answer and answer.status and answer.status >= 400 else 502
    return _page(request, link, "portal/refused.html", status=status, message=message,
                 troubles=[answer] if answer else [])


@router.get("/portal/{link}", response_class=HTMLResponse)
async def portal_home(request: Request, link: str) -> HTMLResponse:
    customer = _customer(request, link)
    path = f"/customers/{segment(customer.customer_id)}"
    today = _today()
    period_from = (today - timedelta(days=90)).isoformat()
    items, balance, statement, statements = await asyncio.gather(
        _open_items(request, customer.customer_id),
        _ask(request, "GET", "ledger", f"{path}/balance", as_of=today.isoformat()),
        _ask(request, "GET", "ledger", f"{path}/statement", **{"from": period_from, "to": today.isoformat()}),
        _ask(request, "GET", "dunning", f"{path}/statements"),
    )
    troubles = [answer for answer in (items, balance, statement) if not answer.ok and answer.status != 404]
    open_items = items.body["open_items"] if items.ok else []
    return _page(request, link, "portal/home.html", troubles=troubles, customer_id=customer.customer_id,
                 expires_at=customer.expires_at, open_items=open_items,
                 balances=balance.body["balances"] if balance.ok else [],
                 statement=statement.body if statement.ok else None,
                 statements=statements.body["statements"] if statements.ok else [],
                 currencies=sorted({item["currency"] for item in open_items}),
                 form_id=uuid.uuid4().hex[:16], today=today.isoformat())


def _owned(open_items: list[dict[str, Any]], invoice_id: str) -> dict[str, Any]:
    found = next((item for item in open_items if item["invoice_id"] == invoice_id), None)
    if found is None:
        raise Refused(404, _("invoice_id: not one of your open invoices."))
    return found




def amount_of(field: str, value: str, language: str, default: Decimal | None = None) -> Decimal:
    """An amount a person typed, read as the page's language writes numbers ("1,000.50" in
    English); what could be read two ways or is not a plain number is refused, naming the field."""
    text = value.strip()
    if not text and default is not None:
        return default
    locale = LOCALES[language]
    # "1.000" in English: one to the page, a thousand to many readers (who group with dots):
    # a decimal point and exactly three digits after it, without grouping, is refused as unclear.
    ambiguous = re.escape(get_decimal_symbol(locale)).join((r"[0-9]+", r"[0-9]{3}"))
    try:
        if not re.fullmatch(r"[0-9][0-9.,]*", text) or re.fullmatch(ambiguous, text):
            raise NumberFormatError(text)
        amount = parse_decimal(text, locale, strict=True)
    except (NumberFormatError, InvalidOperation):
        raise Refused(422, _("%(field)s: write an amount such as 250.00", field=field)) from None
    if not amount.is_finite() or amount <= 0:
        raise Refused(422, _("%(field)s: must be more than zero", field=field))
    return amount


@router.post("/portal/{link}/disputes")
async def dispute(request: Request, link: str) -> Response:
    customer = _customer(request, link)
    form = await _form(request, link)
    form_id = _form_id(form)
    items = await _open_items(request, customer.customer_id)
    if not items.ok:
        return _not_done(request, link, items)
    invoice = _owned(items.body["open_items"], form.get("invoice_id", ""))
    amount = amount_of("amount", form.get("amount", ""), language(request),
                       Decimal(invoice["open_amount"]))
    if amount > Decimal(invoice["open_amount"]):
        raise Refused(422, _("amount: at most the open amount, %(amount)s", amount=invoice["open_amount"]))
    reason = form.get("reason", "").strip()
    if not reason:
        raise Refused(422, _("reason: tell us what is wrong with the invoice"))
    publisher: Publisher = request.app.state.publisher
    try:
        await publisher.publish("ar.disputes", event_id=f"portal-dispute-{form_id}", source=SOURCE,
                                event_type="dispute.opened", customer_id=customer.customer_id, data={
                                    "dispute_id": f"PORTAL-{form_id}", "invoice_id": invoice["invoice_id"],
                                    "customer_id": customer.customer_id, "amount": str(amount),
                                    "opened_date": _today().isoformat(), "reason": reason[:4000]})
    except PublishFailed:
        # Nothing wrong with the form: the broker is away, and trying again later will do.
        return _not_done(request, link, None, _("We could not take your dispute just now; please try again."),
                         status=503)
    return _done(link, "dispute")


@router.post("/portal/{link}/promises")
async def promise(request: Request, link: str) -> Response:
    customer = _customer(request, link)
    form = await _form(request, link)
    body = {"promised_date": form.get("promised_date", ""), "made_on": _today().isoformat(),
            "amount": str(amount_of("amount", form.get("amount", ""), language(request)))}
    if form.get("currency"):
        body["currency"] = form["currency"]
    path = f"/customers/{segment(customer.customer_id)}/promises"
    answer = await _ask(request, "POST", "dunning", path, body)
    return _done(link, "promise") if answer.ok else _not_done(request, link, answer)


def split(total: Decimal, count: int, currency: str) -> list[Decimal]:
    """``total`` in ``count`` instalments to the currency's minor unit (JPY: whole yen), the
    remainder on the last one."""
    share = (total / count).quantize(quantum(currency), rounding=ROUND_DOWN)
    return [share] * (count - 1) + [total - share * (count - 1)]


@router.post("/portal/{link}/plans")
async def request_plan(request: Request, link: str) -> Response:
    customer = _customer(request, link)
    form = await _form(request, link)
    form_id = _form_id(form)
    try:
        count = int(form.get("instalments", ""))
        first = date.fromisoformat(form.get("first_due_date", ""))
    except ValueError:
        message = _("instalments, first_due_date: a number of months (2 to 12) and a date")
        raise Refused(422, message) from None
    if not 2 <= count <= MAX_INSTALMENTS:
        raise Refused(422, _("instalments: from 2 to %(most)s", most=MAX_INSTALMENTS))
    currency = form.get("currency", "")
    items = await _open_items(request, customer.customer_id)
    if not items.ok:
        return _not_done(request, link, items)
    today = _today().isoformat()
    # What dunning covers without invoice_ids: every open overdue invoice of the currency.
    covered = [item for item in items.body["open_items"]
               if item["currency"] == currency and item["due_date"] < today]
    if not covered:
        raise Refused(422, _("currency: nothing overdue in this currency to spread over a plan"))
    total = sum((Decimal(item["open_amount"]) for item in covered), Decimal(0))
    instalments = [{"due_date": _add_months(first, index).isoformat(), "amount": str(amount)}
                   for index, amount in enumerate(split(total, count, currency))]
    body = {"plan_id": f"PORTAL-{form_id}", "currency": currency,
            "instalments": instalments, "requested_on": today,
            "reason": ("Asked in the portal: " + form.get("reason", "").strip())[:2000]}
    path = f"/customers/{segment(customer.customer_id)}/payment-plans"
    answer = await _ask(request, "POST", "dunning", path, body)
    return _done(link, "plan") if answer.ok else _not_done(request, link, answer)


def _add_months(start: date, months: int) -> date:
    month = start.month - 1 + months
    year, month = start.year + month // 12, month % 12 + 1
    for day in (start.day, 30, 29, 28):
        try:
            return date(year, month, day)
        except ValueError:
            continue
    raise AssertionError("unreachable: every month has a 28th")


@router.post("/portal/{link}/confirmations")
async def confirm_balance(request: Request, link: str) -> Response:
    customer = _customer(request, link)
    form = await _form(request, link)
    path = f"/customers/{segment(customer.customer_id)}"
    statements = await _ask(request, "GET", "dunning", f"{path}/statements")
    if not statements.ok:
        return _not_done(request, link, statements)
    known = {statement["statement_id"] for statement in statements.body["statements"]}
    if form.get("statement_id") not in known:
        raise Refused(404, _("statement_id: not one of your statements."))
    response = form.get("response")
    if response not in ("confirmed", "disputed"):
        raise Refused(422, _("response: confirmed or disputed"))
    body: dict[str, Any] = {"statement_id": form["statement_id"], "response": response,
                            "note": form.get("note", "")[:2000], "responded_on": _today().isoformat()}
    if response == "disputed":
        body["balance"] = str(amount_of("balance", form.get("balance", ""), language(request)))
    answer = await _ask(request, "POST", "dunning", f"{path}/confirmations", body)
    return _done(link, "confirmed") if answer.ok else _not_done(request, link, answer)


@router.get("/portal/{link}/statement.pdf")
async def statement_download(request: Request, link: str) -> Response:
    customer = _customer(request, link)
    today = _today()
    answer = await _ask(request, "GET", "ledger", f"/customers/{segment(customer.customer_id)}/statement",
                        **{"from": (today - timedelta(days=90)).isoformat(), "to": today.isoformat()})
    if not answer.ok:
        return _not_done(request, link, answer)
    creditor = settings_of(request).creditor_name
    pdf = await asyncio.to_thread(statement_pdf, answer.body, creditor, language(request))
    return Response(pdf, media_type="application/pdf", headers={
        "Content-Disposition": f'attachment; filename="statement-{today.isoformat()}.pdf"',
        "Cache-Control": "no-store", "Referrer-Policy": "no-referrer"})


@router.get("/portal/{link}/pay/{invoice_id}", response_class=HTMLResponse)
async def pay(request: Request, link: str, invoice_id: str) -> HTMLResponse:
    customer = _customer(request, link)
    items = await _open_items(request, customer.customer_id)
    if not items.ok:
        return _not_done(request, link, items)
    invoice = _owned(items.body["open_items"], invoice_id)
    settings = settings_of(request)
    reference = rf_reference(invoice["invoice_id"])
    amount = Decimal(invoice["open_amount"]) - Decimal(invoice.get("disputed_amount") or "0")
    qr = None
    if invoice["currency"] == "EUR" and amount > 0:
        qr = epc_qr_svg(settings.creditor_name, settings.creditor_iban, settings.creditor_bic, amount,
                        reference)
    return _page(request, link, "portal/pay.html", invoice=invoice, amount=str(amount), reference=reference,
                 reference_printed=printed(reference), qr=qr, iban=settings.creditor_iban,
                 bic=settings.creditor_bic)
