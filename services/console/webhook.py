"""``POST /payments/webhook/{provider}``: a payment provider says a customer paid.

The body is checked against ``X-Receivables-Signature: sha256=<hex HMAC-SHA256 of the raw body
with RECEIVABLES_PAYMENT_WEBHOOK_SECRET>`` before anything is read from it; a bad or missing
signature is 401 and publishes nothing. A good one becomes a ``payment.received`` on
``ar.payments`` with source ``receivables/portal/<provider>`` and the provider's id as the
event id, so the ledger counts a notification sent again only once. The signature covers the
body only, not the path's ``<provider>``: the payment's ``payment_id`` is therefore made from the
signed ``id`` alone (``payment_id_of``), so the same body posted under another provider name is
the same payment to the ledger (ignored as a duplicate), never a second credit. Providers that
share the secret must therefore not reuse each other's ids. ``invoice_ids`` become
allocations (each up to the invoice's open amount, in the order given); without them an RF
reference naming one of the customer's open invoices does.
"""

from __future__ import annotations

import hashlib
import hmac
import re
from decimal import Decimal
from typing import Annotated, Any

from fastapi import APIRouter, Request
from pydantic import BaseModel, ConfigDict, Field, ValidationError, ValidationInfo, field_validator

from services.console.backends import segment
from services.console.payment_reference import invoice_of
from services.console.publisher import Publisher, PublishFailed
from services.console.web import backends_of, settings_of
from shared.dates import BusinessDate
from shared.money import check_minor_digits
from shared.problems import Problem, field_name
from shared.values import NO_NUL, NO_NUL_NOT_EMPTY, Currency, RequestAmount

router = APIRouter(tags=["payments"])
SIGNATURE_HEADER = "X-Receivables-Signature"
PROVIDER_PATTERN = r"^[a-z0-9][a-z0-9_-]{0,39}$"
MAX_BODY_BYTES = 64 * 1024


ProviderId = Annotated[str, Field(min_length=1, max_length=200, pattern=NO_NUL_NOT_EMPTY)]


class ProviderPayment(BaseModel):
    """Held to what the ledger accepts in a ``payment.received`` (the platform's decimal-string
    amounts, ISO currencies and their minor units, its dates and ids): a 202 is never refused
    downstream, where nobody would answer the provider."""

    model_config = ConfigDict(extra="ignore")

    id: ProviderId
    customer_id: ProviderId
    currency: Currency
    amount: Annotated[RequestAmount, Field(gt=0)]
    received_date: BusinessDate
    reference: str | None = Field(default=None, max_length=200, pattern=NO_NUL)
    invoice_ids: list[ProviderId] = Field(default_factory=list, max_length=1000)

    @field_validator("amount")
    @classmethod
    def _minor_unit(cls, amount: Decimal, info: ValidationInfo) -> Decimal:
        if "currency" in info.data:  # (a bad currency is reported on its own)
            check_minor_digits(amount, info.data["currency"])
        return amount


def payment_id_of(provider_id: str) -> str:
    """The ledger's payment id for a provider's ``id``: from the signed body only (never the
    unsigned path), within the ledger's 200 characters, and apart from the ERP's own ids."""
    payment_id = f"portal-{provider_id}"
    if len(payment_id) > 200:
        return "portal-sha256-" + hashlib.sha256(provider_id.encode()).hexdigest()
    return payment_id


def signature_ok(secret: str | None, body: bytes, header: str | None) -> bool:
    if not secret or not header or not header.startswith("sha256="):
        return False
    expected = hmac.new(secret.encode(), body, hashlib.sha256).hexdigest()
    # As bytes: compare_digest raises TypeError on a str that is not ASCII (a 500, not a 401).
    offered = header.removeprefix("sha256=").strip().lower().encode("utf-8", "surrogatepass")
    return hmac.compare_digest(expected.encode(), offered)


