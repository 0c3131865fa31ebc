"""Budget periods, charges and pacing prices: pure properties, no database."""

from __future__ import annotations

from datetime import UTC, date, datetime, timedelta

import numpy as np
import pytest
from hypothesis import given
from hypothesis import strategies as st
from pydantic import ValidationError

from optimizer.budgets import (
    check_budgets,
    elapsed_share,
    pacing_price,
    period_end,
    period_start,
    price_penalties,
)
from optimizer.core.catalog import BudgetSpec, CatalogSnapshot, FrameSpec, FrameVersion, OfferSpec
from optimizer.core.values import OfferKind
from optimizer.ports.decisions import BudgetPeriod

OFFERS = {
    "free_month": OfferSpec(key="free_month", name="Free month", kind=OfferKind.incentive, cost=10),
    "tip": OfferSpec(key="tip", name="Tip", kind=OfferKind.tip),
}


def _frame(*budgets: BudgetSpec, time_zone: str = "Europe/Berlin") -> FrameVersion:
    spec = FrameSpec(
        key="churn",
        name="Churn",
        triggers=["t"],
        health_classes=["D"],
        offers=["free_month", "tip"],
        channels=["email", "sms"],
        send_times=["now"],
        max_offer_cost=12,
        valid_from=date(2026, 1, 1),
        time_zone=time_zone,
        budgets=list(budgets),
    )
    return FrameVersion(
        id=1, key="churn", version=1, status="active", spec=spec, approved_by=None, approved_at=None
    )


@given(st.dates(min_value=date(2000, 1, 1), max_value=date(2099, 12, 1)))
def test_every_day_lies_in_exactly_its_period(day: date) -> None:
    for period in ("day", "week", "month"):
        start = period_start(period, day)  # type: ignore[arg-type]
        end = period_end(period, start)  # type: ignore[arg-type]
        assert start <= day < end
        assert period_start(period, end) == end  # type: ignore[arg-type]
    assert period_start("week", day).weekday() == 0
    assert period_start("month", day).day == 1


def test_periods_are_read_in_the_frame_time_zone() -> None:
    # Sunday 23:30 UTC is already Monday in Berlin: a new week there, the old one in UTC
    late_sunday = datetime(2026, 11, 29, 23, 30, tzinfo=UTC)
    assert elapsed_share("week", late_sunday, "Europe/Berlin") < 0.01
    assert elapsed_share("week", late_sunday, "UTC") > 0.99
    share = elapsed_share("day", datetime(2026, 11, 24, 11, tzinfo=UTC), "Europe/Berlin")
    assert share == pytest.approx(0.5)


@given(
    spent=st.floats(0, 1e6),
    limit=st.floats(1, 1e6),
    elapsed=st.floats(0, 1),
    more=st.floats(0, 1e3),
)
def test_the_price_never_falls_as_spend_runs_ahead_and_is_zero_behind_plan(
    spent: float, limit: float, elapsed: float, more: float
) -> None:
    spent = min(spent, limit)
    price = pacing_price(spent=spent, limit=limit, elapsed=elapsed)
    assert price >= 0
    assert pacing_price(spent=min(spent + more, limit), limit=limit, elapsed=elapsed) >= price
    if spent <= elapsed * limit and spent < limit - 1e-6:
        assert price == 0
    if spent >= limit:
        assert price >= 1


def test_a_budget_with_a_fractional_count_or_a_bad_period_names_the_field() -> None:
    with pytest.raises(ValidationError, match="whole number"):
        BudgetSpec(key="calls", limit=8.5, period="day")
    with pytest.raises(ValidationError) as caught:
        BudgetSpec(key="calls", limit=8, period="year")  # type: ignore[arg-type]
    assert caught.value.errors()[0]["loc"] == ("period",)
    with pytest.raises(ValidationError, match="used twice"):
        _frame(
            BudgetSpec(key="calls", limit=8, period="day"),
            BudgetSpec(key="calls", limit=9, period="week"),
        )


def test_only_what_a_budget_counts_is_blocked_when_it_runs_out() -> None:
    now = datetime(2026, 11, 24, 9, tzinfo=UTC)
    frame = _frame(
        BudgetSpec(key="free_months", limit=3, period="week", offer="free_month"),
        BudgetSpec(key="incentives", measure="cost", limit=100, period="month"),
        BudgetSpec(key="sms", limit=5, period="day", channel="sms"),
    )
    week = BudgetPeriod("churn", "free_months", date(2026, 11, 23))
    month = BudgetPeriod("churn", "incentives", date(2026, 11, 1))
    day = BudgetPeriod("churn", "sms", date(2026, 11, 24))
    pairs = [(o, c) for o in OFFERS for c in ("email", "sms")]

    check, trace = check_budgets(frame, now, pairs, OFFERS, {week: 2, month: 85, day: 4})
    assert check.blocked == frozenset()
    assert trace == {}
    check, trace = check_budgets(frame, now, pairs, OFFERS, {week: 3, month: 0, day: 4})
    assert check.blocked == {("free_month", "email"), ("free_month", "sms")}
    assert set(trace) == {"budget:free_months"}
    check, _ = check_budgets(frame, now, pairs, OFFERS, {month: 95, day: 5})
    # 10 more of the incentive money does not fit; the free tip costs nothing; SMS is spent
    assert check.blocked == {("free_month", "email"), ("free_month", "sms"), ("tip", "sms")}
    assert check.holds({month: 99, day: 5})
    assert not check.holds({month: 0, day: 5})


