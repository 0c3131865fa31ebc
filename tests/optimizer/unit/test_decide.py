"""Deciding on the in-memory store: holdout, consent, caps, no-contact reasons, idempotency."""

from __future__ import annotations

import itertools
import threading
import time
import uuid
from collections.abc import Iterator, Sequence
from dataclasses import replace
from datetime import UTC, datetime, timedelta

import pytest

from optimizer.answers import DecisionAnswer
from optimizer.core.catalog import CatalogSnapshot, CatalogSpec, FrameVersion
from optimizer.core.decision import CustomerProfile, CustomerRecord, DecisionAsk
from optimizer.core.values import DecisionReason
from optimizer.decisions import DecisionService
from optimizer.eligibility import Combination, frame_combinations, in_holdout
from optimizer.errors import ConflictError, InvalidInputError, NotFoundError
from optimizer.features import ActionLines
from optimizer.memory.decisions import MemoryDecisionStore
from optimizer.planning import SAFE_MODE_VERSION
from optimizer.ports.decisions import BatchKeys, BatchPlanner, BatchTaker
from optimizer.serving import PolicyPool
from tests.optimizer.test_eligibility import snapshot_of

NOW = datetime(2026, 11, 23, 9, 15, tzinfo=UTC)  # a Monday morning in Berlin
CHANNELS = ("email", "sms", "app_push", "app_inbox", "letter", "web_portal")
FRAME = "churn_prevention"


class FixedCatalog:
    """One catalog snapshot, as `CatalogCache` serves it."""

    def __init__(self, snapshot: CatalogSnapshot) -> None:
        self.snapshot = snapshot
        self.lines = ActionLines(snapshot)

    def current(self) -> tuple[CatalogSnapshot, ActionLines]:
        return self.snapshot, self.lines

    def combinations(
        self, frame: FrameVersion, language: str, health_class: str
    ) -> tuple[Combination, ...]:
        return frame_combinations(self.snapshot, frame, language, health_class)


class Deciding:
    def __init__(self, snapshot: CatalogSnapshot) -> None:
        self.store = MemoryDecisionStore({i: s for s, i in snapshot.actions.items()})
        self.service = DecisionService(
            self.store, catalog=FixedCatalog(snapshot), policies=PolicyPool()
        )
        self._ids = itertools.count()

    def customer(
        self,
        *,
        health_class: str = "D",
        consents: tuple[str, ...] = CHANNELS,
        holdout: bool = False,
    ) -> str:
        """A new customer, in the frame's holdout or not."""
        while True:
            customer_id = f"c{next(self._ids)}"
            if in_holdout(customer_id, salt=FRAME, share=0.05) == holdout:
                break
        self.store.add_customer(
            CustomerProfile(
                id=customer_id,
                health_class=health_class,
                usage_index=0.2,
                customer_since=None,
                time_zone="Europe/Berlin",
                language="en",
                attributes={},
            ),
            consents,
        )
        return customer_id

    def decide(self, request_id: str, customer_id: str, **change: object) -> DecisionAnswer:
        ask = DecisionAsk(
            request_id=request_id,
            customer_id=customer_id,
            trigger="health_c_to_d",
            channels=CHANNELS,
            now=NOW,
        )
        return self.service.decide(replace(ask, **change))  # type: ignore[arg-type]

    def until_contact(self, prefix: str, customer_id: str, **change: object) -> DecisionAnswer:
        """The untrained policy may choose no contact; ask again then."""
        for attempt in range(30):
            answer = self.decide(f"{prefix}-{attempt}", customer_id, **change)
            if answer.contact:
                return answer
        raise AssertionError("thirty no-contact choices in a row")


@pytest.fixture(scope="module")
def snapshot(example_catalog: CatalogSpec) -> CatalogSnapshot:
    return snapshot_of(example_catalog)


@pytest.fixture
def deciding(snapshot: CatalogSnapshot) -> Iterator[Deciding]:
    deciding = Deciding(snapshot)
    yield deciding
    deciding.service.close()


def test_a_contact_is_reserved_and_logged_with_its_probability(deciding: Deciding) -> None:
    customer = deciding.customer()
    answer = deciding.until_contact("q", customer)
    assert answer.reason is DecisionReason.policy
    assert answer.action is not None
    assert answer.probability is not None
    assert 0 < answer.probability <= 1
    assert answer.frame is not None
    assert answer.frame.key == FRAME
    [contact] = deciding.store.contacts
    assert contact.decision_id == answer.decision_id
    assert contact.channel == answer.action.channel
    assert contact.send_at == answer.action.send_time.send_at
    pending = {r.decision_id: r for r in deciding.store.rewards}
    assert pending[answer.decision_id].sent is False
    assert pending[answer.decision_id].window_closes_at == contact.send_at + timedelta(days=7)


