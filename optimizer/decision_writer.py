"""The decision writer: per process, a planner thread and a writer thread, in a pipeline.

The planner takes every request waiting, reads their customers once without locks and plans
each. The writer then, in one write transaction, re-reads those customers under lock,
re-plans the few whose state changed, writes all and commits once. One fsync covers a whole
batch, which is what makes full durability affordable on SQLite; on PostgreSQL the same
batches save round trips and WAL flushes. While the writer waits for the lock and the commit
(neither holds the GIL), the planner plans what arrives meanwhile, and the writer's next
transaction takes all of it: the lock is held for SQL, not for planning, and a commit covers
every request that was ready for it. Every caller still gets its answer only after the
commit.
"""

from __future__ import annotations

import logging
import queue
import threading
from collections.abc import Mapping, Sequence
from concurrent.futures import Future
from dataclasses import dataclass
from datetime import datetime
from typing import Protocol

from optimizer.answers import DecisionAnswer
from optimizer.budgets import snapshot_periods
from optimizer.core.catalog import CatalogSnapshot, FrameVersion
from optimizer.core.decision import CustomerRecord, DecisionAsk, PastContact
from optimizer.eligibility import Combination, max_lookback
from optimizer.errors import ConflictError, NotFoundError
from optimizer.features import ActionLines
from optimizer.planning import DecisionPlan, PlanIds, plan_decision, request_digest
from optimizer.policy import BanditPolicy
from optimizer.ports.decisions import BatchKeys, BudgetPeriod, DecisionStore, DecisionWrite

log = logging.getLogger("campopt.decisions")


class CatalogView(Protocol):
    """The serving catalog (`optimizer.serving.CatalogCache`)."""

    def current(self) -> tuple[CatalogSnapshot, ActionLines]: ...

    def combinations(
        self, frame: FrameVersion, language: str, health_class: str
    ) -> tuple[Combination, ...]: ...


class PolicyView(Protocol):
    """The serving policies (`optimizer.serving.PolicyPool`)."""

    def policy_for(self, frame: FrameVersion) -> BanditPolicy: ...


@dataclass
class Pending:
    ask: DecisionAsk
    now: datetime
    future: Future[DecisionAnswer]
    ids: PlanIds
    plan: DecisionPlan | None = None
    duplicate: bool = False


@dataclass
class PlannedBatch:
    """A batch the planner has planned, waiting for the writer."""

    items: list[Pending]
    since: datetime
    snapshot: CatalogSnapshot


class PlannedQueue:
    """Planned batches from the planner to the writer, which merges those on one catalog
    snapshot into one transaction (up to `limit` requests)."""

    def __init__(self, limit: int) -> None:
        self.limit = limit
        self._queue: queue.SimpleQueue[PlannedBatch | None] = queue.SimpleQueue()
        self._carried: list[PlannedBatch | None] = []
        """Taken from the queue but left for the next transaction (the writer's own)."""

    def put(self, batch: PlannedBatch | None) -> None:
        self._queue.put(batch)

    def take(self) -> PlannedBatch | None:
        """The next planned batch with those planned behind it; None once closed."""
        first = self._carried.pop() if self._carried else self._queue.get()
        if first is None:
            return None
        batch = PlannedBatch(list(first.items), first.since, first.snapshot)
        self.absorb(batch)
        return batch

    def absorb(self, batch: PlannedBatch) -> None:
        """Add to `batch` what has been planned behind it on the same snapshot, ordered by
        customer."""
        while len(batch.items) < self.limit:
            try:
                more = self._queue.get_nowait()
            except queue.Empty:
                break
            if more is None or more.snapshot is not batch.snapshot:
                self._carried.append(more)  # the next transaction starts with it
                break
            batch.items += more.items
            batch.since = min(batch.since, more.since)
        batch.items.sort(key=lambda i: i.ask.customer_id)  # stable: a customer's keep order


