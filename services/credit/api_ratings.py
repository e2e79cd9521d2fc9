"""REST for outside ratings: ``POST /customers/{id}/ratings`` (``credit:write``), the same as a
``rating.reported`` on ``ar.ratings``, recorded with the caller's identity."""

from __future__ import annotations

from fastapi import APIRouter, Response
from pydantic import ConfigDict

from services.credit.api import AppDep, _json
from services.credit.api_answers import RatingOut
from shared.auth import CreditWriter
from shared.dependencies import WriterDep
from shared.erp_events import RatingFields
from shared.openapi import answers_with
from shared.values import RequestId

router = APIRouter(tags=["ratings"])


class RatingIn(RatingFields):
    model_config = ConfigDict(extra="forbid")


@router.post("/customers/{customer_id}/ratings", status_code=201, responses=answers_with(RatingOut, 201))
async def post_rating(customer_id: RequestId, body: RatingIn, app: AppDep, writer: WriterDep,
                      principal: CreditWriter) -> Response:
    """An agency's or bureau's rating of the customer: the provider's latest report is a factor of
    the risk score from the next review (``outside_rating``); an older report is kept in the
    audit trail only."""
    rating = await writer.run(app.report_rating, customer_id, body, principal.identity)
    return _json(rating, status=201)