def test_a_customer_in_the_holdout_gets_no_contact_and_a_reward_that_measures_the_baseline(
    deciding: Deciding,
) -> None:
    """The holdout's conversions are the baseline of the frame's uplift: its decisions get a
    pending reward (nothing to send, so counted as sent) from the decision's time."""
    customer = deciding.customer(holdout=True)
    answer = deciding.decide("q", customer)
    assert (answer.contact, answer.reason) == (False, DecisionReason.holdout)
    assert answer.action is None
    assert deciding.store.contacts == []
    [reward] = deciding.store.rewards
    assert reward.decision_id == answer.decision_id
    assert reward.sent is True
    assert reward.window_closes_at == answer.decided_at + timedelta(days=7)
    entry = deciding.store.entries["q"]
    assert entry.probability == 1.0
    assert entry.chosen_action_id is not None


def test_a_customer_without_consent_is_not_contacted_and_the_answer_says_why(
    deciding: Deciding,
) -> None:
    customer = deciding.customer(consents=())
    answer = deciding.decide("q", customer)
    assert (answer.contact, answer.reason) == (False, DecisionReason.nothing_eligible)
    assert answer.excluded["channel:email"] == "no consent"
    assert deciding.store.contacts == []


def test_a_health_class_no_frame_serves_gets_no_contact_with_the_frames_reason(
    deciding: Deciding,
) -> None:
    customer = deciding.customer(health_class="A")
    answer = deciding.decide("q", customer)
    assert answer.reason is DecisionReason.nothing_eligible
    assert answer.frame is None
    assert "health classes" in answer.excluded[f"frame:{FRAME}"]


def test_the_campaign_contacts_a_customer_once_and_then_says_why_not(deciding: Deciding) -> None:
    customer = deciding.customer()
    deciding.until_contact("first", customer)
    later = deciding.decide("again", customer, now=NOW + timedelta(days=2))
    assert later.reason is DecisionReason.nothing_eligible
    assert any("campaign already contacted" in why for why in later.excluded.values())
    assert len(deciding.store.contacts) == 1


def test_no_contact_chosen_by_the_policy_waits_for_its_reward_as_if_delivered(
    deciding: Deciding,
) -> None:
    answers = [deciding.decide(f"q{i}", deciding.customer()) for i in range(60)]
    chosen = [a for a in answers if a.reason is DecisionReason.policy_no_contact]
    contacts = [a for a in answers if a.contact]
    assert len(contacts) + len(chosen) == len(answers)
    assert len(deciding.store.contacts) == len(contacts)
    pending = {r.decision_id: r for r in deciding.store.rewards}
    for answer in chosen:
        assert answer.probability is not None
        assert pending[answer.decision_id].sent is True


def test_a_repeated_request_id_gets_the_same_answer_and_reserves_nothing_more(
    deciding: Deciding,
) -> None:
    customer = deciding.customer()
    first = deciding.until_contact("q", customer)
    request_id = next(r for r, e in deciding.store.entries.items() if e.id == first.decision_id)
    repeat = deciding.decide(request_id, customer, now=NOW + timedelta(minutes=5))
    assert repeat == first
    assert len(deciding.store.contacts) == 1


def test_a_request_id_reused_for_another_request_is_a_conflict_naming_what_differs(
    deciding: Deciding,
) -> None:
    customer, other = deciding.customer(), deciding.customer()
    deciding.decide("q", customer)
    with pytest.raises(ConflictError) as channels:
        deciding.decide("q", customer, channels=("sms",))
    assert channels.value.field == "request_id"
    assert "channels" in channels.value.message
    with pytest.raises(ConflictError) as customer_id:
        deciding.decide("q", other)
    assert "customer_id" in customer_id.value.message
    assert list(deciding.store.entries) == ["q"]


def test_unknown_customers_triggers_and_channels_are_refused(deciding: Deciding) -> None:
    with pytest.raises(NotFoundError):
        deciding.decide("q1", "nobody")
    customer = deciding.customer()
    with pytest.raises(InvalidInputError) as trigger:
        deciding.decide("q2", customer, trigger="no_such_trigger")
    assert trigger.value.field == "trigger"
    with pytest.raises(InvalidInputError) as channel:
        deciding.decide("q3", customer, channels=("email", "pigeon"))
    assert channel.value.field == "channels[1]"
    assert deciding.store.entries == {}


