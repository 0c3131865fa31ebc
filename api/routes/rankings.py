"""POST /v1/rankings, the feedback of a ranking's slots, and a customer's mirrored offers."""

from __future__ import annotations

import uuid

from fastapi import APIRouter
from fastapi.responses import Response

from api.auth import DecideKey, FeedbackKey, ReadKey
from api.deps import ServicesDep
from api.errors import ERROR_RESPONSES
from api.routes.customers import CustomerIdPath
from api.schemas import (
    MirroredOffers,
    RankingRecord,
    RankingRequest,
    SlotEventIn,
    SlotEventResult,
)
from optimizer.ranking import RankingAnswer

router = APIRouter(tags=["rankings"])


@router.post("/v1/rankings", response_model=RankingAnswer, responses=ERROR_RESPONSES)
async def rank(key: DecideKey, request: RankingRequest, services: ServicesDep) -> Response:
    """The offers to show in the slots of a page or app screen, in slot order.

    Showing is not a contact: push caps do not apply, the frame's impression limits do. Each
    slot carries the probability it was chosen with given the slots before it; one log row holds
    every slot. The same `request_id` with the same body returns the same answer (another body:
    409).
    """
    skew = None if key.allows("simulate") else services.settings.decision_clock_skew
    answer = await services.rankings.rank_async(request.ask(), max_skew=skew)
    return Response(content=answer.model_dump_json(), media_type="application/json")


@router.get("/v1/rankings/{ranking_id}", response_model=RankingRecord, responses=ERROR_RESPONSES)
def get_ranking(_key: ReadKey, ranking_id: uuid.UUID, services: ServicesDep) -> RankingRecord:
    """The logged ranking: every slot's candidates, distribution, pick and probability."""
    return RankingRecord.of(services.rankings.record(ranking_id))


@router.post(
    "/v1/rankings/{ranking_id}/events", response_model=SlotEventResult, responses=ERROR_RESPONSES
)
def post_slot_event(
    _key: FeedbackKey, ranking_id: uuid.UUID, event: SlotEventIn, services: ServicesDep
) -> SlotEventResult:
    """An impression, click or conversion of one slot. A repeated `event_id` (or a second
    report of the same kind for the slot) changes nothing and gets the first answer; the same
    `event_id` for another slot or kind is a 409."""
    result = services.rankings.record_event(
        ranking_id,
        event_id=event.event_id,
        slot=event.slot,
        kind=event.kind,
        occurred_at=event.occurred_at,
    )
    e = result.event
    return SlotEventResult(
        ranking_id=e.ranking_id, slot=e.slot, kind=e.kind, offer=e.offer, duplicate=result.duplicate
    )


@router.get(
    "/v1/customers/{customer_id}/offers", response_model=MirroredOffers, responses=ERROR_RESPONSES
)
def mirrored_offers(
    _key: DecideKey, customer_id: CustomerIdPath, services: ServicesDep
) -> MirroredOffers:
    """The push offers mirrored into pull channels for this customer now, newest first: a
    frame's `mirror` shows a contact's offer there from its send time for the days it says."""
    snapshot, _ = services.catalog.current()
    return MirroredOffers.of(customer_id, services.rankings.offers(customer_id), snapshot)
