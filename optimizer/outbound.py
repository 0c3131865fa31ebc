"""Always-on outbound: usage comes in, a worsening health class emits its trigger, the trigger's
decision waits in the outbox until a channel system fetches and acknowledges it.

Emission is idempotent and crash-safe: a class change is stored first with its trigger, then a
decision is made with the request id `health-<change id>` (a retry returns the same decision),
queued once per decision, and the change marked emitted. A sweeper re-runs whatever a crash left
between those steps.
"""

from __future__ import annotations

import uuid
from collections.abc import Iterable
from dataclasses import dataclass
from datetime import datetime, timedelta
from typing import Annotated

from pydantic import BaseModel, BeforeValidator, Field
from sqlalchemy import Engine

from campaign_db import queries
from campaign_db.engine import session_scope
from optimizer.answers import DecisionAnswer
from optimizer.core.decision import DecisionAsk
from optimizer.core.values import ChannelKind, json_number, utcnow
from optimizer.decisions import DecisionService
from optimizer.errors import NotFoundError
from optimizer.feedback import DeliveryEventIn, record_events
from optimizer.health import UsageIn, UsageIndexConfig, health_class, usage_index, worsening_trigger


class UsageResult(BaseModel):
    customer_id: str
    usage_index: float
    health_class: str
    previous_class: str
    trigger: str | None
    decision_id: uuid.UUID | None = None


@dataclass(frozen=True)
class UsageRow:
    customer_id: str
    usage: UsageIn


class OutboxItem(BaseModel):
    outbox_id: int
    decision_id: uuid.UUID
    customer_id: str
    channel: str
    send_at: datetime
    answer: DecisionAnswer


OutboxId = Annotated[
    int, Field(ge=1, le=2**31 - 1), BeforeValidator(json_number)
]  # the column is a 32-bit serial


class OutboxAck(BaseModel):
    ids: list[OutboxId] = Field(min_length=1, max_length=1000)


class OutboxAckResult(BaseModel):
    acked: list[int]
    unknown: list[int]


def record_usage(
    engine: Engine,
    decisions: DecisionService,
    *,
    rows: Iterable[UsageRow],
    config: UsageIndexConfig,
    now: datetime | None = None,
    emit: bool = True,
) -> list[UsageResult]:
    """Store usage observations, update health classes, and emit triggers for worsening ones.

    Unknown customers are reported per row by the caller's validation; here they raise.
    """
    now = now or utcnow()
    rows = list(rows)
    snapshot, _ = decisions.catalog.current()
    results = []
    updates = []
    with session_scope(engine, write=True) as session:
        previous = queries.health_classes_of(session, ids=[r.customer_id for r in rows])
        for row in rows:
            old = previous.get(row.customer_id)
            if old is None:
                raise NotFoundError("customer_id", f"unknown customer {row.customer_id!r}")
            index = usage_index(row.usage, config)
            new_class = health_class(index, config).value
            trigger = worsening_trigger(snapshot, old, new_class)
            updates.append(
                queries.UsageUpdate(
                    customer_id=row.customer_id,
                    previous_class=old,
                    usage_index=index,
                    health_class=new_class,
                    recency_days=row.usage.recency_days,
                    sessions_30d=row.usage.sessions_30d,
                    minutes_30d=row.usage.minutes_30d,
                    observed_at=row.usage.observed_at or now,
                    trigger_key=trigger,
                )
            )
            previous[row.customer_id] = new_class
            results.append(
                UsageResult(
                    customer_id=row.customer_id,
                    usage_index=index,
                    health_class=new_class,
                    previous_class=old,
                    trigger=trigger,
                )
            )
        queries.update_usage(session, updates=updates)
    if emit:
        emitted = emit_pending_triggers(engine, decisions, now=now)
        for result in results:
            result.decision_id = emitted.get(result.customer_id)
    return results


def emit_pending_triggers(
    engine: Engine, decisions: DecisionService, *, now: datetime | None = None, limit: int = 1000
) -> dict[str, uuid.UUID]:
    """Make the decision for every emitted-but-undecided class change; queue contacts."""
    now = now or utcnow()
    snapshot, _ = decisions.catalog.current()
    push = sorted(k for k, c in snapshot.channels.items() if c.kind is ChannelKind.push)
    with session_scope(engine) as session:
        pending = queries.pending_trigger_emissions(session, limit=limit)
    futures = [
        (
            change,
            decisions.submit(
                DecisionAsk(
                    request_id=f"health-{change.id}",
                    customer_id=change.customer_id,
                    trigger=str(change.trigger_key),
                    channels=push,
                    now=max(change.changed_at, now),
                )
            ),
        )
        for change in pending
    ]
    answers = [
        (change, future.result(timeout=decisions.timeout_seconds)) for change, future in futures
    ]
    emitted: dict[str, uuid.UUID] = {}
    if not answers:
        return emitted
    with session_scope(engine, write=True) as session:
        for change, answer in answers:
            if answer.contact and answer.action is not None:
                queries.add_to_outbox(
                    session,
                    decision_id=answer.decision_id,
                    customer_id=answer.customer_id,
                    channel_key=answer.action.channel,
                    send_at=answer.action.send_time.send_at,
                    now=now,
                )
            emitted[change.customer_id] = answer.decision_id
        queries.mark_emitted(
            session,
            emitted=[(c.id, a.decision_id) for c, a in answers if c.id is not None],
        )
    return emitted


def fetch_outbox(
    engine: Engine,
    *,
    channel: str,
    limit: int,
    lease_seconds: float = 300.0,
    now: datetime | None = None,
) -> list[OutboxItem]:
    """Lease up to `limit` waiting decisions for a channel; unacknowledged ones come back after
    the lease runs out."""
    now = now or utcnow()
    with session_scope(engine, write=True) as session:
        rows = queries.lease_outbox(
            session,
            channel_key=channel,
            limit=limit,
            now=now,
            lease_until=now + timedelta(seconds=lease_seconds),
        )
        return [
            OutboxItem(
                outbox_id=item.id or 0,
                decision_id=item.decision_id,
                customer_id=item.customer_id,
                channel=item.channel_key,
                send_at=item.send_at,
                answer=DecisionAnswer.model_validate(log.response),
            )
            for item, log in rows
        ]


def ack_outbox(engine: Engine, *, ack: OutboxAck, now: datetime | None = None) -> OutboxAckResult:
    """Acknowledge items: the channel system has taken them, which counts as sent."""
    now = now or utcnow()
    with session_scope(engine, write=True) as session:
        items = queries.ack_outbox(session, ids=ack.ids, now=now)
    record_events(
        engine,
        events=[
            (
                item.decision_id,
                DeliveryEventIn(kind="sent", occurred_at=now, event_id=f"outbox-{item.id}"),
            )
            for item in items
        ],
        now=now,
    )
    acked = sorted(item.id for item in items if item.id is not None)
    return OutboxAckResult(acked=acked, unknown=sorted(set(ack.ids) - set(acked)))
