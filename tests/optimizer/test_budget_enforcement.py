"""Budgets across customers hold however decisions interleave, on SQLite and PostgreSQL.

A frame budget is spent only inside the decision's own transaction and only while it stays
within its limit: concurrent writers (two services on one database, as two replicas would be,
and two processes on PostgreSQL) never take a counter past its limit, the counter equals the
contacts that spent it, and a decision that finds the budget exhausted says so.
"""

from __future__ import annotations

import itertools
import multiprocessing as mp
import weakref
from concurrent.futures import Future
from datetime import UTC, date, datetime, timedelta
from typing import Any

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from sqlalchemy import Engine
from sqlmodel import select

from campaign_db.catalog import SqlCatalogReader, load_catalog
from campaign_db.customers import add_customers
from campaign_db.decisions import SqlDecisionStore
from campaign_db.engine import create_engine_from_url, session_scope
from campaign_db.models import BudgetSpend, DecisionLog
from optimizer.answers import DecisionAnswer
from optimizer.core.catalog import BudgetSpec, CatalogSpec
from optimizer.core.decision import DecisionAsk
from optimizer.core.values import DecisionReason
from optimizer.decisions import DecisionService
from optimizer.eligibility import in_holdout
from optimizer.serving import CatalogCache, PolicyPool
from tests.conftest import engine_url

FRAME = "churn_prevention"
CHANNELS = ["email", "sms", "app_push", "letter", "app_inbox"]
# a Tuesday morning in Berlin: every send time of the frame is open within the week
START = datetime(2026, 11, 24, 9, 0, tzinfo=UTC)
RUN = itertools.count()


def _budgeted(catalog: CatalogSpec, *budgets: BudgetSpec) -> CatalogSpec:
    frames = [
        f.model_copy(update={"budgets": list(budgets)}) if f.key == FRAME else f
        for f in catalog.frames
    ]
    return catalog.model_copy(update={"frames": frames})


def _load(engine: Engine, catalog: CatalogSpec) -> None:
    with session_scope(engine, write=True) as session:
        load_catalog(session, catalog=catalog, source="budgets", actor="test")


def _customers(engine: Engine, prefix: str, n: int) -> list[str]:
    """`n` new class D customers outside the frame's holdout, with every consent."""
    ids: list[str] = []
    i = 0
    while len(ids) < n:
        candidate = f"{prefix}{i}"
        if not in_holdout(candidate, salt=FRAME, share=0.05):
            ids.append(candidate)
        i += 1
    with session_scope(engine, write=True) as session:
        add_customers(
            session,
            customers=[
                {"id": c, "health_class": "D", "usage_index": 0.1, "time_zone": "Europe/Berlin"}
                for c in ids
            ],
            consents=[(c, ch) for c in ids for ch in CHANNELS],
            now=START - timedelta(days=2),
        )
    return ids


def _service(engine: Engine, max_batch: int = 64) -> DecisionService:
    return DecisionService(
        SqlDecisionStore(engine),
        catalog=CatalogCache(SqlCatalogReader(engine), check_every_seconds=0),
        policies=PolicyPool(),
        max_batch=max_batch,
    )


def _ask(request_id: str, customer_id: str, now: datetime) -> DecisionAsk:
    return DecisionAsk(
        request_id=request_id,
        customer_id=customer_id,
        trigger="health_c_to_d",
        channels=CHANNELS,
        now=now,
    )


def _spent(engine: Engine, budget: str, start: date) -> float:
    with session_scope(engine) as session:
        row = session.exec(
            select(BudgetSpend).where(
                BudgetSpend.frame_key == FRAME,
                BudgetSpend.budget_key == budget,
                BudgetSpend.period_start == start,
            )
        ).first()
    return 0.0 if row is None else row.spent


@pytest.fixture
def day_budget_engine(engine: Engine, example_catalog: CatalogSpec) -> Engine:
    """The example catalog with a count budget on the whole churn frame per day."""
    _load(engine, _budgeted(example_catalog, BudgetSpec(key="contacts", limit=5, period="day")))
    return engine


def test_a_decision_finds_the_budget_exhausted_and_says_which(day_budget_engine: Engine) -> None:
    engine = day_budget_engine
    ids = _customers(engine, "ex-", 40)
    with _service(engine) as service:
        answers = [service.decide(_ask(f"ex-{i}", c, START)) for i, c in enumerate(ids)]
    contacts = [a for a in answers if a.contact]
    assert len(contacts) == 5
    assert _spent(engine, "contacts", START.date()) == 5
    late = [a for a in answers[answers.index(contacts[-1]) + 1 :] if not a.contact]
    assert late, "the budget ran out before the last customer"
    for answer in late:
        assert answer.reason is DecisionReason.nothing_eligible
        assert answer.excluded["budget:contacts"].startswith("5 of 5 spent")
    with session_scope(engine) as session:
        logged = session.exec(select(DecisionLog).where(DecisionLog.request_id == "ex-0")).one()
    assert logged.budget_prices is not None
    assert set(logged.budget_prices) == {"contacts"}


def test_the_next_period_starts_with_a_fresh_budget(day_budget_engine: Engine) -> None:
    engine = day_budget_engine
    ids = _customers(engine, "nx-", 30)
    tomorrow = START + timedelta(days=1)
    with _service(engine) as service:
        for i, c in enumerate(ids[:15]):
            service.decide(_ask(f"nx-a{i}", c, START))
        answers = [service.decide(_ask(f"nx-b{i}", c, tomorrow)) for i, c in enumerate(ids[15:])]
    assert _spent(engine, "contacts", START.date()) == 5
    assert _spent(engine, "contacts", tomorrow.date()) == sum(a.contact for a in answers) == 5


