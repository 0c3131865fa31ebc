"""The ranking store: ranking logs with their pending slot rewards, slot events, and the slot
rewards' closing into the online learner's sequence."""

from __future__ import annotations

import json
import uuid
from collections.abc import Sequence
from datetime import datetime
from typing import Any

from sqlalchemy import Engine, and_, bindparam, func, or_, select, update
from sqlalchemy.exc import IntegrityError
from sqlmodel import Session

from campaign_db.decisions import SqlDecisionStore
from campaign_db.engine import session_scope
from campaign_db.models import (
    Action,
    ContactHistory,
    Customer,
    DecisionLog,
    RankingEvent,
    RankingLog,
    Reward,
    SlotReward,
    chunks,
    table_of,
)
from optimizer.core.decision import CustomerRecord
from optimizer.core.values import utcnow
from optimizer.ports.customers import UnknownCustomerError
from optimizer.ports.rankings import (
    ClosedSlot,
    DueSlot,
    PushedOffer,
    RankingReads,
    RankingWrite,
    RequestTakenError,
    SlotEvent,
    SlotLog,
    StoredRanking,
)

_log = table_of(RankingLog)
_events = table_of(RankingEvent)
_slots = table_of(SlotReward)
_rewards = table_of(Reward)
_customers = table_of(Customer)
_contacts = table_of(ContactHistory)
_decisions = table_of(DecisionLog)
_actions = table_of(Action)

_CLOSE = (
    update(_slots)
    .where(
        _slots.c.ranking_id == bindparam("closing"),
        _slots.c.slot == bindparam("closing_slot"),
        _slots.c.status == "pending",
    )
    .values(
        status="final",
        value=bindparam("new_value"),
        sequence=bindparam("new_sequence"),
        finalized_at=bindparam("closed_at"),
    )
)


def next_sequence(session: Session) -> int:
    """The next number in the learner's sequence, which push and slot rewards share."""
    push = session.execute(select(func.max(_rewards.c.sequence))).scalar()
    slot = session.execute(select(func.max(_slots.c.sequence))).scalar()
    return max(int(push or 0), int(slot or 0)) + 1


def _stored(row: Any) -> StoredRanking:
    return StoredRanking(
        id=row.id,
        request_id=row.request_id,
        customer_id=row.customer_id,
        channel=row.channel_key,
        created_at=row.created_at,
        answer=row.response,
        digest=row.request_digest or {},
        slots=tuple(SlotLog.from_json(s) for s in row.slots),
        context=row.context or {},
        eligibility_trace=row.eligibility_trace or {},
    )


def _event(row: Any) -> SlotEvent:
    return SlotEvent(
        event_id=row.event_id,
        ranking_id=row.ranking_id,
        slot=row.slot,
        kind=row.kind,
        customer_id=row.customer_id,
        channel=row.channel_key,
        offer=row.offer_key,
        occurred_at=row.occurred_at,
    )


