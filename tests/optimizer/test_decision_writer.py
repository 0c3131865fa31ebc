"""The decision writer's batches: one request's failure stays its own, on SQLite and PostgreSQL."""

from __future__ import annotations

import threading
from collections.abc import Callable, Iterable, Iterator
from concurrent.futures import Future
from dataclasses import replace
from datetime import UTC, datetime, timedelta
from typing import Any

import pytest
from sqlalchemy import Engine
from sqlmodel import select

from campaign_db.catalog import SqlCatalogReader
from campaign_db.decisions import DecisionCursor, SqlDecisionStore
from campaign_db.engine import session_scope
from campaign_db.models import ContactHistory, DecisionLog, Reward
from optimizer.answers import DecisionAnswer
from optimizer.core.decision import DecisionAsk
from optimizer.decisions import DecisionService
from optimizer.eligibility import in_holdout
from optimizer.errors import ConflictError
from optimizer.planning import DecisionPlan
from optimizer.serving import CatalogCache, PolicyPool
from tests.optimizer.helpers import add_consenting_customers

NOW = datetime(2026, 11, 23, 9, 15, tzinfo=UTC)
CHANNELS = ["email", "sms", "app_push", "app_inbox", "letter", "web_portal"]


def _customer_ids(prefix: str, n: int) -> list[str]:
    out: list[str] = []
    i = 0
    while len(out) < n:
        candidate = f"{prefix}{i}"
        if not in_holdout(candidate, salt="churn_prevention", share=0.05):
            out.append(candidate)
        i += 1
    return out


def _add_customers(engine: Engine, ids: list[str]) -> None:
    add_consenting_customers(
        engine, ids, consent_since=NOW - timedelta(days=1), channels=CHANNELS, language="en"
    )


def _request(request_id: str, customer_id: str, **change: Any) -> DecisionAsk:
    return DecisionAsk(
        request_id=request_id,
        customer_id=customer_id,
        trigger=change.pop("trigger", "health_c_to_d"),
        channels=change.pop("channels", CHANNELS),
        now=change.pop("now", NOW),
        **change,
    )


PlanHook = Callable[[DecisionAsk, DecisionPlan], DecisionPlan]


class GatedService:
    """A decision service whose writer waits on a gate request, so that the requests queued
    meanwhile form one batch; `hook` may change or break the plan of any request."""

    def __init__(self, engine: Engine, monkeypatch: pytest.MonkeyPatch) -> None:
        self.service = DecisionService(
            SqlDecisionStore(engine),
            catalog=CatalogCache(SqlCatalogReader(engine), check_every_seconds=0),
            policies=PolicyPool(),
        )
        self.entered = threading.Event()
        self.release = threading.Event()
        self.hook: PlanHook = lambda _request, plan: plan
        plan = self.service.writer._plan

        def gated(request: DecisionAsk, *args: Any) -> DecisionPlan:
            if request.request_id == "gate":
                self.entered.set()
                assert self.release.wait(timeout=30)
            return self.hook(request, plan(request, *args))

        monkeypatch.setattr(self.service.writer, "_plan", gated)

    def batch(self, requests: list[DecisionAsk], gate_customer: str) -> list[Future[Any]]:
        """Submit `requests` so that the writer takes them as one batch."""
        gate = self.service.submit(_request("gate", gate_customer))
        assert self.entered.wait(timeout=30)
        futures = [self.service.submit(r) for r in requests]
        self.release.set()
        gate.result(timeout=30)
        return futures


@pytest.fixture
def gated(loaded_engine: Engine, monkeypatch: pytest.MonkeyPatch) -> Iterator[GatedService]:
    gated = GatedService(loaded_engine, monkeypatch)
    yield gated
    gated.release.set()
    gated.service.close()


def _unwritable(plan: DecisionPlan) -> DecisionPlan:
    """The plan with a log entry the database refuses (its reason is NOT NULL)."""
    entry = replace(plan.write.entry, reason=None)
    return replace(plan, write=replace(plan.write, entry=entry))


def _logged(engine: Engine) -> dict[str, DecisionLog]:
    with session_scope(engine) as session:
        return {row.request_id: row for row in session.exec(select(DecisionLog)).all()}


