"""The decision: eligibility → candidates → policy → reserve the contact and log, in one commit.

Reserving the contact and writing the decision log happen in one transaction that holds the
customer's lock, committed before the answer goes out (`optimizer.decision_writer`). A repeated
`request_id` with the same request returns the stored answer and reserves nothing; with another
request it is a conflict.
"""

from __future__ import annotations

import asyncio
import uuid
from collections.abc import Callable
from concurrent.futures import Future
from datetime import UTC, datetime, timedelta
from types import TracebackType
from typing import Self

from optimizer.answers import DecisionAnswer
from optimizer.core.decision import DecisionAsk
from optimizer.core.values import IdSource, clock_id, utcnow
from optimizer.decision_writer import CatalogView, DecisionWriter, Pending, PolicyView
from optimizer.errors import InvalidInputError, NotFoundError
from optimizer.planning import PlanIds
from optimizer.ports.decisions import DecisionStore, LoggedDecision


class DecisionService:
    """Makes decisions through the writer and reads them back.

    `ids` names each decision (and the contact it may reserve) from its time when it is asked
    for, in the caller's order: a simulation passes seeded ids, so its runs repeat.
    """

    def __init__(
        self,
        store: DecisionStore,
        *,
        catalog: CatalogView,
        policies: PolicyView,
        clock: Callable[[], datetime] = utcnow,
        ids: IdSource = clock_id,
        max_batch: int = 64,
        timeout_seconds: float = 30.0,
    ) -> None:
        self.store = store
        self.catalog = catalog
        self.policies = policies
        self.clock = clock
        self.ids = ids
        self.timeout_seconds = timeout_seconds
        self.writer = DecisionWriter(store, catalog=catalog, policies=policies, max_batch=max_batch)

    def decide(self, ask: DecisionAsk, *, max_skew: timedelta | None = None) -> DecisionAnswer:
        """Decide, reserve and log; returns after the commit. A reused request id gets its old
        answer."""
        return self.submit(ask, max_skew=max_skew).result(timeout=self.timeout_seconds)

    async def decide_async(
        self, ask: DecisionAsk, *, max_skew: timedelta | None = None
    ) -> DecisionAnswer:
        future = asyncio.wrap_future(self.submit(ask, max_skew=max_skew))
        return await asyncio.wait_for(future, timeout=self.timeout_seconds)

    def submit(
        self, ask: DecisionAsk, *, max_skew: timedelta | None = None
    ) -> Future[DecisionAnswer]:
        """Queue a decision for the writer; bad triggers, channels and times fail at once.

        `max_skew` bounds how far the request's `now` may be from this service's clock: a
        caller that could pick any time could backdate contacts past the contact policy's caps.
        None trusts the caller's time (simulations, in-process jobs).
        """
        snapshot, _ = self.catalog.current()
        if ask.trigger not in snapshot.triggers:
            raise InvalidInputError("trigger", f"unknown trigger {ask.trigger!r}")
        for i, channel in enumerate(ask.channels):
            if channel not in snapshot.channels:
                raise InvalidInputError(f"channels[{i}]", f"unknown channel {channel!r}")
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
        future: Future[DecisionAnswer] = Future()
        ids = PlanIds(decision=self.ids(now), contact=self.ids(now))
        self.writer.put(Pending(ask=ask, now=now, future=future, ids=ids))
        return future

    def close(self) -> None:
        """Stop the writer thread; until then it holds the policies it decided with."""
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

    def record(self, decision_id: uuid.UUID) -> LoggedDecision:
        """The logged decision with its candidates, for explaining it."""
        logged = self.store.logged_decision(decision_id)
        if logged is None:
            raise NotFoundError("decision_id", f"no decision {decision_id}")
        return logged
