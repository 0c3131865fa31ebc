"""The decision writer: one thread per process that plans and writes decisions in batches.

It takes every request waiting, plans each one outside the write lock, then in one write
transaction re-reads each customer's state under lock, re-plans the few whose state changed,
writes all and commits once. One fsync then covers a whole batch, which is what makes full
durability affordable on SQLite; on PostgreSQL the same batches save round trips and WAL
flushes. Every caller still gets its answer only after the commit.
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
from optimizer.core.catalog import CatalogSnapshot, FrameVersion
from optimizer.core.decision import CustomerRecord, DecisionAsk, PastContact
from optimizer.eligibility import Combination, max_lookback
from optimizer.errors import ConflictError, NotFoundError
from optimizer.features import ActionLines
from optimizer.planning import DecisionPlan, PlanIds, plan_decision, request_digest
from optimizer.policy import BanditPolicy
from optimizer.ports.decisions import DecisionStore, DecisionWrite

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
        self._thread: threading.Thread | None = None
        self._start_lock = threading.Lock()

    def put(self, item: Pending) -> None:
        if self._thread is None:
            with self._start_lock:
                if self._thread is None:
                    self._thread = threading.Thread(
                        target=self._run, name="decision-writer", daemon=True
                    )
                    self._thread.start()
        self._queue.put(item)

    def close(self) -> None:
        if self._thread is not None:
            self._queue.put(None)
            self._thread.join(timeout=10)
            self._thread = None

    def _run(self) -> None:
        while True:
            first = self._queue.get()
            if first is None:
                return
            batch = [first]
            while len(batch) < self.max_batch:
                try:
                    item = self._queue.get_nowait()
                except queue.Empty:
                    break
                if item is None:
                    self._queue.put(None)
                    break
                batch.append(item)
            try:
                self._process(batch)
            except Exception as exc:  # the batch's transaction failed: nobody got an answer
                log.exception("decision batch of %d failed", len(batch))
                for item in batch:
                    if not item.future.done():
                        item.future.set_exception(exc)

    def _plan(
        self,
        ask: DecisionAsk,
        now: datetime,
        state: CustomerRecord,
        snapshot: CatalogSnapshot,
        ids: PlanIds,
    ) -> DecisionPlan:
        return plan_decision(
            ask,
            now=now,
            state=state,
            snapshot=snapshot,
            policy_for=self.policies.policy_for,
            combinations=self.catalog.combinations,
            ids=ids,
        )

    def _process(self, batch: list[Pending]) -> None:
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
            return
        since = min(starts)
        states = self.store.read_customers([item.ask.customer_id for item in batch], since)
        for item in batch:
            try:
                state = states.get(item.ask.customer_id)
                if state is None:
                    raise NotFoundError("customer_id", f"unknown customer {item.ask.customer_id!r}")
                item.plan = self._plan(item.ask, item.now, state, snapshot, item.ids)
            except Exception as exc:
                item.future.set_exception(exc)
        todo = sorted((i for i in batch if i.plan is not None), key=lambda i: i.ask.customer_id)
        if not todo:
            return
        try:
            self._write(todo, since, snapshot)
        except Exception as exc:
            if len(todo) == 1:
                self._settle_failed(todo[0], exc)
            else:
                log.warning("decision batch of %d failed; writing one by one", len(todo))
                for item in todo:
                    try:
                        self._write([item], since, snapshot)
                    except Exception as one:
                        self._settle_failed(item, one)
        for item in todo:
            if item.future.done():
                continue
            if item.duplicate:
                try:
                    item.future.set_result(self._stored(item.ask))
                except Exception as exc:
                    item.future.set_exception(exc)
            elif item.plan is not None:
                item.future.set_result(item.plan.answer)

    def _settle_failed(self, item: Pending, exc: Exception) -> None:
        """A request whose write failed because another writer (another process) logged the same
        request id meanwhile is a repeat and gets that answer or a conflict; else it fails."""
        if item.future.done():
            return
        try:
            logged = self.store.logged_requests([item.ask.request_id])
        except Exception:
            logged = {}
        if logged:
            item.duplicate = True
            return
        log.error("decision %s failed", item.ask.request_id, exc_info=exc)
        item.future.set_exception(exc)
        item.plan = None

    def _write(self, todo: list[Pending], since: datetime, snapshot: CatalogSnapshot) -> None:
        """Under the write lock: re-plan what changed, write everything, commit."""

        def plan(
            locked: Mapping[str, CustomerRecord], logged: Mapping[str, str]
        ) -> Sequence[DecisionWrite]:
            states, seen = dict(locked), dict(logged)
            writes: list[DecisionWrite] = []
            for item in todo:
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
                if item.plan is None or state != item.plan.state:
                    item.plan = self._plan(ask, item.now, state, snapshot, item.ids)
                seen[ask.request_id] = ask.customer_id
                writes.append(item.plan.write)
                contact = item.plan.write.contact
                if contact is not None:
                    states[ask.customer_id] = state.with_contact(
                        PastContact(contact.frame_key, contact.channel, contact.send_at)
                    )
            return writes

        self.store.write_batch(
            customer_ids=[i.ask.customer_id for i in todo],
            request_ids=[i.ask.request_id for i in todo],
            since=since,
            plan=plan,
        )

    def _stored(self, ask: DecisionAsk) -> DecisionAnswer:
        """The answer logged for a repeated request id, if the request is the same one."""
        stored = self.store.stored_request(ask.request_id)
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