def _contacts_and_rewards(engine: Engine) -> tuple[list[ContactHistory], list[Reward]]:
    with session_scope(engine) as session:
        return list(session.exec(select(ContactHistory)).all()), list(
            session.exec(select(Reward)).all()
        )


def _outcomes(futures: list[Future[Any]]) -> list[DecisionAnswer | BaseException]:
    out: list[DecisionAnswer | BaseException] = []
    for future in futures:
        exc = future.exception(timeout=30)
        out.append(exc if exc is not None else future.result())
    return out


def test_a_request_whose_time_overflows_fails_alone_and_its_batch_commits(
    gated: GatedService, loaded_engine: Engine
) -> None:
    ids = _customer_ids("overflow-", 5)
    _add_customers(loaded_engine, ids)
    good = [_request(f"good-{i}", ids[i]) for i in range(1, 5)]
    # as if a caller's time had slipped past validation: the history look-back overflows
    bad = replace(_request("year-1", ids[1]), now=datetime(1, 1, 1, tzinfo=UTC))
    outcomes = _outcomes(gated.batch([good[0], bad, *good[1:]], gate_customer=ids[0]))
    assert isinstance(outcomes[1], Exception)
    assert all(isinstance(o, DecisionAnswer) for i, o in enumerate(outcomes) if i != 1)
    assert set(_logged(loaded_engine)) == {"gate", *(r.request_id for r in good)}


def test_an_unexpected_error_planning_one_request_fails_only_that_request(
    gated: GatedService, loaded_engine: Engine
) -> None:
    ids = _customer_ids("plan-", 4)
    _add_customers(loaded_engine, ids)

    def broken(request: DecisionAsk, plan: DecisionPlan) -> DecisionPlan:
        if request.request_id == "broken":
            raise RuntimeError("planning failed")
        return plan

    gated.hook = broken
    requests = [_request("ok-1", ids[1]), _request("broken", ids[2]), _request("ok-2", ids[3])]
    outcomes = _outcomes(gated.batch(requests, gate_customer=ids[0]))
    assert isinstance(outcomes[1], RuntimeError)
    assert isinstance(outcomes[0], DecisionAnswer)
    assert isinstance(outcomes[2], DecisionAnswer)
    assert set(_logged(loaded_engine)) == {"gate", "ok-1", "ok-2"}


def test_a_row_the_database_refuses_fails_only_its_request_and_leaves_nothing_behind(
    gated: GatedService, loaded_engine: Engine
) -> None:
    ids = _customer_ids("refused-", 4)
    _add_customers(loaded_engine, ids)

    def unwritable(request: DecisionAsk, plan: DecisionPlan) -> DecisionPlan:
        if request.request_id == "unwritable":
            return _unwritable(plan)  # the insert fails after its contact was written
        return plan

    gated.hook = unwritable
    requests = [_request(f"ok-{i}", ids[i]) for i in (1, 2)]
    requests.insert(1, _request("unwritable", ids[3]))
    outcomes = _outcomes(gated.batch(requests, gate_customer=ids[0]))
    assert isinstance(outcomes[1], Exception)
    assert isinstance(outcomes[0], DecisionAnswer)
    assert isinstance(outcomes[2], DecisionAnswer)
    logged = _logged(loaded_engine)
    assert set(logged) == {"gate", "ok-1", "ok-2"}
    contacts, rewards = _contacts_and_rewards(loaded_engine)
    decision_ids = {row.id for row in logged.values()}
    assert {c.decision_id for c in contacts} <= decision_ids
    assert {r.decision_id for r in rewards} <= decision_ids
    assert ids[3] not in {c.customer_id for c in contacts}


def test_a_batch_whose_every_write_fails_leaves_the_database_as_it_was(
    gated: GatedService, loaded_engine: Engine
) -> None:
    ids = _customer_ids("all-fail-", 4)
    _add_customers(loaded_engine, ids)

    def unwritable(request: DecisionAsk, plan: DecisionPlan) -> DecisionPlan:
        if request.request_id != "gate":
            return _unwritable(plan)
        return plan

    gated.hook = unwritable
    requests = [_request(f"doomed-{i}", ids[i]) for i in (1, 2, 3)]
    outcomes = _outcomes(gated.batch(requests, gate_customer=ids[0]))
    assert all(isinstance(o, Exception) for o in outcomes)
    logged = _logged(loaded_engine)
    assert set(logged) == {"gate"}
    contacts, rewards = _contacts_and_rewards(loaded_engine)
    assert {c.decision_id for c in contacts} <= {logged["gate"].id}
    assert {r.decision_id for r in rewards} <= {logged["gate"].id}


