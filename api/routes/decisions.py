"""POST /v1/decisions and GET /v1/decisions/{id}."""

from __future__ import annotations

import uuid

from fastapi import APIRouter
from fastapi.responses import Response

from api.auth import DecideKey, ReadKey
from api.deps import ServicesDep
from api.errors import ERROR_RESPONSES
from api.observability import DECISIONS
from api.personalisation import personalise
from api.schemas import DecisionRecord, DecisionRequest
from optimizer.answers import DecisionAnswer

router = APIRouter(prefix="/v1/decisions", tags=["decisions"])


def _json(model: DecisionAnswer | DecisionRecord) -> Response:
    return Response(content=model.model_dump_json(), media_type="application/json")


@router.post("", response_model=DecisionAnswer, responses=ERROR_RESPONSES)
async def decide(key: DecideKey, request: DecisionRequest, services: ServicesDep) -> Response:
    """Choose what to send this customer now, inside the approved frame for the trigger.

    The decision is logged and the contact reserved before this answers; the same `request_id`
    with the same body returns the same answer and reserves nothing more (another body: 409).
    A `now` further from the server clock than `CAMPOPT_DECISION_CLOCK_SKEW_SECONDS` needs the
    `simulate` scope.
    """
    skew = None if key.allows("simulate") else services.settings.decision_clock_skew
    answer = await services.decisions.decide_async(request.ask(), max_skew=skew)
    DECISIONS.labels(
        frame=answer.frame.key if answer.frame else "", reason=answer.reason.value
    ).inc()
    return _json(personalise(answer, request.personalisation))


@router.get("/{decision_id}", response_model=DecisionRecord, responses=ERROR_RESPONSES)
def get_decision(_key: ReadKey, decision_id: uuid.UUID, services: ServicesDep) -> Response:
    """The logged decision with its candidates, distribution and eligibility trace."""
    return _json(DecisionRecord.of(services.decisions.record(decision_id)))
