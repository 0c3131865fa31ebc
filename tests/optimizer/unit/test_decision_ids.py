"""Decision ids come from the service's id source, stamped with the decision's time."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

import pytest

from optimizer.answers import DecisionAnswer
from optimizer.core.catalog import CatalogSnapshot, CatalogSpec
from optimizer.core.values import SeededIds, unix_ms
from optimizer.decisions import DecisionService
from tests.optimizer.test_eligibility import snapshot_of
from tests.optimizer.unit.test_decide import NOW, Deciding


@pytest.fixture(scope="module")
def snapshot(example_catalog: CatalogSpec) -> CatalogSnapshot:
    return snapshot_of(example_catalog)


def _answers(snapshot: CatalogSnapshot, seed: int) -> list[DecisionAnswer]:
    deciding = Deciding(snapshot)
    deciding.service.close()
    deciding.service = DecisionService(
        deciding.store,
        catalog=deciding.service.catalog,
        policies=deciding.service.policies,
        ids=SeededIds(seed),
    )
    try:
        customers = [deciding.customer() for _ in range(6)]
        return [
            deciding.decide(f"r{i}", customer, now=NOW + timedelta(minutes=i))
            for i, customer in enumerate(customers)
        ]
    finally:
        deciding.service.close()


def _choices(answers: list[DecisionAnswer]) -> list[tuple[object, ...]]:
    return [(a.decision_id, a.contact, a.action, a.probability) for a in answers]


def test_seeded_ids_give_the_same_decisions_and_carry_the_decision_time(
    snapshot: CatalogSnapshot,
) -> None:
    first = _answers(snapshot, seed=3)
    assert _choices(_answers(snapshot, seed=3)) == _choices(first)
    assert [a.decision_id.int >> 80 for a in first] == [
        unix_ms(NOW + timedelta(minutes=i)) for i in range(len(first))
    ]
    other = _answers(snapshot, seed=4)
    assert {a.decision_id for a in other}.isdisjoint(a.decision_id for a in first)


def test_the_default_ids_are_the_real_clock_s(snapshot: CatalogSnapshot) -> None:
    deciding = Deciding(snapshot)
    before = unix_ms(datetime.now(UTC))
    try:
        answer = deciding.decide("r", deciding.customer())
    finally:
        deciding.service.close()
    assert answer.decision_id.version == 7
    assert before <= answer.decision_id.int >> 80 <= unix_ms(datetime.now(UTC))
