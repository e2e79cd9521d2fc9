"""``/``: the dashboard. Aging by bucket (chart and table), DSO, best possible DSO, CEI and the
expected collections by week, each as the ledger answers for the same as-of date and known-at."""

from __future__ import annotations

import asyncio
from decimal import Decimal
from typing import Annotated
from urllib.parse import urlencode

from fastapi import APIRouter, Depends, Request
from fastapi.responses import HTMLResponse

from services.console.backends import Answer
from services.console.charts import aging_chart, collections_chart
from services.console.dates import BadInput, as_date, as_instant
from services.console.i18n import gettext
from services.console.sessions import Session
from services.console.web import backends_of, render, signed_in, today

router = APIRouter(tags=["console"])


def _dates(request: Request) -> tuple[str | None, str | None, str | None]:
    query = request.query_params
    as_of = as_date("as_of", query.get("as_of"), today())
    known_at = as_instant("known_at", query.get("known_at"))
    return as_of, known_at, (query.get("currency") or "").upper() or None


@router.get("/", response_class=HTMLResponse)
async def dashboard(request: Request, session: Annotated[Session, Depends(signed_in)]) -> HTMLResponse:
    try:
        as_of, known_at, currency = _dates(request)
    except BadInput as error:
        return render(request, "dashboard.html", session, status=422, message=str(error),
                      as_of=request.query_params.get("as_of"), known_at=request.query_params.get("known_at"),
                      aging=None, metrics=None, chart=None)
    if not session.can("ledger:read"):
        return render(request, "dashboard.html", session, message=gettext(
            "Your token may not read the ledger (ledger:read), so the dashboard has nothing to show."),
            as_of=as_of, known_at=known_at, aging=None, metrics=None, chart=None)
    backends = backends_of(request)
    aging, metrics = await asyncio.gather(
        backends.get("ledger", "/aging", session.token, as_of=as_of, known_at=known_at, currency=currency,
                     group_by="currency"),
        backends.get("ledger", "/metrics/receivables", session.token, as_of=as_of, known_at=known_at,
                     currency=currency),
    )
    chart = None
    if aging.ok and aging.body["rows"]:
        title = gettext("Aging on %(date)s", date=as_of)
        chart = aging_chart(aging.body["buckets"], aging.body["rows"], title)
    troubles: list[Answer] = [answer for answer in (aging, metrics) if not answer.ok]
    # The forecast predicts every open invoice of the book: a fragment of its own, fetched by the
    # page's script (or followed as a link without it), so the figures above never wait for it.
    forecast_url = "/dashboard/forecast?" + urlencode({"as_of": as_of, "currency": currency or ""})
    return render(request, "dashboard.html", session, troubles=troubles, as_of=as_of, known_at=known_at,
                  currency=currency, aging=aging.body if aging.ok else None,
                  metrics=metrics.body if metrics.ok else None, chart=chart, forecast_url=forecast_url)


@router.get("/dashboard/forecast", response_class=HTMLResponse)
async def forecast(request: Request, session: Annotated[Session, Depends(signed_in)]) -> HTMLResponse:
    """The expected collections by week (the ledger's forecast), as a fragment of the dashboard
    or, asked for as a page (no script), on a page of its own."""
    try:
        as_of, _, currency = _dates(request)
    except BadInput as error:
        return render(request, "forecast.html", session, status=422, message=str(error), forecast=None,
                      forecast_chart=None, as_of=None)
    # The forecast takes no known_at from a page: it is as the ledger knows it now.
    answer = await backends_of(request).get("ledger", "/forecast/collections", session.token, as_of=as_of,
                                            currency=currency)
    weeks = answer.body.get("weeks", []) if answer.ok else []
    chart = None
    if weeks and any(Decimal(week["expected"]) != 0 for week in weeks):
        chart = collections_chart(weeks, gettext("Expected collections by week"))
    template = "forecast_fragment.html" if request.headers.get("x-fragment") == "1" else "forecast.html"
    return render(request, template, session, forecast=answer.body if answer.ok else None,
                  forecast_trouble=answer.trouble, forecast_chart=chart, as_of=as_of)
