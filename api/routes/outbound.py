"""Usage data, and the outbox of decisions made for health triggers."""

from __future__ import annotations

from typing import Annotated

from fastapi import APIRouter, Query

from api.auth import DecideKey, FeedbackKey
from api.deps import ServicesDep
from api.errors import ERROR_RESPONSES
from api.routes.customers import CustomerIdPath
from optimizer import outbound
from optimizer.core.catalog import KEY_PATTERN
from optimizer.errors import NotFoundError
from optimizer.health import UsageIn
from optimizer.outbound import OutboxAck, OutboxAckResult, OutboxItem, UsageResult, UsageRow

router = APIRouter(tags=["outbound"])


@router.post(
    "/v1/customers/{customer_id}/usage", response_model=UsageResult, responses=ERROR_RESPONSES
)
def post_usage(
    _key: FeedbackKey, customer_id: CustomerIdPath, usage: UsageIn, services: ServicesDep
) -> UsageResult:
    """Record usage; a worsening health class emits its trigger into the outbox."""
    (result,) = outbound.record_usage(
        services.engine,
        services.decisions,
        rows=[UsageRow(customer_id=customer_id, usage=usage)],
        config=services.settings.usage_index,
    )
    return result


@router.get("/v1/outbox", response_model=list[OutboxItem], responses=ERROR_RESPONSES)
def get_outbox(
    _key: DecideKey,
    services: ServicesDep,
    channel: Annotated[str, Query(pattern=KEY_PATTERN, description="a push channel")],
    limit: Annotated[int, Query(ge=1, le=1000)] = 100,
) -> list[OutboxItem]:
    """Lease waiting decisions for a channel; acknowledge them within 5 minutes or they return."""
    snapshot, _ = services.catalog.current()
    if channel not in snapshot.channels:
        raise NotFoundError("channel", f"unknown channel {channel!r}")
    return outbound.fetch_outbox(services.engine, channel=channel, limit=limit)


@router.post("/v1/outbox/ack", response_model=OutboxAckResult, responses=ERROR_RESPONSES)
def ack_outbox(_key: DecideKey, ack: OutboxAck, services: ServicesDep) -> OutboxAckResult:
    """Acknowledge leased items: the channel system has them, and they count as sent."""
    return outbound.ack_outbox(services.engine, ack=ack)
