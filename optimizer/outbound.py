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
from concurrent.futures import Future
from dataclasses import dataclass
from datetime import datetime, timedelta
from typing import Annotated, Protocol

from pydantic import BaseModel, BeforeValidator, Field

from optimizer.answers import DecisionAnswer
from optimizer.core.catalog import CatalogSnapshot
from optimizer.core.decision import DecisionAsk
from optimizer.core.values import ChannelKind, HealthClass, json_number, utcnow
from optimizer.errors import NotFoundError
from optimizer.feedback import EventReport
from optimizer.health import (
    UsageIn,
    UsageIndexConfig,
    health_class,
    observed_at,
    usage_index,
    worsening_trigger,
)
from optimizer.ports.customers import UnknownCustomerError
from optimizer.ports.outbox import (
    Emission,
    OutboxStore,
    QueuedContact,
    TriggerTable,
    UsageObservation,
)


class Catalog(Protocol):
    def current(self) -> tuple[CatalogSnapshot, object]: ...


class TriggerDecisions(Protocol):
    """What emission needs of the decision service: the catalog, and decisions on request."""

    @property
    def catalog(self) -> Catalog: ...

    @property
    def timeout_seconds(self) -> float: ...

    def submit(self, request: DecisionAsk) -> Future[DecisionAnswer]: ...


class SentRecorder(Protocol):
    """Records delivery events (the feedback use case); an acknowledgement counts as sent."""

    def __call__(self, events: list[tuple[uuid.UUID, EventReport]], *, now: datetime) -> object: ...


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


def trigger_table(snapshot: CatalogSnapshot) -> TriggerTable:
    """The catalog's trigger for every worsening change of health class."""
    classes = [c.value for c in HealthClass]
    table = {
        (before, after): worsening_trigger(snapshot, before, after)
        for before in classes
        for after in classes
    }
    return {change: trigger for change, trigger in table.items() if trigger is not None}


def record_usage(
    store: OutboxStore,
    decisions: TriggerDecisions,
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
    snapshot, _ = decisions.catalog.current()
    observations = []
    for row in rows:
        index = usage_index(row.usage, config)
        observations.append(
            UsageObservation(
                customer_id=row.customer_id,
                usage_index=index,
                health_class=health_class(index, config).value,
                recency_days=row.usage.recency_days,
                sessions_30d=row.usage.sessions_30d,
                minutes_30d=row.usage.minutes_30d,
                observed_at=observed_at(row.usage, now),
            )
        )
    try:
        applied = store.apply_usage(observations, triggers=trigger_table(snapshot))
    except UnknownCustomerError as exc:
        raise NotFoundError("customer_id", f"unknown customer {exc.customer_id!r}") from None
    results = [
        UsageResult(
            customer_id=a.customer_id,
            usage_index=o.usage_index,
            health_class=a.health_class,
            previous_class=a.previous_class,
            trigger=a.trigger,
        )
        for o, a in zip(observations, applied, strict=True)
    ]
    if emit:
        emitted = emit_pending_triggers(store, decisions, now=now)
        for result in results:
            result.decision_id = emitted.get(result.customer_id)
    return results


def emit_pending_triggers(
    store: OutboxStore,
    decisions: TriggerDecisions,
    *,
    now: datetime | None = None,
    limit: int = 1000,
) -> dict[str, uuid.UUID]:
    """Make the decision for every emitted-but-undecided class change; queue contacts."""
    now = now or utcnow()
    snapshot, _ = decisions.catalog.current()
    push = sorted(k for k, c in snapshot.channels.items() if c.kind is ChannelKind.push)
    futures = [
        (
            change,
            decisions.submit(
                DecisionAsk(
                    request_id=f"health-{change.change_id}",
                    customer_id=change.customer_id,
                    trigger=change.trigger,
                    channels=push,
                    now=max(change.changed_at, now),
                )
            ),
        )
        for change in store.pending_emissions(limit=limit)
    ]
    answers = [
        (change, future.result(timeout=decisions.timeout_seconds)) for change, future in futures
    ]
    store.record_emissions(
        [
            Emission(
                change_id=change.change_id,
                decision_id=answer.decision_id,
                queued=_queued(answer),
            )
            for change, answer in answers
        ],
        now=now,
    )
    return {change.customer_id: answer.decision_id for change, answer in answers}


def _queued(answer: DecisionAnswer) -> QueuedContact | None:
    if not answer.contact or answer.action is None:
        return None
    return QueuedContact(
        decision_id=answer.decision_id,
        customer_id=answer.customer_id,
        channel=answer.action.channel,
        send_at=answer.action.send_time.send_at,
        answer=answer.model_dump(mode="json"),
    )


def fetch_outbox(
    store: OutboxStore,
    *,
    channel: str,
    limit: int,
    lease_seconds: float = 300.0,
    now: datetime | None = None,
) -> list[OutboxItem]:
    """Lease up to `limit` waiting decisions for a channel; unacknowledged ones come back after
    the lease runs out."""
    now = now or utcnow()
    leased = store.lease(
        channel=channel, limit=limit, now=now, lease_until=now + timedelta(seconds=lease_seconds)
    )
    return [
        OutboxItem(
            outbox_id=item.outbox_id,
            decision_id=item.decision_id,
            customer_id=item.customer_id,
            channel=item.channel,
            send_at=item.send_at,
            answer=DecisionAnswer.model_validate(item.answer),
        )
        for item in leased
    ]


def ack_outbox(
    store: OutboxStore,
    *,
    ack: OutboxAck,
    record_sent: SentRecorder,
    now: datetime | None = None,
) -> OutboxAckResult:
    """Acknowledge items: the channel system has taken them, which counts as sent."""
    now = now or utcnow()
    items = store.ack(ids=ack.ids, now=now)
    record_sent(
        [
            (
                item.decision_id,
                EventReport(kind="sent", occurred_at=now, event_id=f"outbox-{item.outbox_id}"),
            )
            for item in items
        ],
        now=now,
    )
    acked = sorted(item.outbox_id for item in items)
    return OutboxAckResult(acked=acked, unknown=sorted(set(ack.ids) - set(acked)))
