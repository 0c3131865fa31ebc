"""Properties of whole request sequences through the decision service and its database."""

from __future__ import annotations

import itertools
from datetime import UTC, datetime, timedelta
from zoneinfo import ZoneInfo

from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from sqlalchemy import Engine
from sqlmodel import select

from campaign_db.catalog import SqlCatalogReader, load_catalog, read_snapshot
from campaign_db.customers import SqlCustomerStore
from campaign_db.decisions import SqlDecisionStore
from campaign_db.engine import session_scope
from campaign_db.models import ContactHistory, DecisionLog
from optimizer import customers
from optimizer.core.catalog import CatalogSpec
from optimizer.core.decision import DecisionAsk
from optimizer.core.values import ChannelKind
from optimizer.customers import ConsentUpdate
from optimizer.decisions import DecisionService
from optimizer.eligibility import is_quiet
from optimizer.ports.customers import Profile
from optimizer.serving import CatalogCache, PolicyPool

CHANNELS = ["email", "sms", "app_push", "letter", "app_inbox", "web_portal"]
TRIGGERS = [
    "health_c_to_d",
    "health_b_to_c",
    "cancellation_requested",
    "inactive_14d",
    "category_binge",
]
START = datetime(2026, 11, 23, 6, 0, tzinfo=UTC)
RUN = itertools.count()

step = st.tuples(
    st.integers(0, 2),  # customer
    st.integers(0, 36 * 60),  # minutes since the previous step
    st.sampled_from(TRIGGERS),
    st.sets(st.sampled_from(CHANNELS), min_size=1),
    st.one_of(st.none(), st.tuples(st.sampled_from(CHANNELS), st.booleans())),  # consent change
    st.booleans(),  # repeat the previous request id
)


def _service(engine: Engine) -> DecisionService:
    return DecisionService(
        SqlDecisionStore(engine),
        catalog=CatalogCache(SqlCatalogReader(engine), check_every_seconds=0),
        policies=PolicyPool(),
    )


def _max_in_any_window(times: list[datetime], days: float) -> int:
    times = sorted(times)
    window = timedelta(days=days)
    return max((sum(1 for u in times if t <= u < t + window) for t in times), default=0)


@given(steps=st.lists(step, min_size=1, max_size=25))
@settings(
    max_examples=40, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture]
)
def test_no_request_sequence_breaks_consent_quiet_hours_frame_or_caps(
    sqlite_engine: Engine,
    example_catalog: CatalogSpec,
    steps: list[tuple],  # type: ignore[type-arg]
) -> None:
    engine = sqlite_engine
    run = next(RUN)
    if run == 0:
        with session_scope(engine, write=True) as session:
            load_catalog(session, catalog=example_catalog, source="example", actor="test")
    with _service(engine) as service:
        health = ["C", "D", "B"]
        ids = [f"r{run}-c{i}" for i in range(3)]
        consent: dict[str, dict[str, bool]] = {c: {} for c in ids}
        consent_at_decision: dict[str, dict[str, bool]] = {}
        for i, customer_id in enumerate(ids):
            customers.upsert_customer(
                SqlCustomerStore(engine),
                customer_id=customer_id,
                data=Profile(health_class=health[i], language="de", time_zone="Europe/Berlin"),
            )
            for channel in CHANNELS:
                customers.set_consent(
                    SqlCustomerStore(engine),
                    customer_id=customer_id,
                    channel=channel,
                    update=ConsentUpdate(granted=True, changed_at=START - timedelta(days=1)),
                )
                consent[customer_id][channel] = True

        now = START
        answers = {}
        previous: DecisionAsk | None = None
        for n, (who, minutes, trigger, channels, change, repeat) in enumerate(steps):
            now += timedelta(minutes=minutes)
            customer_id = ids[who]
            if change is not None:
                channel, granted = change
                customers.set_consent(
                    SqlCustomerStore(engine),
                    customer_id=customer_id,
                    channel=channel,
                    update=ConsentUpdate(granted=granted, changed_at=now),
                )
                consent[customer_id][channel] = granted
            if repeat and previous is not None:  # a retry repeats the whole request
                request = previous
            else:
                request = DecisionAsk(
                    request_id=f"r{run}-q{n}",
                    customer_id=customer_id,
                    trigger=trigger,
                    channels=sorted(channels),
                    now=now,
                )
            request_id, customer_id = request.request_id, request.customer_id
            answer = service.decide(request)
            if request_id in answers:
                assert answer == answers[request_id]
            else:
                consent_at_decision[request_id] = dict(consent[customer_id])
            answers[request_id] = answer
            previous = request

    with session_scope(engine) as session:
        snapshot = read_snapshot(session)
        contacts = session.exec(
            select(ContactHistory).where(ContactHistory.customer_id.in_(ids))  # type: ignore[attr-defined]
        ).all()
        logs = session.exec(select(DecisionLog).where(DecisionLog.customer_id.in_(ids))).all()  # type: ignore[attr-defined]
    assert len(logs) == len(answers)
    assert sum(1 for a in answers.values() if a.contact) == len(contacts)
    decided = {log.id: log for log in logs}
    for contact in contacts:
        log = decided[contact.decision_id]
        frame = next(f for f in snapshot.frames if f.key == log.frame_key)
        spec = frame.spec
        assert consent_at_decision[log.request_id][contact.channel_key], "contact without consent"
        assert contact.channel_key in spec.channels
        if snapshot.channels[contact.channel_key].kind is ChannelKind.push:
            local = contact.send_at.astimezone(ZoneInfo("Europe/Berlin"))
            assert not is_quiet(local, spec.contact_policy.quiet_hours)
    # every contact, checked against the contacts that existed when it was decided
    ordered = sorted(contacts, key=lambda c: (decided[c.decision_id].created_at, c.decision_id))
    for i, contact in enumerate(ordered):
        policy = next(f for f in snapshot.frames if f.key == contact.frame_key).spec.contact_policy
        before = [c for c in ordered[:i] if c.customer_id == contact.customer_id]

        def within(days: float, pool: list[ContactHistory], at: datetime = contact.send_at) -> int:
            return sum(1 for c in pool if abs(c.send_at - at) < timedelta(days=days))

        assert within(policy.fatigue_cap.days, before) < policy.fatigue_cap.max
        same_campaign = [c for c in before if c.frame_key == contact.frame_key]
        assert within(policy.once_per_customer_days, same_campaign) == 0
        limit = policy.channel_limits.get(contact.channel_key)
        if limit is not None:
            on_channel = [c for c in before if c.channel_key == contact.channel_key]
            assert within(limit.days, on_channel) < limit.max
        assert within(policy.min_gap_hours / 24, before) == 0
    # and, as a consequence, no rolling window holds more than the strictest cap allows
    for customer_id in ids:
        mine = [c.send_at for c in contacts if c.customer_id == customer_id]
        loosest = max(f.spec.contact_policy.fatigue_cap.max for f in snapshot.frames)
        assert _max_in_any_window(mine, 30) <= loosest
    for log in logs:
        if log.probabilities is not None:
            assert abs(log.probabilities.sum() - 1.0) < 1e-9
            assert log.probabilities.min() > 0