class DecisionWriter:
    def __init__(
        self,
        store: DecisionStore,
        *,
        catalog: CatalogView,
        policies: PolicyView,
        max_batch: int = 64,
    ) -> None:
        self.store = store
        self.catalog = catalog
        self.policies = policies
        self.max_batch = max_batch
        self._queue: queue.SimpleQueue[Pending | None] = queue.SimpleQueue()
        self._planned = PlannedQueue(limit=4 * max_batch)
        self._threads: list[threading.Thread] = []
        self._start_lock = threading.Lock()

    def put(self, item: Pending) -> None:
        if not self._threads:
            with self._start_lock:
                if not self._threads:
                    self._threads = [
                        threading.Thread(target=run, name=name, daemon=True)
                        for run, name in (
                            (self._run_planner, "decision-planner"),
                            (self._run_writer, "decision-writer"),
                        )
                    ]
                    for thread in self._threads:
                        thread.start()
        self._queue.put(item)

    def close(self) -> None:
        """Finish what is queued, then stop both threads."""
        with self._start_lock:
            threads, self._threads = self._threads, []
        if threads:
            self._queue.put(None)
            for thread in threads:
                thread.join(timeout=10)

    def _run_planner(self) -> None:
        while True:
            batch = _take_waiting(self._queue, self.max_batch)
            if batch is None:
                self._planned.put(None)
                return
            try:
                planned = self._prepare(batch)
            except Exception as exc:  # nobody got an answer
                log.exception("planning a decision batch of %d failed", len(batch))
                _fail(batch, exc)
                continue
            if planned is not None:
                self._planned.put(planned)

    def _run_writer(self) -> None:
        while True:
            planned = self._planned.take()
            if planned is None:
                return
            try:
                self._commit(planned)
            except Exception as exc:  # the batch's transaction failed: nobody got an answer
                log.exception("decision batch of %d failed", len(planned.items))
                _fail(planned.items, exc)

    def _plan(
        self,
        ask: DecisionAsk,
        now: datetime,
        state: CustomerRecord,
        snapshot: CatalogSnapshot,
        ids: PlanIds,
        budgets: Mapping[BudgetPeriod, float],
    ) -> DecisionPlan:
        return plan_decision(
            ask,
            now=now,
            state=state,
            snapshot=snapshot,
            policy_for=self.policies.policy_for,
            combinations=self.catalog.combinations,
            ids=ids,
            budgets=budgets,
        )

    def _prepare(self, batch: list[Pending]) -> PlannedBatch | None:
        """Read the batch's customers once, without locks, and plan every request."""
        snapshot, _ = self.catalog.current()
        lookback = max_lookback(snapshot)
        starts: list[datetime] = []
        for item in batch:  # one request's time must not break the others' batch
            try:
                starts.append(item.now - lookback)
            except Exception as exc:
                item.future.set_exception(exc)
        batch = [item for item in batch if not item.future.done()]
        if not batch:
            return None
        since = min(starts)
        states = self.store.read_customers([item.ask.customer_id for item in batch], since)
        periods = _budget_periods(snapshot, batch)
        spent = self.store.read_budgets(periods) if periods else {}
        for item in batch:
            try:
                state = states.get(item.ask.customer_id)
                if state is None:
                    raise NotFoundError("customer_id", f"unknown customer {item.ask.customer_id!r}")
                item.plan = self._plan(item.ask, item.now, state, snapshot, item.ids, spent)
            except Exception as exc:
                item.future.set_exception(exc)
        todo = sorted((i for i in batch if i.plan is not None), key=lambda i: i.ask.customer_id)
        return PlannedBatch(todo, since, snapshot) if todo else None

    def _commit(self, batch: PlannedBatch) -> None:
        """Write a planned batch, with what was planned while it waited for the lock (one by
        one if the batch fails), and answer its requests."""
        try:
            self._write(batch, absorb=True)
        except Exception as exc:
            if len(batch.items) == 1:
                _settle_failed(self.store, batch.items[0], exc)
            else:
                log.warning("decision batch of %d failed; writing one by one", len(batch.items))
                for item in batch.items:
                    try:
                        self._write(PlannedBatch([item], batch.since, batch.snapshot))
                    except Exception as one:
                        _settle_failed(self.store, item, one)
        for item in batch.items:
            if item.future.done():
                continue
            if item.duplicate:
                try:
                    item.future.set_result(_stored(self.store, item.ask))
                except Exception as exc:
                    item.future.set_exception(exc)
            elif item.plan is not None:
                item.future.set_result(item.plan.answer)

    def _write(self, batch: PlannedBatch, *, absorb: bool = False) -> None:
        """Under the write lock: take in what else is planned (`absorb`), re-plan what changed,
        write everything, commit."""

        def take() -> BatchKeys:
            if absorb:
                self._planned.absorb(batch)
            return BatchKeys(
                customer_ids=[i.ask.customer_id for i in batch.items],
                request_ids=[i.ask.request_id for i in batch.items],
                since=batch.since,
                budgets=sorted(_budget_periods(batch.snapshot, batch.items)),
            )

        def plan(
            locked: Mapping[str, CustomerRecord],
            logged: Mapping[str, str],
            spent: Mapping[BudgetPeriod, float],
        ) -> Sequence[DecisionWrite]:
            states, seen, left = dict(locked), dict(logged), dict(spent)
            writes: list[DecisionWrite] = []
            for item in batch.items:
                ask = item.ask
                item.duplicate = False
                if ask.request_id in seen:
                    item.duplicate = True
                    continue
                state = states.get(ask.customer_id)
                if state is None:
                    item.plan = None
                    item.future.set_exception(
                        NotFoundError("customer_id", f"unknown customer {ask.customer_id!r}")
                    )
                    continue
                if (
                    item.plan is None
                    or state != item.plan.state
                    or not item.plan.budgets.holds(left)
                ):
                    item.plan = self._plan(ask, item.now, state, batch.snapshot, item.ids, left)
                seen[ask.request_id] = ask.customer_id
                writes.append(item.plan.write)
                for charge in item.plan.write.charges:
                    left[charge.period] = left.get(charge.period, 0.0) + charge.amount
                contact = item.plan.write.contact
                if contact is not None:
                    states[ask.customer_id] = state.with_contact(
                        PastContact(contact.frame_key, contact.channel, contact.send_at)
                    )
            return writes

        self.store.write_batch(take=take, plan=plan)