class SqlRankingStore:
    """The `RankingStore` port."""

    def __init__(self, engine: Engine) -> None:
        self.engine = engine
        self._customers = SqlDecisionStore(engine)

    def read_batch(
        self,
        *,
        request_ids: Sequence[str],
        customer_ids: Sequence[str],
        pushed_since: datetime | None,
    ) -> RankingReads:
        customers = self._customers.read_customers(list(dict.fromkeys(customer_ids)), utcnow())
        stored: dict[str, StoredRanking] = {}
        pushed: dict[str, list[PushedOffer]] = {}
        with session_scope(self.engine) as session:
            for ids in chunks(request_ids):
                rows = session.execute(select(_log).where(_log.c.request_id.in_(ids))).all()
                stored.update((row.request_id, _stored(row)) for row in rows)
            if pushed_since is not None:
                for ids in chunks(list(customers)):
                    query = _pushed_query(pushed_since).where(_contacts.c.customer_id.in_(ids))
                    for row in session.execute(query).all():
                        customer, *fields = row
                        pushed.setdefault(customer, []).append(PushedOffer(*fields))
        return RankingReads(stored=stored, customers=customers, pushed=pushed)

    def read_customer(self, customer_id: str) -> CustomerRecord | None:
        return self._customers.read_customers([customer_id], utcnow()).get(customer_id)

    def pushed_offers(self, customer_id: str, *, since: datetime) -> list[PushedOffer]:
        query = _pushed_query(since).where(_contacts.c.customer_id == customer_id)
        with session_scope(self.engine) as session:
            rows = session.execute(query).all()
        return [PushedOffer(*fields) for _, *fields in rows]

    def impressions(self, customer_id: str, *, channel: str, since: datetime) -> dict[str, int]:
        query = (
            select(_events.c.offer_key, func.count())
            .where(
                _events.c.customer_id == customer_id,
                _events.c.channel_key == channel,
                _events.c.kind == "impression",
                _events.c.occurred_at >= since,
            )
            .group_by(_events.c.offer_key)
        )
        with session_scope(self.engine) as session:
            return {str(offer): int(n) for offer, n in session.execute(query).all()}

    def write(self, write: RankingWrite) -> None:
        try:
            self.write_many([write])
        except IntegrityError:
            if self.stored_request(write.entry.request_id) is not None:
                raise RequestTakenError(write.entry.request_id) from None
            raise

    def write_many(self, writes: Sequence[RankingWrite]) -> None:
        if not writes:
            return
        rows = [_log_row(w) for w in writes]
        rewards = [
            {
                "ranking_id": w.entry.id,
                "slot": s.slot,
                "status": "pending",
                "window_closes_at": w.closes_at,
            }
            for w in writes
            for s in w.entry.slots
            if not s.forced
        ]
        with session_scope(self.engine, write=True) as session:
            connection = session.connection()
            wanted = {w.entry.customer_id for w in writes}
            present = _existing_customers(session, wanted)
            for customer_id in sorted(wanted - present):  # erased meanwhile
                raise UnknownCustomerError(customer_id)
            connection.execute(_log.insert(), rows)
            if rewards:
                connection.execute(_slots.insert(), rewards)

    def stored_request(self, request_id: str) -> StoredRanking | None:
        with session_scope(self.engine) as session:
            row = session.execute(select(_log).where(_log.c.request_id == request_id)).first()
        return None if row is None else _stored(row)

    def ranking(self, ranking_id: uuid.UUID) -> StoredRanking | None:
        with session_scope(self.engine) as session:
            row = session.execute(select(_log).where(_log.c.id == ranking_id)).first()
        return None if row is None else _stored(row)

    def record_event(self, event: SlotEvent) -> SlotEvent | None:
        values = {
            "event_id": event.event_id,
            "ranking_id": event.ranking_id,
            "slot": event.slot,
            "kind": event.kind,
            "customer_id": event.customer_id,
            "channel_key": event.channel,
            "offer_key": event.offer,
            "occurred_at": event.occurred_at,
            "received_at": event.occurred_at,
        }
        same = or_(
            _events.c.event_id == event.event_id,
            and_(
                _events.c.ranking_id == event.ranking_id,
                _events.c.slot == event.slot,
                _events.c.kind == event.kind,
            ),
        )
        try:
            with session_scope(self.engine, write=True) as session:
                found = session.execute(select(_events).where(same)).first()
                if found is not None:
                    return _event(found)
                session.connection().execute(_events.insert(), [values])
        except IntegrityError:  # stored by another request meanwhile
            with session_scope(self.engine) as session:
                found = session.execute(select(_events).where(same)).first()
            if found is None:
                raise
            return _event(found)
        return None

    def due_slots(self, *, now: datetime, limit: int) -> list[DueSlot]:
        query = (
            select(_slots.c.ranking_id, _slots.c.slot)
            .where(_slots.c.status == "pending", _slots.c.window_closes_at <= now)
            .order_by(_slots.c.window_closes_at, _slots.c.ranking_id, _slots.c.slot)
            .limit(limit)
        )
        with session_scope(self.engine) as session:
            due = [(r, int(s)) for r, s in session.execute(query).all()]
            kinds: dict[tuple[uuid.UUID, int], set[str]] = {}
            for ids in chunks([r for r, _ in due]):
                rows = session.execute(
                    select(_events.c.ranking_id, _events.c.slot, _events.c.kind).where(
                        _events.c.ranking_id.in_(ids)
                    )
                ).all()
                for ranking_id, slot, kind in rows:
                    kinds.setdefault((ranking_id, int(slot)), set()).add(str(kind))
        return [DueSlot(r, s, frozenset(kinds.get((r, s), ()))) for r, s in due]

    def close_slots(self, *, closed: Sequence[ClosedSlot], now: datetime) -> None:
        if not closed:
            return
        with session_scope(self.engine, write=True) as session:
            pending = _still_pending(session, closed)
            sequence = next_sequence(session)
            rows = []
            for c in closed:
                if (c.ranking_id, c.slot) not in pending:
                    continue
                rows.append(
                    {
                        "closing": c.ranking_id,
                        "closing_slot": c.slot,
                        "new_value": c.value,
                        "new_sequence": sequence,
                        "closed_at": now,
                    }
                )
                sequence += 1
            if rows:
                session.connection().execute(_CLOSE, rows)


