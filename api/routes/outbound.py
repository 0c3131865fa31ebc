"""Usage data, and the outbox of decisions made for health triggers."""

from __future__ import annotations

import uuid
from datetime import datetime
from typing import Annotated

from fastapi import APIRouter, Depends, Query

from api.auth import DecideKey, FeedbackKey
from api.deps import ServicesDep
from api.errors import ERROR_RESPONSES
from api.routes.customers import CustomerIdPath
from optimizer import outbound
from optimizer.core.catalog import KEY_PATTERN
from optimizer.errors import NotFoundError
from optimizer.feedback import EventReport, record_events
from optimizer.health import UsageIn
from optimizer.outbound import (
    OutboxAck,
    OutboxAckResult,
    OutboxItem,
    SentRecorder,
    UsageResult,
    UsageRow,
)
from optimizer.ports.outbox import OutboxStore

router = APIRouter(tags=["outbound"])


def outbox_store(services: ServicesDep) -> OutboxStore:
    return services.outbox


def sent_recorder(services: ServicesDep) -> SentRecorder:
    def record_sent(events: list[tuple[uuid.UUID, EventReport]], *, now: datetime) -> None:
        record_events(services.feedback, events=events, now=now)

    return record_sent


OutboxStoreDep = Annotated[OutboxStore, Depends(outbox_store)]
SentRecorderDep = Annotated[SentRecorder, Depends(sent_recorder)]


@router.post(
    "/v1/customers/{customer_id}/usage", response_model=UsageResult, responses=ERROR_RESPONSES
)
def post_usage(
    _key: FeedbackKey,
    customer_id: CustomerIdPath,
    usage: UsageIn,
    store: OutboxStoreDep,
    services: ServicesDep,
) -> UsageResult:
    """Record usage; a worsening health class emits its trigger into the outbox."""
    (result,) = outbound.record_usage(
        store,
        services.decisions,
        rows=[UsageRow(customer_id=customer_id, usage=usage)],
        config=services.settings.usage_index,
    )
    return result


@router.get("/v1/outbox", response_model=list[OutboxItem], responses=ERROR_RESPONSES)
def get_outbox(
    _key: DecideKey,
    services: ServicesDep,
    store: OutboxStoreDep,
    channel: Annotated[str, Query(pattern=KEY_PATTERN, description="a push channel")],
    limit: Annotated[int, Query(ge=1, le=1000)] = 100,
) -> list[OutboxItem]:
    """Lease waiting decisions for a channel; acknowledge them within 5 minutes or they return."""
    snapshot, _ = services.catalog.current()
    if channel not in snapshot.channels:
        raise NotFoundError("channel", f"unknown channel {channel!r}")
    return outbound.fetch_outbox(store, channel=channel, limit=limit)


@router.post("/v1/outbox/ack", response_model=OutboxAckResult, responses=ERROR_RESPONSES)
def ack_outbox(
    _key: DecideKey, ack: OutboxAck, store: OutboxStoreDep, record_sent: SentRecorderDep
) -> OutboxAckResult:
    """Acknowledge leased items: the channel system has them, and they count as sent."""
    return outbound.ack_outbox(store, ack=ack, record_sent=record_sent)
