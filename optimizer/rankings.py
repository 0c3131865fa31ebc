"""Ranking offers for pull channels, their feedback per slot, and the slots' rewards.

A ranking reserves no contact, so it needs neither the customer's lock nor the decision
writer: it is planned (`optimizer.ranking`) and logged in one small transaction, committed
before the answer leaves. A repeated `request_id` with the same request returns the stored
answer; with another request it is a conflict.
"""

from __future__ import annotations

import asyncio
import queue
import threading
import uuid
from collections.abc import Callable
from concurrent.futures import Future
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from types import TracebackType
from typing import Self

from optimizer.core.catalog import CatalogSnapshot
from optimizer.core.values import IdSource, clock_id, utcnow
from optimizer.decision_writer import CatalogView, PolicyView
from optimizer.errors import ConflictError, InvalidInputError, NotFoundError
from optimizer.ports.customers import UnknownCustomerError
from optimizer.ports.rankings import (
    ClosedSlot,
    DueSlot,
    RankingReads,
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
    RankingPlan,
    active_mirrors,
    plan_ranking,
    ranking_digest,
)

REWARDING_KINDS = frozenset({"click", "conversion"})


def slot_reward(due: DueSlot) -> float:
    """A slot earns 1 when it was clicked or converted within its window, else 0."""
    return 1.0 if due.kinds & REWARDING_KINDS else 0.0


@dataclass
class PendingRanking:
    ask: RankingAsk
    now: datetime
    future: Future[RankingAnswer]


Prepared = RankingPlan | RankingAnswer | Exception
Prepare = Callable[[list[PendingRanking]], list[Prepared]]
"""Per ranking of a batch: its plan, an answer at once (a repeated request id), or why not."""
Settle = Callable[[PendingRanking, Exception], RankingAnswer]
"""The answer for a ranking whose write failed (a request id taken meanwhile), or raise."""


class RankingWriter:
    """Group commit for rankings, in one thread: it takes every ranking waiting, plans each,
    writes them all in one transaction, and answers each once that commits. A batch that
    fails is written again one by one, so a request id taken meanwhile or a customer erased
    meanwhile fails only its own ranking. Callers wait on futures (an async route without a
    thread of its own)."""

    def __init__(
        self, store: RankingStore, *, prepare: Prepare, settle: Settle, max_batch: int = 128
    ) -> None:
        self.store = store
        self.prepare = prepare
        self.settle = settle
        self.max_batch = max_batch
        self._queue: queue.SimpleQueue[PendingRanking | None] = queue.SimpleQueue()
        self._thread: threading.Thread | None = None
        self._lock = threading.Lock()

    def submit(self, item: PendingRanking) -> None:
        with self._lock:
            if self._thread is None:
                self._thread = threading.Thread(
                    target=self._run, name="ranking-writer", daemon=True
                )
                self._thread.start()
            self._queue.put(item)

    def close(self) -> None:
        """Answer what is queued, then stop the thread."""
        with self._lock:
            thread, self._thread = self._thread, None
            if thread is not None:
                self._queue.put(None)
        if thread is not None:
            thread.join(timeout=10)

    def _run(self) -> None:
        while True:
            first = self._queue.get()
            if first is None:
                return
            batch = [first]
            closing = False
            while len(batch) < self.max_batch:
                try:
                    item = self._queue.get_nowait()
                except queue.Empty:
                    break
                if item is None:
                    closing = True
                    break
                batch.append(item)
            try:
                self._handle(batch)
            except Exception as exc:  # pragma: no cover - nobody got an answer
                for item in batch:
                    if not item.future.done():
                        item.future.set_exception(exc)
            if closing:
                return

    def _handle(self, batch: list[PendingRanking]) -> None:
        planned: list[tuple[PendingRanking, RankingPlan]] = []
        for item, result in zip(batch, self.prepare(batch), strict=True):
            if isinstance(result, Exception):
                item.future.set_exception(result)
            elif isinstance(result, RankingAnswer):
                item.future.set_result(result)
            else:
                planned.append((item, result))
        try:
            self.store.write_many([plan.write for _, plan in planned])
        except Exception:
            for item, plan in planned:
                try:
                    self.store.write(plan.write)
                except Exception as exc:
                    try:
                        item.future.set_result(self.settle(item, exc))
                    except Exception as final:
                        item.future.set_exception(final)
                else:
                    item.future.set_result(plan.answer)
            return
        for item, plan in planned:
            item.future.set_result(plan.answer)


@dataclass(frozen=True)
class EventAnswer:
    event: SlotEvent
    duplicate: bool