def _still_pending(session: Session, closed: Sequence[ClosedSlot]) -> set[tuple[uuid.UUID, int]]:
    found: set[tuple[uuid.UUID, int]] = set()
    postgres = session.get_bind().dialect.name == "postgresql"
    for ids in chunks([c.ranking_id for c in closed]):
        statement = select(_slots.c.ranking_id, _slots.c.slot).where(
            _slots.c.status == "pending", _slots.c.ranking_id.in_(ids)
        )
        if postgres:
            statement = statement.with_for_update()
        found.update((r, int(s)) for r, s in session.execute(statement).all())
    return found


def _pushed_query(since: datetime) -> Any:
    """Push contacts sending at or after `since`, not failed or cancelled, with the offer and
    text their decision chose: (customer, decision, frame, offer, text, channel, send_at)."""
    return (
        select(
            _contacts.c.customer_id,
            _contacts.c.decision_id,
            _contacts.c.frame_key,
            _actions.c.offer_key,
            _actions.c.text_key,
            _contacts.c.channel_key,
            _contacts.c.send_at,
        )
        .select_from(
            _contacts.join(_decisions, _decisions.c.id == _contacts.c.decision_id).join(
                _actions, _actions.c.id == _decisions.c.chosen_action_id
            )
        )
        .where(
            _contacts.c.send_at >= since,
            _contacts.c.status.not_in(("failed", "cancelled")),
            _actions.c.offer_key.is_not(None),
        )
        .order_by(_contacts.c.send_at)
    )


def _existing_customers(session: Session, customer_ids: set[str]) -> set[str]:
    """Which customers exist; on PostgreSQL shares the row locks that an erasure takes, so
    that a ranking never logs the id of a customer erased in the same moment."""
    found: set[str] = set()
    postgres = session.get_bind().dialect.name == "postgresql"
    for ids in chunks(sorted(customer_ids)):
        query = select(_customers.c.id).where(_customers.c.id.in_(ids))
        if postgres:
            query = query.with_for_update(read=True)
        found.update(str(row[0]) for row in session.execute(query).all())
    return found


def _log_row(write: RankingWrite) -> dict[str, Any]:
    e = write.entry
    return {
        "id": e.id,
        "request_id": e.request_id,
        "created_at": e.created_at,
        "customer_id": e.customer_id,
        "trigger_key": e.trigger,
        "channel_key": e.channel,
        "frame_key": e.frame_key,
        "frame_version": e.frame_version,
        "catalog_revision": e.catalog_revision,
        "policy_name": e.policy_name,
        "policy_version": e.policy_version,
        "reason": e.reason,
        "context": dict(e.context),
        "slots": [s.to_json() for s in e.slots],
        "eligibility_trace": None if e.eligibility_trace is None else dict(e.eligibility_trace),
        "response": json.loads(e.response),
        "request_digest": dict(e.request_digest),
    }