def _settle_failed(store: DecisionStore, item: Pending, exc: Exception) -> None:
    """A request whose write failed because another writer (another process) logged the same
    request id meanwhile is a repeat and gets that answer or a conflict; else it fails."""
    if item.future.done():
        return
    try:
        logged = store.logged_requests([item.ask.request_id])
    except Exception:
        logged = {}
    if logged:
        item.duplicate = True
        return
    log.error("decision %s failed", item.ask.request_id, exc_info=exc)
    item.future.set_exception(exc)
    item.plan = None


def _budget_periods(snapshot: CatalogSnapshot, items: Sequence[Pending]) -> set[BudgetPeriod]:
    """The budget counters the items could spend: those of every frame of their triggers."""
    frames = {f.id: f for i in items for f in snapshot.frames_for_trigger(i.ask.trigger)}
    return snapshot_periods(frames.values(), (i.now for i in items))


def _fail(items: list[Pending], exc: Exception) -> None:
    for item in items:
        if not item.future.done():
            item.future.set_exception(exc)


def _take_waiting(
    requests: queue.SimpleQueue[Pending | None], max_batch: int
) -> list[Pending] | None:
    """Every request waiting (at least one, at most `max_batch`); None once closed."""
    first = requests.get()
    if first is None:
        return None
    batch = [first]
    while len(batch) < max_batch:
        try:
            item = requests.get_nowait()
        except queue.Empty:
            break
        if item is None:
            requests.put(None)
            break
        batch.append(item)
    return batch


def _stored(store: DecisionStore, ask: DecisionAsk) -> DecisionAnswer:
    """The answer logged for a repeated request id, if the request is the same one."""
    stored = store.stored_request(ask.request_id)
    if stored is None:  # pragma: no cover - the unique constraint just said it exists
        raise ConflictError("request_id", "conflicting concurrent request")
    differ = [] if stored.customer_id == ask.customer_id else ["customer_id"]
    if stored.digest is not None:
        digest = request_digest(ask)
        differ += [
            name
            for name, value in digest.items()
            if name in stored.digest and stored.digest[name] != value
        ]
    if differ:
        raise ConflictError(
            "request_id",
            f"already used for a different request ({', '.join(differ)} differ); "
            "a new request needs a new request_id",
        )
    return DecisionAnswer.model_validate(stored.answer)