def test_a_request_id_reused_with_another_body_in_the_same_batch_is_a_conflict(
    gated: GatedService, loaded_engine: Engine
) -> None:
    ids = _customer_ids("same-batch-", 2)
    _add_customers(loaded_engine, ids)
    requests = [
        _request("twice", ids[1], channels=["email"]),
        _request("twice", ids[1], channels=["sms"]),
        _request("twice", ids[1], channels=["email"]),
    ]
    first, other, repeat = _outcomes(gated.batch(requests, gate_customer=ids[0]))
    assert isinstance(first, DecisionAnswer)
    assert isinstance(other, ConflictError)
    assert other.field == "request_id"
    assert "channels" in other.message
    assert repeat == first
    assert len([r for r in _logged(loaded_engine) if r == "twice"]) == 1


def test_two_writers_given_one_request_id_with_different_bodies_answer_once_and_conflict_once(
    loaded_engine: Engine,
) -> None:
    """Two processes' writers (here two services on one database) race for each request id."""
    ids = _customer_ids("race-", 4)
    _add_customers(loaded_engine, ids)
    writers = [
        DecisionService(
            SqlDecisionStore(loaded_engine),
            catalog=CatalogCache(SqlCatalogReader(loaded_engine)),
            policies=PolicyPool(),
        )
        for _ in range(2)
    ]
    try:
        rounds = []
        for n in range(30):
            request_id = f"race-{n}"
            if n % 2:  # another customer
                bodies = [_request(request_id, ids[0]), _request(request_id, ids[1 + n % 3])]
            else:  # the same customer, other channels
                bodies = [
                    _request(request_id, ids[n % 4], channels=["email"]),
                    _request(request_id, ids[n % 4], channels=["sms", "email"]),
                ]
            rounds.append([w.submit(b) for w, b in zip(writers, bodies, strict=True)])
        for futures in rounds:
            outcomes = _outcomes(futures)
            answers = [o for o in outcomes if isinstance(o, DecisionAnswer)]
            conflicts = [o for o in outcomes if isinstance(o, ConflictError)]
            assert (len(answers), len(conflicts)) == (1, 1), outcomes
            assert conflicts[0].field == "request_id"
    finally:
        for writer in writers:
            writer.close()
    assert len(_logged(loaded_engine)) == 30


def test_a_request_id_another_writer_logs_while_this_one_writes_is_a_conflict_not_an_error(
    loaded_engine: Engine, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Another process logs the same request id after this writer checked for it and before it
    inserts: the insert breaks the unique constraint, and the answer is still a 409."""
    if loaded_engine.dialect.name == "sqlite":
        pytest.skip("SQLite's write transaction excludes every other writer")
    ids = _customer_ids("interleaved-", 2)
    _add_customers(loaded_engine, ids)
    this, other = (
        DecisionService(
            SqlDecisionStore(loaded_engine),
            catalog=CatalogCache(SqlCatalogReader(loaded_engine)),
            policies=PolicyPool(),
        )
        for _ in range(2)
    )
    checked = DecisionCursor.logged_requests
    interleaved: list[DecisionAnswer] = []

    def check_then_let_the_other_writer_commit(
        cursor: DecisionCursor, request_ids: Iterable[str]
    ) -> dict[str, str]:
        logged = checked(cursor, request_ids)
        if cursor.store is this.store and not interleaved:
            interleaved.append(other.decide(_request("contested", ids[1])))
        return logged

    monkeypatch.setattr(DecisionCursor, "logged_requests", check_then_let_the_other_writer_commit)
    try:
        with pytest.raises(ConflictError) as conflict:
            this.decide(_request("contested", ids[0]))
    finally:
        this.close()
        other.close()
    assert conflict.value.field == "request_id"
    assert "customer_id" in conflict.value.message
    assert interleaved
    assert _logged(loaded_engine)["contested"].customer_id == ids[1]