def test_penalties_lower_only_what_spends_a_priced_budget() -> None:
    now = datetime(2026, 11, 24, 9, tzinfo=UTC)
    frame = _frame(BudgetSpec(key="free_months", limit=3, period="week", offer="free_month"))
    week = BudgetPeriod("churn", "free_months", date(2026, 11, 23))
    pairs: list[tuple[str, str] | None] = [("free_month", "email"), ("tip", "email"), None]
    penalty = price_penalties(frame, now, pairs, OFFERS, {week: 0.5}, reward_span=1.0)
    assert penalty.tolist() == [0.5, 0.0, 0.0]
    assert not price_penalties(frame, now, pairs, OFFERS, {week: 0.0}, 1.0).any()


def test_snapshot_type_is_untouched_by_budgets() -> None:
    # budgets ride on the frame spec: the serving snapshot needs no new field
    assert "budgets" not in CatalogSnapshot.__dataclass_fields__
    assert np.isclose(elapsed_share("month", datetime(2026, 11, 16, tzinfo=UTC), "UTC"), 0.5)
    assert timedelta(days=7) == period_end("week", date(2026, 11, 23)) - date(2026, 11, 23)


def test_a_priced_budget_moves_mass_off_what_spends_it_and_keeps_the_floor() -> None:
    from tests.optimizer.test_policy import ACTIONS, shared, trained_policy

    policy = trained_policy()
    assert policy.prices_cost
    best = [i for i in range(len(ACTIONS)) if i % 5 == 3 and i % 3 == 1]  # class D's winners
    free = policy.distribution(shared("D"), ACTIONS, floor_share=0.1)
    unpriced = policy.distribution(
        shared("D"), ACTIONS, floor_share=0.1, penalties=np.zeros(len(ACTIONS))
    )
    np.testing.assert_array_equal(free, unpriced)
    penalties = np.zeros(len(ACTIONS))
    penalties[best] = 1.0  # the full reward span: spending the budget earns nothing now
    priced = policy.distribution(shared("D"), ACTIONS, floor_share=0.1, penalties=penalties)
    assert priced.sum() == pytest.approx(1.0)
    assert priced[best].sum() < free[best].sum() / 2
    assert priced.min() >= 0.1 / len(ACTIONS) - 1e-12
    with pytest.raises(ValueError, match="penalties"):
        policy.distribution(shared("D"), ACTIONS, floor_share=0.1, penalties=np.zeros(3))


@given(
    st.lists(st.floats(0, 10), min_size=24, max_size=24).filter(lambda w: sum(w) > 0),
    st.sampled_from(["day", "week", "month"]),
    st.integers(0, 31 * 24 * 60 - 1),
    st.integers(1, 600),
)
def test_a_traffic_plan_only_moves_forward_and_follows_its_weights(
    weights: list[float], period: str, minute: int, step: int
) -> None:
    from optimizer.budgets import planned_share

    budget = BudgetSpec(key="b", limit=10, period=period, traffic=weights)  # type: ignore[arg-type]
    start = datetime(2026, 12, 1, tzinfo=UTC)  # a Tuesday, first of a month
    now = start + timedelta(minutes=minute)
    later = now + timedelta(minutes=step)
    share = planned_share(budget, now, "UTC")
    assert 0.0 <= share <= 1.0
    if period_start(period, later.date()) == period_start(period, now.date()):  # type: ignore[arg-type]
        assert planned_share(budget, later, "UTC") >= share - 1e-12
    if weights[now.hour] == 0 and later.hour == now.hour and later.date() == now.date():
        assert planned_share(budget, later, "UTC") == pytest.approx(share)


def test_a_flat_traffic_plan_is_the_linear_plan_and_a_night_without_traffic_plans_nothing() -> None:
    from optimizer.budgets import planned_share

    flat = BudgetSpec(key="b", limit=10, period="week", traffic=[1.0] * 24)
    linear = BudgetSpec(key="b", limit=10, period="week")
    for hours in (0, 5, 17.5, 80, 167):
        now = datetime(2026, 11, 23, tzinfo=UTC) + timedelta(hours=hours)
        assert planned_share(flat, now, "UTC") == pytest.approx(planned_share(linear, now, "UTC"))
    daytime = BudgetSpec(key="b", limit=10, period="day", traffic=[0.0] * 8 + [1.0] * 16)
    assert planned_share(daytime, datetime(2026, 11, 23, 7, 59, tzinfo=UTC), "UTC") == 0
    assert planned_share(daytime, datetime(2026, 11, 23, 16, tzinfo=UTC), "UTC") == 0.5
    with pytest.raises(ValidationError, match="traffic: 24 hourly weights"):
        BudgetSpec(key="b", limit=10, period="day", traffic=[1.0] * 23)
