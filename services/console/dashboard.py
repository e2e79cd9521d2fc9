"""``/``: the dashboard. Aging by bucket (chart and table), DSO, best possible DSO, CEI and the
expected collections by week, each as the ledger answers for the same as-of date and known-at."""

from __future__ import annotations

import asyncio
from typing import Annotated

from fastapi import APIRouter, Depends, Request
from fastapi.responses import HTMLResponse

from services.console.backends import Answer
from services.console.charts import aging_chart, collections_chart
from services.console.dates import BadInput, as_date, as_instant
from services.console.sessions import Session
from services.console.web import backends_of, render, signed_in, today

router = APIRouter(tags=["console"])


@router.get("/", response_class=HTMLResponse)
async def dashboard(request: Request, session: Annotated[Session, Depends(signed_in)]) -> HTMLResponse:
    query = request.query_params
    try:
        as_of = as_date("as_of", query.get("as_of"), today())
        known_at = as_instant("known_at", query.get("known_at"))
    except BadInput as error:
        return render(request, "dashboard.html", session, status=422, message=str(error),
                      as_of=query.get("as_of"), known_at=query.get("known_at"), aging=None, metrics=None,
                      forecast=None, chart=None, forecast_chart=None)
    currency = (query.get("currency") or "").upper() or None
    if not session.can("ledger:read"):
        return render(request, "dashboard.html", session, message="Your token may not read the ledger "
                      "(ledger:read), so the dashboard has nothing to show.", as_of=as_of, known_at=known_at,
                      aging=None, metrics=None, forecast=None, chart=None, forecast_chart=None)
    backends = backends_of(request)
    aging, metrics, forecast = await asyncio.gather(
        backends.get("ledger", "/aging", session.token, as_of=as_of, known_at=known_at, currency=currency,
                     group_by="currency"),
        backends.get("ledger", "/metrics/receivables", session.token, as_of=as_of, known_at=known_at,
                     currency=currency),
        # The forecast takes no known_at from a page: it is as the ledger knows it now.
        backends.get("ledger", "/forecast/collections", session.token, as_of=as_of, currency=currency),
    )
    chart = forecast_chart = None
    if aging.ok and aging.body["rows"]:
        chart = aging_chart(aging.body["buckets"], aging.body["rows"], f"Aging on {as_of}")
    weeks = forecast.body.get("weeks", []) if forecast.ok else []
    if weeks and any(week["expected"] not in ("0", "0.00") for week in weeks):
        forecast_chart = collections_chart(weeks, "Expected collections by week")
    troubles: list[Answer] = [answer for answer in (aging, metrics) if not answer.ok]
    return render(request, "dashboard.html", session, troubles=troubles, as_of=as_of, known_at=known_at,
                  currency=currency, aging=aging.body if aging.ok else None,
                  metrics=metrics.body if metrics.ok else None,
                  forecast=forecast.body if forecast.ok else None,
                  forecast_trouble=forecast.trouble, chart=chart, forecast_chart=forecast_chart)