def checked_time(
    snapshot: CatalogSnapshot, ask: RankingAsk, *, now: datetime, max_skew: timedelta | None
) -> datetime:
    """The ranking's time, once its blocks are known and its `now` is near enough to `now`
    (the server clock); a bad field raises `InvalidInputError` naming it."""
    if ask.trigger not in snapshot.triggers:
        raise InvalidInputError("trigger", f"unknown trigger {ask.trigger!r}")
    if ask.channel not in snapshot.channels:
        raise InvalidInputError("channel", f"unknown channel {ask.channel!r}")
    if not 1 <= ask.slots <= MAX_SLOTS:
        raise InvalidInputError("slots", f"must be between 1 and {MAX_SLOTS}")
    for i, offer in enumerate(ask.exclude_offers):
        if offer not in snapshot.offers:
            raise InvalidInputError(f"exclude_offers[{i}]", f"unknown offer {offer!r}")
    now = now.astimezone(UTC)
    if ask.now is None:
        return now
    offset = (ask.now - now).total_seconds()
    if max_skew is not None and abs(offset) > max_skew.total_seconds():
        raise InvalidInputError(
            "now",
            f"{offset:+.0f} s from the server clock; without the simulate scope it may "
            f"differ by at most {max_skew.total_seconds():.0f} s (or leave it out)",
        )
    return ask.now.astimezone(UTC)


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
        self.writer = RankingWriter(store, prepare=self._prepare, settle=self._settle)
        self.timeout_seconds = 30.0

    def close(self) -> None:
        """Write the rankings queued and stop the writer's thread."""
        self.writer.close()

    def __enter__(self) -> Self:
        return self

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        traceback: TracebackType | None,
    ) -> None:
        self.close()

    def _check(self, ask: RankingAsk, max_skew: timedelta | None) -> datetime:
        snapshot, _ = self.catalog.current()
        return checked_time(snapshot, ask, now=self.clock(), max_skew=max_skew)

    def rank(self, ask: RankingAsk, *, max_skew: timedelta | None = None) -> RankingAnswer:
        """Rank, log and answer; a reused request id gets its stored answer."""
        return self.submit(ask, max_skew=max_skew).result(timeout=self.timeout_seconds)

    async def rank_async(
        self, ask: RankingAsk, *, max_skew: timedelta | None = None
    ) -> RankingAnswer:
        future = asyncio.wrap_future(self.submit(ask, max_skew=max_skew))
        return await asyncio.wait_for(future, timeout=self.timeout_seconds)

    def submit(
        self, ask: RankingAsk, *, max_skew: timedelta | None = None
    ) -> Future[RankingAnswer]:
        """Queue a ranking for the writer; bad fields and times fail at once."""
        now = self._check(ask, max_skew)
        future: Future[RankingAnswer] = Future()
        self.writer.submit(PendingRanking(ask=ask, now=now, future=future))
        return future

    def _prepare(
        self, batch: list[PendingRanking]
    ) -> list[RankingPlan | RankingAnswer | Exception]:
        """Read what the batch needs at once, then plan each ranking."""
        snapshot, _ = self.catalog.current()
        days = max((f.spec.mirror.days for f in snapshot.frames if f.spec.mirror), default=0)
        earliest = min(item.now for item in batch)
        reads = self.store.read_batch(
            request_ids=[item.ask.request_id for item in batch],
            customer_ids=[item.ask.customer_id for item in batch],
            pushed_since=earliest - timedelta(days=days) if days else None,
        )
        out: list[Prepared] = []
        for item in batch:
            try:
                out.append(self._plan(item, reads, snapshot))
            except Exception as exc:
                out.append(exc)
        return out

    def _plan(
        self, item: PendingRanking, reads: RankingReads, snapshot: CatalogSnapshot
    ) -> RankingPlan | RankingAnswer:
        ask, now = item.ask, item.now
        stored = reads.stored.get(ask.request_id)
        if stored is not None:
            return _repeat(stored, ask)
        state = reads.customers.get(ask.customer_id)
        if state is None:
            raise NotFoundError("customer_id", f"unknown customer {ask.customer_id!r}")
        impressions: dict[str, int] = {}
        limits = [
            limit
            for f in snapshot.frames_for_trigger(ask.trigger)
            if (limit := f.spec.contact_policy.impression_limits.get(ask.channel)) is not None
        ]
        if limits:
            days = max(limit.days for limit in limits)
            impressions = self.store.impressions(
                ask.customer_id, channel=ask.channel, since=now - timedelta(days=days)
            )
        pushed = reads.pushed.get(ask.customer_id, ())
        return plan_ranking(
            ask,
            now=now,
            state=state,
            snapshot=snapshot,
            policy_for=self.policies.policy_for,
            combinations=self.catalog.combinations,
            ranking_id=self.ids(now),
            impressions=impressions,
            mirrored=active_mirrors(pushed, snapshot, now=now),
        )

    def _settle(self, item: PendingRanking, exc: Exception) -> RankingAnswer:
        if isinstance(exc, UnknownCustomerError):
            raise NotFoundError("customer_id", f"unknown customer {item.ask.customer_id!r}")
        if isinstance(exc, RequestTakenError):
            stored = self.store.stored_request(item.ask.request_id)
            if stored is not None:
                return _repeat(stored, item.ask)
        raise exc

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

    def record(self, ranking_id: uuid.UUID) -> StoredRanking:
        """The logged ranking with every slot, for explaining and evaluating it."""
        ranking = self.store.ranking(ranking_id)
        if ranking is None:
            raise NotFoundError("ranking_id", f"no ranking {ranking_id}")
        return ranking

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
