"""Ranking offers for pull channels, their feedback per slot, and the slots' rewards.

A ranking reserves no contact, so it needs neither the customer's lock nor the decision
writer: it is planned (`optimizer.ranking`) and logged in one small transaction, committed
before the answer leaves. A repeated `request_id` with the same request returns the stored
answer; with another request it is a conflict.
"""

from __future__ import annotations

import uuid
from collections.abc import Callable
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta

from optimizer.core.values import IdSource, clock_id, utcnow
from optimizer.decision_writer import CatalogView, PolicyView
from optimizer.errors import ConflictError, InvalidInputError, NotFoundError
from optimizer.ports.customers import UnknownCustomerError
from optimizer.ports.rankings import (
    ClosedSlot,
    DueSlot,
    RankingStore,
    RequestTakenError,
    SlotEvent,
    SlotEventKind,
    StoredRanking,
)
from optimizer.ranking import (
    MAX_SLOTS,
    Mirrored,
    RankingAnswer,
    RankingAsk,
    active_mirrors,
    plan_ranking,
    ranking_digest,
)

REWARDING_KINDS = frozenset({"click", "conversion"})


def slot_reward(due: DueSlot) -> float:
    """A slot earns 1 when it was clicked or converted within its window, else 0."""
    return 1.0 if due.kinds & REWARDING_KINDS else 0.0


@dataclass(frozen=True)
class EventAnswer:
    event: SlotEvent
    duplicate: bool


