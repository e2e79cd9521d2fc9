"""ERP events posted over HTTP (``POST /events``): the same validation and idempotency as
the Kafka topics, committed under the process's one write turn."""

from __future__ import annotations

from typing import Annotated, Any

from fastapi import APIRouter, Body, Request
from pydantic import BaseModel

from services.ledger.application import LedgerApplication
from shared.auth import LedgerWriter
from shared.dependencies import WriterDep
from shared.erp_events import InboundMessage, InvalidMessage, parse_envelope, validate_event

router = APIRouter()


class EventOutcome(BaseModel):
    index: int
    id: str | None
    source: str | None
    status: str  # applied | duplicate | rejected
    reason: str | None = None


class IntakeOut(BaseModel):
    accepted: int
    rejected: int
    outcomes: list[EventOutcome]


@router.post("/events", status_code=202, response_model=IntakeOut, tags=["events"])
async def post_events(
    request: Request,
    writer: WriterDep,
    _: LedgerWriter,
    body: Annotated[Any, Body(description="one CloudEvent or a JSON array of them")],
) -> IntakeOut:
    """Take ERP events over HTTP with the same validation and idempotency as the topics."""
    items = body if isinstance(body, list) else [body]
    outcomes: list[EventOutcome | None] = [None] * len(items)
    valid: list[tuple[int, InboundMessage]] = []
    for index, item in enumerate(items):
        ident = (item.get("id"), item.get("source")) if isinstance(item, dict) else (None, None)
        try:
            valid.append((index, validate_event(parse_envelope(item), limits=request.app.state.limits)))
        except InvalidMessage as error:
            outcomes[index] = EventOutcome(
                index=index, id=ident[0], source=ident[1], status="rejected", reason=error.reason
            )
    ledger: LedgerApplication = request.app.state.ledger
    batch = await writer.write_batch(ledger, [m for _, m in valid])
    reasons = {id(r.message): r.reason for r in batch.refusals}
    for (index, message), outcome in zip(valid, batch.outcomes, strict=True):
        outcomes[index] = EventOutcome(
            index=index, id=message.origin.id, source=message.origin.source,
            status="rejected" if outcome == "refused" else outcome,
            reason=reasons.get(id(message)),
        )
    final = [o for o in outcomes if o is not None]
    rejected = sum(1 for o in final if o.status == "rejected")
    return IntakeOut(accepted=len(final) - rejected, rejected=rejected, outcomes=final)