def test_a_request_time_too_far_from_the_clock_is_refused(deciding: Deciding) -> None:
    ask = DecisionAsk(
        request_id="q",
        customer_id=deciding.customer(),
        trigger="health_c_to_d",
        channels=CHANNELS,
        now=NOW,
    )
    with pytest.raises(InvalidInputError) as skew:
        deciding.service.decide(ask, max_skew=timedelta(seconds=30))
    assert skew.value.field == "now"


def test_in_safe_mode_only_the_safe_default_or_no_contact_is_chosen_uniformly(
    snapshot: CatalogSnapshot,
) -> None:
    deciding = Deciding(replace(snapshot, modes={FRAME: "safe"}))
    try:
        answers = [deciding.decide(f"q{i}", deciding.customer()) for i in range(20)]
    finally:
        deciding.service.close()
    for answer in answers:
        assert answer.policy is not None
        assert answer.policy.version == SAFE_MODE_VERSION
        if answer.action is not None:
            assert answer.action.offer.key == "content_recommendation"
            assert answer.action.channel == "email"
            assert answer.action.send_time.key == "weekday_late_afternoon"
        assert answer.probability == pytest.approx(1 / answer.candidates)


def test_the_logged_decision_reads_back_with_its_candidates_and_distribution(
    deciding: Deciding,
) -> None:
    answer = deciding.until_contact("q", deciding.customer())
    logged = deciding.service.record(answer.decision_id)
    assert DecisionAnswer.model_validate(logged.answer) == answer
    assert len(logged.candidates) == answer.candidates
    assert sum(c.probability or 0.0 for c in logged.candidates) == pytest.approx(1.0)
    assert answer.action is not None
    chosen = next(c for c in logged.candidates if c.action_id == logged.chosen_action_id)
    assert chosen.signature.split("|")[0] == answer.action.offer.key
    with pytest.raises(NotFoundError):
        deciding.service.record(uuid.uuid4())


class GatedStore(MemoryDecisionStore):
    """A store whose write transactions wait at a gate before they take the lock (as if
    another process held it), recording the request ids each one writes and counting reads
    without lock."""

    def __init__(self, actions: dict[int, str]) -> None:
        super().__init__(actions)
        self.waiting = threading.Event()
        self.gate = threading.Event()
        self.transactions: list[list[str]] = []
        self.unlocked_reads = 0

    def read_customers(
        self, customer_ids: Sequence[str], since: datetime
    ) -> dict[str, CustomerRecord]:
        self.unlocked_reads += 1
        return super().read_customers(customer_ids, since)

    def write_batch(self, *, take: BatchTaker, plan: BatchPlanner) -> None:
        def recorded_take() -> BatchKeys:
            keys = take()
            self.transactions.append(sorted(keys.request_ids))
            return keys

        self.waiting.set()
        assert self.gate.wait(timeout=30)
        super().write_batch(take=recorded_take, plan=plan)


def test_requests_planned_while_the_writer_waits_for_the_lock_join_its_transaction(
    snapshot: CatalogSnapshot,
) -> None:
    store = GatedStore({i: s for s, i in snapshot.actions.items()})
    for customer in range(4):
        store.add_customer(
            CustomerProfile(
                id=f"k{customer}",
                health_class="D",
                usage_index=0.2,
                customer_since=None,
                time_zone="Europe/Berlin",
                language="en",
                attributes={},
            ),
            CHANNELS,
        )
    service = DecisionService(store, catalog=FixedCatalog(snapshot), policies=PolicyPool())
    try:
        ask = DecisionAsk(
            request_id="first",
            customer_id="k0",
            trigger="health_c_to_d",
            channels=CHANNELS,
            now=NOW,
        )
        first = service.submit(ask)
        assert store.waiting.wait(timeout=30)  # the writer waits for the lock with one request
        later = [
            service.submit(replace(ask, request_id=f"later-{i}", customer_id=f"k{i}"))
            for i in range(1, 4)
        ]
        deadline = time.monotonic() + 30
        while store.unlocked_reads < 2 and time.monotonic() < deadline:
            time.sleep(0.001)  # until the planner has planned the later ones
        time.sleep(0.05)
        store.gate.set()
        answers = [f.result(timeout=30) for f in [first, *later]]
    finally:
        store.gate.set()
        service.close()
    assert {a.request_id for a in answers} == {"first", "later-1", "later-2", "later-3"}
    assert store.transactions == [["first", "later-1", "later-2", "later-3"]]
