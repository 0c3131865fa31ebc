"""Delivery events, conversions and direct rewards."""

from __future__ import annotations

import uuid

from fastapi import APIRouter, Response

from api.auth import FeedbackKey
from api.deps import ServicesDep
from api.errors import ERROR_RESPONSES
from api.observability import FEEDBACK_LAG
from api.schemas import (
    ConversionIn,
    ConversionResult,
    DeliveryEventIn,
    DeliveryEventResult,
    RewardIn,
    RewardResult,
)
from optimizer import feedback
from optimizer.core.values import utcnow

router = APIRouter(tags=["feedback"])


@router.post(
    "/v1/decisions/{decision_id}/events",
    response_model=DeliveryEventResult,
    responses=ERROR_RESPONSES,
)
def post_event(
    _key: FeedbackKey, decision_id: uuid.UUID, event: DeliveryEventIn, services: ServicesDep
) -> DeliveryEventResult:
    """Report what happened to a contact: sent, delivered, opened, clicked, bounced, failed,
    unsubscribed or complained. A repeated `event_id` changes nothing and gets the first answer;
    the same `event_id` for another decision or kind is a 409 (an unsubscribe or complaint still
    revokes the channel's consent)."""
    result = feedback.record_event(services.feedback, decision_id=decision_id, event=event.report())
    if event.occurred_at is not None:
        FEEDBACK_LAG.labels(kind="event").observe(
            max((utcnow() - event.occurred_at).total_seconds(), 0)
        )
    return DeliveryEventResult.model_validate(result, from_attributes=True)


@router.post(
    "/v1/conversions",
    response_model=ConversionResult,
    status_code=202,
    responses={200: {"model": ConversionResult, "description": "duplicate"}, **ERROR_RESPONSES},
)
def post_conversion(
    _key: FeedbackKey, conversion: ConversionIn, services: ServicesDep, response: Response
) -> ConversionResult:
    """Record a conversion and attribute it to the customer's decision by last touch within the
    frame's attribution window. Unknown customers are stored unattributed; a repeated
    `conversion_id` changes nothing and gets the first answer (200); the same id with another
    customer, type, value or time is a 409."""
    result = feedback.record_conversion(
        services.feedback,
        conversion=conversion.report(),
        pseudonym_salt=services.settings.pseudonym_salt,
    )
    FEEDBACK_LAG.labels(kind="conversion").observe(
        max((utcnow() - conversion.occurred_at).total_seconds(), 0)
    )
    response.status_code = 200 if result.duplicate else 202
    return ConversionResult.model_validate(result, from_attributes=True)


@router.post(
    "/v1/decisions/{decision_id}/reward", response_model=RewardResult, responses=ERROR_RESPONSES
)
def post_reward(
    _key: FeedbackKey, decision_id: uuid.UUID, reward: RewardIn, services: ServicesDep
) -> RewardResult:
    """Set a decision's reward directly (it becomes final when the window closes)."""
    result = feedback.record_reward(services.feedback, decision_id=decision_id, value=reward.value)
    return RewardResult.model_validate(result, from_attributes=True)