class RankingService:
    def __init__(
        self,
        store: RankingStore,
        *,
        catalog: CatalogView,
        policies: PolicyView,
        clock: Callable[[], datetime] = utcnow,
        ids: IdSource = clock_id,
    ) -> None:
        self.store = store
        self.catalog = catalog
        self.policies = policies
        self.clock = clock
        self.ids = ids

    def _check(self, ask: RankingAsk, max_skew: timedelta | None) -> datetime:
        snapshot, _ = self.catalog.current()
        if ask.trigger not in snapshot.triggers:
            raise InvalidInputError("trigger", f"unknown trigger {ask.trigger!r}")
        if ask.channel not in snapshot.channels:
            raise InvalidInputError("channel", f"unknown channel {ask.channel!r}")
        if not 1 <= ask.slots <= MAX_SLOTS:
            raise InvalidInputError("slots", f"must be between 1 and {MAX_SLOTS}")
        for i, offer in enumerate(ask.exclude_offers):
            if offer not in snapshot.offers:
                raise InvalidInputError(f"exclude_offers[{i}]", f"unknown offer {offer!r}")
        now = self.clock().astimezone(UTC)
        if ask.now is not None:
            offset = (ask.now - now).total_seconds()
            if max_skew is not None and abs(offset) > max_skew.total_seconds():
                raise InvalidInputError(
                    "now",
                    f"{offset:+.0f} s from the server clock; without the simulate scope it may "
                    f"differ by at most {max_skew.total_seconds():.0f} s (or leave it out)",
                )
            now = ask.now.astimezone(UTC)
        return now

    def rank(self, ask: RankingAsk, *, max_skew: timedelta | None = None) -> RankingAnswer:
        """Rank, log and answer; a reused request id gets its stored answer."""
        now = self._check(ask, max_skew)
        stored = self.store.stored_request(ask.request_id)
        if stored is not None:
            return _repeat(stored, ask)
        state = self.store.read_customer(ask.customer_id)
        if state is None:
            raise NotFoundError("customer_id", f"unknown customer {ask.customer_id!r}")
        snapshot, _ = self.catalog.current()
        impressions: dict[str, int] = {}
        frames = snapshot.frames_for_trigger(ask.trigger)
        limits = [
            f.spec.contact_policy.impression_limits.get(ask.channel)
            for f in frames
            if ask.channel in f.spec.contact_policy.impression_limits
        ]
        if limits:
            days = max(limit.days for limit in limits if limit is not None)
            impressions = self.store.impressions(
                ask.customer_id, channel=ask.channel, since=now - timedelta(days=days)
            )
        mirrored = self._mirrors(ask.customer_id, now)
        plan = plan_ranking(
            ask,
            now=now,
            state=state,
            snapshot=snapshot,
            policy_for=self.policies.policy_for,
            combinations=self.catalog.combinations,
            ranking_id=self.ids(now),
            impressions=impressions,
            mirrored=mirrored,
        )
        try:
            self.store.write(plan.write)
        except UnknownCustomerError:
            raise NotFoundError("customer_id", f"unknown customer {ask.customer_id!r}") from None
        except RequestTakenError:
            stored = self.store.stored_request(ask.request_id)
            if stored is None:  # pragma: no cover - the unique constraint just said it exists
                raise ConflictError("request_id", "conflicting concurrent request") from None
            return _repeat(stored, ask)
        return plan.answer

    def _mirrors(self, customer_id: str, now: datetime) -> list[Mirrored]:
        snapshot, _ = self.catalog.current()
        days = max((f.spec.mirror.days for f in snapshot.frames if f.spec.mirror), default=0)
        if not days:
            return []
        pushed = self.store.pushed_offers(customer_id, since=now - timedelta(days=days))
        return active_mirrors(pushed, snapshot, now=now)

    def offers(self, customer_id: str, *, now: datetime | None = None) -> list[Mirrored]:
        """The customer's push offers mirrored into pull channels now, newest first."""
        if self.store.read_customer(customer_id) is None:
            raise NotFoundError("customer_id", f"unknown customer {customer_id!r}")
        return self._mirrors(customer_id, (now or self.clock()).astimezone(UTC))

    def record_event(
        self,
        ranking_id: uuid.UUID,
        *,
        event_id: str,
        slot: int,
        kind: SlotEventKind,
        occurred_at: datetime | None = None,
    ) -> EventAnswer:
        """An impression, click or conversion of one slot; idempotent by `event_id`."""
        ranking = self.store.ranking(ranking_id)
        if ranking is None:
            raise NotFoundError("ranking_id", f"no ranking {ranking_id}")
        picks = {s.slot: s for s in ranking.slots}
        if slot not in picks:
            shown = f"1 to {len(picks)}" if picks else "none: the ranking showed nothing"
            raise InvalidInputError("slot", f"the ranking has no slot {slot} (slots: {shown})")
        event = SlotEvent(
            event_id=event_id,
            ranking_id=ranking_id,
            slot=slot,
            kind=kind,
            customer_id=ranking.customer_id,
            channel=ranking.channel,
            offer=picks[slot].offer,
            occurred_at=(occurred_at or self.clock()).astimezone(UTC),
        )
        stored = self.store.record_event(event)
        if stored is None:
            return EventAnswer(event=event, duplicate=False)
        same = (stored.ranking_id, stored.slot, stored.kind) == (ranking_id, slot, kind)
        if not same and stored.event_id == event_id:
            raise ConflictError(
                "event_id", "already used for another ranking, slot or kind of event"
            )
        return EventAnswer(event=stored, duplicate=True)

    def finalize_due(self, *, now: datetime, limit: int = 20_000) -> int:
        """Make due slot rewards final (clicked or converted: 1, else 0); how many."""
        due = self.store.due_slots(now=now, limit=limit)
        closed = [ClosedSlot(d.ranking_id, d.slot, slot_reward(d)) for d in due]
        self.store.close_slots(closed=closed, now=now)
        return len(closed)


def _repeat(stored: StoredRanking, ask: RankingAsk) -> RankingAnswer:
    differ = [] if stored.customer_id == ask.customer_id else ["customer_id"]
    digest = ranking_digest(ask)
    differ += [n for n, v in digest.items() if n in stored.digest and stored.digest[n] != v]
    if differ:
        raise ConflictError(
            "request_id",
            f"already used for a different request ({', '.join(differ)} differ); "
            "a new request needs a new request_id",
        )
    return RankingAnswer.model_validate(stored.answer)