async def _allocations(request: Request, payment: ProviderPayment) -> list[dict[str, str]]:
    if not payment.invoice_ids and not payment.reference:
        return []
    token = settings_of(request).console_token
    answer = await backends_of(request).get("ledger", f"/customers/{segment(payment.customer_id)}/open-items",
                                            token, as_of=payment.received_date.isoformat())
    if not answer.ok and answer.status != 404:
        # Without the open amounts no allocation can be sized: the provider sends again later.
        raise Problem(503, "ledger-unavailable", detail=answer.trouble, headers={"Retry-After": "30"})
    items = (answer.body or {}).get("open_items", [])
    open_amounts = {item["invoice_id"]: Decimal(item["open_amount"])
                    for item in items if item["currency"] == payment.currency}
    named = list(dict.fromkeys(payment.invoice_ids))  # an invoice named twice is paid once
    if not named and payment.reference:
        found = invoice_of(payment.reference, open_amounts)
        named = [found] if found else []
    allocations, left = [], payment.amount
    for invoice_id in named:
        share = min(open_amounts.get(invoice_id, Decimal(0)), left)
        if share > 0:
            allocations.append({"invoice_id": invoice_id, "amount": str(share)})
            left -= share
            open_amounts[invoice_id] -= share
    return allocations


async def _body(request: Request) -> bytes:
    """The raw body, refused (413) past ``MAX_BODY_BYTES`` without reading more than that: the
    caller is not authenticated yet."""
    too_large = Problem(413, "too-large", detail=f"The notification is larger than {MAX_BODY_BYTES} bytes")
    declared = request.headers.get("content-length")
    if declared is not None and (not declared.isdigit() or int(declared) > MAX_BODY_BYTES):
        raise too_large
    body = bytearray()
    async for chunk in request.stream():
        body += chunk
        if len(body) > MAX_BODY_BYTES:
            raise too_large
    return bytes(body)


@router.post("/payments/webhook/{provider}", status_code=202)
async def payment_webhook(provider: str, request: Request) -> dict[str, Any]:
    body = await _body(request)
    secret = settings_of(request).payment_webhook_secret
    if not signature_ok(secret, body, request.headers.get(SIGNATURE_HEADER)):
        raise Problem(401, "bad-signature", detail=f"{SIGNATURE_HEADER} is missing or does not match",
                      headers={"WWW-Authenticate": "HMAC-SHA256"})
    if not re.fullmatch(PROVIDER_PATTERN, provider):
        raise Problem(422, "validation-error", detail="path.provider: lower-case letters, digits, - and _")
    providers = settings_of(request).payment_provider_names
    if providers and provider not in providers:
        raise Problem(404, "unknown-provider",
                      detail="path.provider: not one of RECEIVABLES_PAYMENT_PROVIDERS")
    try:
        payment = ProviderPayment.model_validate_json(body)
    except ValidationError as error:
        errors = [{"field": field_name(("body", *error_["loc"])), "message": error_["msg"]}
                  for error_ in error.errors()]
        raise Problem(422, "validation-error", "Request validation failed",
                      "; ".join(f"{e['field']}: {e['message']}" for e in errors), errors=errors) from None
    data: dict[str, Any] = {
        "payment_id": payment_id_of(payment.id), "customer_id": payment.customer_id,
        "currency": payment.currency, "amount": str(payment.amount),
        "received_date": payment.received_date.isoformat(),
        "method": provider, "allocations": await _allocations(request, payment),
    }
    if payment.reference:
        data["reference"] = payment.reference
    publisher: Publisher = request.app.state.publisher
    try:
        await publisher.publish("ar.payments", event_id=payment.id, source=f"receivables/portal/{provider}",
                                event_type="payment.received", customer_id=payment.customer_id, data=data)
    except PublishFailed as error:
        raise Problem(503, "broker-unavailable", detail=str(error), headers={"Retry-After": "30"}) from None
    return {"accepted": True, "payment_id": data["payment_id"], "allocations": data["allocations"]}