LOADED: weakref.WeakSet[Engine] = weakref.WeakSet()
HYPOTHESIS_LIMIT = 7


@given(
    customers=st.integers(1, 24),
    max_batch=st.sampled_from([1, 4, 64]),
    split=st.integers(0, 24),
)
@settings(
    max_examples=10, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture]
)
def test_concurrent_writers_never_take_a_budget_past_its_limit(
    engine: Engine, example_catalog: CatalogSpec, customers: int, max_batch: int, split: int
) -> None:
    """Two services (two replicas) on one database race for one daily budget; each example runs
    on a day of its own, so each starts with a fresh counter."""
    if engine not in LOADED:  # once per database: the examples share the test's engine
        budget = BudgetSpec(key="daily", limit=HYPOTHESIS_LIMIT, period="day")
        _load(engine, _budgeted(example_catalog, budget))
        LOADED.add(engine)
    run = next(RUN)
    day = START + timedelta(days=run)
    ids = _customers(engine, f"hy{run}-", customers)
    services = [_service(engine, max_batch), _service(engine, max_batch)]
    try:
        futures: list[Future[DecisionAnswer]] = [
            services[0 if i < split else 1].submit(_ask(f"hy{run}-{i}", c, day))
            for i, c in enumerate(ids)
        ]
        answers = [f.result(timeout=60) for f in futures]
    finally:
        for service in services:
            service.close()
    contacts = sum(a.contact for a in answers)
    assert _spent(engine, "daily", day.date()) == contacts <= HYPOTHESIS_LIMIT
    if contacts < HYPOTHESIS_LIMIT:  # room was left: the budget stopped nobody
        assert not any("budget:daily" in a.excluded for a in answers)
    else:
        stopped = [a for a in answers if "budget:daily" in a.excluded]
        assert all(not a.contact for a in stopped)


def _decide_in_process(
    url: str, ids: list[str], prefix: str, ready: Any, go: Any, out: Any
) -> None:
    engine = create_engine_from_url(url)
    service = _service(engine, max_batch=4)  # many small transactions, interleaving
    service.catalog.current()  # warm: both processes start deciding at the same moment
    ready.put(prefix)
    go.wait(timeout=120)
    try:
        futures = [service.submit(_ask(f"{prefix}{i}", c, START)) for i, c in enumerate(ids)]
        out.put(sum(f.result(timeout=120).contact for f in futures))
    finally:
        service.close()
        engine.dispose()


def test_two_processes_never_take_a_budget_past_its_limit_on_postgres(
    engine: Engine, example_catalog: CatalogSpec
) -> None:
    if engine.dialect.name != "postgresql":
        pytest.skip("two processes sharing a database: the PostgreSQL deployment")
    limit = 80
    _load(engine, _budgeted(example_catalog, BudgetSpec(key="daily", limit=limit, period="day")))
    ids = _customers(engine, "mp-", 200)
    context = mp.get_context("spawn")
    out, ready, go = context.Queue(), context.Queue(), context.Event()
    halves = [ids[::2], ids[1::2]]
    processes = [
        context.Process(
            target=_decide_in_process,
            args=(engine_url(engine), half, f"mp{n}-", ready, go, out),
        )
        for n, half in enumerate(halves)
    ]
    for process in processes:
        process.start()
    for _ in processes:
        ready.get(timeout=120)
    go.set()
    contacts = [out.get(timeout=180) for _ in processes]
    for process in processes:
        process.join(timeout=30)
        assert process.exitcode == 0
    assert sum(contacts) == _spent(engine, "daily", START.date()) == limit
    assert all(n > 0 for n in contacts), "both processes spent some of the budget"


def test_a_failed_contact_gives_its_spend_back_once(day_budget_engine: Engine) -> None:
    from campaign_db.feedback import SqlFeedbackStore
    from optimizer.feedback import EventReport, record_event

    engine = day_budget_engine
    ids = _customers(engine, "fl-", 12)
    with _service(engine) as service:
        answers = [service.decide(_ask(f"fl-{i}", c, START)) for i, c in enumerate(ids[:9])]
        assert _spent(engine, "contacts", START.date()) == 5
        failed = next(a for a in answers if a.contact)
        feedback = SqlFeedbackStore(engine)
        for event_id in ("bounce-1", "bounce-2"):  # a repeat, and a second failure report
            record_event(
                feedback,
                decision_id=failed.decision_id,
                event=EventReport("bounced", event_id=event_id),
                now=START,
            )
        assert _spent(engine, "contacts", START.date()) == 4
        # the policy may choose no contact (untrained: uniform); one of three takes the room
        again = [service.decide(_ask(f"fl-again{i}", c, START)) for i, c in enumerate(ids[9:])]
    assert sum(a.contact for a in again) == 1
    assert _spent(engine, "contacts", START.date()) == 5


def test_a_cost_budget_is_never_exceeded_and_counts_the_offer_costs(
    engine: Engine, example_catalog: CatalogSpec
) -> None:
    budget = BudgetSpec(key="incentives", measure="cost", limit=50, period="month")
    _load(engine, _budgeted(example_catalog, budget))
    ids = _customers(engine, "co-", 60)
    services = [_service(engine, 8), _service(engine, 8)]
    try:
        futures = [services[i % 2].submit(_ask(f"co-{i}", c, START)) for i, c in enumerate(ids)]
        answers = [f.result(timeout=60) for f in futures]
    finally:
        for service in services:
            service.close()
    cost = sum(a.action.offer.cost for a in answers if a.action is not None)
    spent = _spent(engine, "incentives", date(2026, 11, 1))
    assert spent == pytest.approx(cost)
    assert spent <= 50 + 1e-9
    # free offers never stop: once the money is spent, only they are left
    assert any(a.action is not None and a.action.offer.cost == 0 for a in answers)
