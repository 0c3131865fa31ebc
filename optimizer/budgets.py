"""Budgets across customers: periods, what a contact spends, what is left, and the pacing price.

Pure functions over plain values. A frame's `budgets` (`BudgetSpec`) limit how many contacts, or
how much offer cost, the frame spends per day, week (from Monday) or calendar month in the
frame's time zone. Each budget and period has one counter in the database; the decision writer
reads the counters of a batch under lock, plans against what is left and reserves the spend in
the same transaction as the decision, so a budget is never exceeded.

Two mechanisms work together:

- the hard limit (`fits`, `check_budgets`): a combination whose spend does not fit in what
  is left of any of its budgets is not a candidate, and the decision's eligibility trace says so;
- pacing (`pacing_price`, `price_penalties`): a dual price per budget, from the spend against a
  plan over the period (linear in time, or following the budget's hourly traffic profile),
  lowers every combination's predicted reward by the price times its spend. Ahead of plan the
  price rises and the budget goes to the customers and combinations where it earns most; behind
  plan it falls to 0. The price is an input of the distribution and is logged with the decision,
  so its probabilities can be recomputed.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass
from datetime import date, datetime, timedelta
from typing import Any, Literal
from zoneinfo import ZoneInfo

import numpy as np

from optimizer.core.catalog import BudgetSpec, FrameVersion, OfferSpec
from optimizer.ports.decisions import BudgetCharge, BudgetPeriod

FloatArray = np.ndarray[Any, np.dtype[np.float64]]

Period = Literal["day", "week", "month"]

# Spend is money or counts; a sum of float costs may land a hair above a limit it equals.
_EPSILON = 1e-9


def period_start(period: Period, local_day: date) -> date:
    """The first day of the period that holds `local_day`."""
    if period == "day":
        return local_day
    if period == "week":
        return local_day - timedelta(days=local_day.weekday())
    return local_day.replace(day=1)


def period_end(period: Period, start: date) -> date:
    """The first day after the period that starts on `start`."""
    if period == "day":
        return start + timedelta(days=1)
    if period == "week":
        return start + timedelta(days=7)
    return (start.replace(day=28) + timedelta(days=4)).replace(day=1)


def elapsed_share(period: Period, now: datetime, time_zone: str) -> float:
    """How much of the current period has passed at `now`, in [0, 1), in local wall time."""
    zone = ZoneInfo(time_zone)
    local = now.astimezone(zone)
    start = period_start(period, local.date())
    begin = datetime.combine(start, datetime.min.time(), zone)
    end = datetime.combine(period_end(period, start), datetime.min.time(), zone)
    return min(max((local - begin) / (end - begin), 0.0), 1.0)


def planned_share(budget: BudgetSpec, now: datetime, time_zone: str) -> float:
    """How much of the budget the plan has spent by `now`, in [0, 1]: the elapsed share of the
    period, or with `budget.traffic` the share of the period's traffic (the same 24 hourly
    weights every day) that has come by now."""
    if budget.traffic is None:
        return elapsed_share(budget.period, now, time_zone)
    local = now.astimezone(ZoneInfo(time_zone))
    start = period_start(budget.period, local.date())
    days = (period_end(budget.period, start) - start).days
    weights = np.asarray(budget.traffic, dtype=np.float64)
    hour = local.hour
    into_hour = (local.minute * 60 + local.second + local.microsecond / 1e6) / 3600
    today = float(weights[:hour].sum() + into_hour * weights[hour])
    passed = (local.date() - start).days * float(weights.sum()) + today
    return min(max(passed / (days * float(weights.sum())), 0.0), 1.0)


def frame_periods(frame: FrameVersion, now: datetime) -> list[tuple[BudgetSpec, BudgetPeriod]]:
    """The frame's budgets with the counter each one spends at `now`."""
    local_day = now.astimezone(ZoneInfo(frame.spec.time_zone)).date()
    return [
        (budget, BudgetPeriod(frame.key, budget.key, period_start(budget.period, local_day)))
        for budget in frame.spec.budgets
    ]


def charges(
    frame: FrameVersion, now: datetime, *, offer: OfferSpec, channel: str
) -> tuple[BudgetCharge, ...]:
    """What one contact with `offer` on `channel`, decided at `now`, spends of each budget."""
    return tuple(
        BudgetCharge(period, budget.charge(offer.cost), budget.limit)
        for budget, period in frame_periods(frame, now)
        if budget.covers(offer.key, channel) and budget.charge(offer.cost) > 0
    )


def fits(charge: BudgetCharge, spent: Mapping[BudgetPeriod, float]) -> bool:
    return spent.get(charge.period, 0.0) + charge.amount <= charge.limit + _EPSILON


PRICE_GAIN = 20.0
"""How fast the price rises with spend ahead of plan: at 5 % of the budget ahead of the linear
plan, the price takes the full reward span from each unit of the budget's dearest spend."""


def pacing_price(*, spent: float, limit: float, elapsed: float, gain: float = PRICE_GAIN) -> float:
    """The dual price of a budget, in units of the reward span per unit of `unit`-scaled spend.

    The plan is linear over the period (`elapsed * limit` spent by now); the price is 0 while
    spend is at or behind plan and rises in proportion to how far ahead it is (a proportional
    controller on the pacing error, which is what the Lagrangian's subgradient step settles to
    when the error is read afresh at every decision, across every replica, from the shared
    counter). Spent out, the price is at least 1: nothing in the budget is worth its spend.
    """
    if limit <= 0:
        raise ValueError(f"limit: must be > 0, got {limit}")
    if spent >= limit - _EPSILON:
        return max(1.0, gain * (1.0 - elapsed))
    ahead = spent / limit - elapsed
    return max(0.0, gain * ahead)


def budget_prices(
    frame: FrameVersion, now: datetime, spent: Mapping[BudgetPeriod, float]
) -> dict[BudgetPeriod, float]:
    """The pacing price of each of the frame's budgets at `now`, from its counter."""
    out: dict[BudgetPeriod, float] = {}
    for budget, period in frame_periods(frame, now):
        share = planned_share(budget, now, frame.spec.time_zone)
        out[period] = pacing_price(spent=spent.get(period, 0.0), limit=budget.limit, elapsed=share)
    return out


def price_unit(budget: BudgetSpec, offers: Mapping[str, OfferSpec], frame: FrameVersion) -> float:
    """The spend a price of 1 refers to: one contact for a count budget; for a cost budget the
    dearest offer it can count, so a price of 1 takes the reward span from that offer."""
    if budget.measure == "count":
        return 1.0
    keys = [key for key, _ in frame.spec.offer_locations() if budget.offer in (None, key)]
    costs = [offers[key].cost for key in keys if key in offers]
    dearest = max(costs, default=0.0)
    return dearest if dearest > 0 else 1.0


def price_penalties(
    frame: FrameVersion,
    now: datetime,
    pairs: Sequence[tuple[str, str] | None],
    offers: Mapping[str, OfferSpec],
    prices: Mapping[BudgetPeriod, float],
    reward_span: float,
) -> FloatArray:
    """Per candidate ((offer, channel), None for no contact), how much its predicted reward is
    lowered: the sum over its budgets of price * spend / unit * the reward span."""
    penalty = np.zeros(len(pairs))
    if not prices or not any(prices.values()):
        return penalty
    budgets = {budget.key: budget for budget in frame.spec.budgets}
    units = {key: price_unit(budget, offers, frame) for key, budget in budgets.items()}
    cache: dict[tuple[str, str], float] = {}
    for i, pair in enumerate(pairs):
        if pair is None:
            continue
        if pair not in cache:
            offer, channel = pair
            cache[pair] = sum(
                prices.get(c.period, 0.0) * c.amount / units[c.period.budget_key]
                for c in charges(frame, now, offer=offers[offer], channel=channel)
            )
        penalty[i] = cache[pair] * reward_span
    return penalty


Pair = tuple[str, str]
"""(offer, channel): what decides which budgets a combination spends."""


@dataclass(frozen=True)
class BudgetCheck:
    """What a plan assumed of the budgets: what each (offer, channel) among its candidates
    would spend, and which of them did not fit. The writer plans again under lock only when the
    locked counters block another set."""

    needs: Mapping[Pair, tuple[BudgetCharge, ...]]
    blocked: frozenset[Pair]

    def holds(self, spent: Mapping[BudgetPeriod, float]) -> bool:
        return self.blocked_by(spent) == self.blocked

    def blocked_by(self, spent: Mapping[BudgetPeriod, float]) -> frozenset[Pair]:
        return frozenset(
            pair for pair, due in self.needs.items() if not all(fits(c, spent) for c in due)
        )


NO_CHECK = BudgetCheck(needs={}, blocked=frozenset())


def check_budgets(
    frame: FrameVersion,
    now: datetime,
    pairs: Iterable[Pair],
    offers: Mapping[str, OfferSpec],
    spent: Mapping[BudgetPeriod, float],
) -> tuple[BudgetCheck, dict[str, str]]:
    """Which of `pairs` the budgets block at `spent`, and per blocking budget the trace reason
    (`budget:<key>`)."""
    needs = {
        pair: charges(frame, now, offer=offers[pair[0]], channel=pair[1])
        for pair in dict.fromkeys(pairs)
    }
    check = BudgetCheck(needs=needs, blocked=frozenset())
    stopped = check.blocked_by(spent)
    trace: dict[str, str] = {}
    for pair in sorted(stopped):
        for charge in needs[pair]:
            if not fits(charge, spent):
                used = spent.get(charge.period, 0.0)
                trace[f"budget:{charge.period.budget_key}"] = (
                    f"{used:g} of {charge.limit:g} spent in the period from "
                    f"{charge.period.start.isoformat()}: no room for {charge.amount:g} more"
                )
    return BudgetCheck(needs=needs, blocked=stopped), trace


def snapshot_periods(frames: Iterable[FrameVersion], nows: Iterable[datetime]) -> set[BudgetPeriod]:
    """Every budget counter that decisions of `frames` at any of `nows` could spend."""
    moments = set(nows)
    return {
        period for frame in frames for now in moments for _, period in frame_periods(frame, now)
    }


@dataclass(frozen=True)
class BudgetStatus:
    """One budget in its current period: spend against the limit and the linear plan, and the
    pacing price decisions pay now."""

    key: str
    measure: str
    scope: str
    period: str
    period_start: date
    period_end: date
    limit: float
    spent: float
    planned: float
    price: float


def budget_status(
    frame: FrameVersion, now: datetime, spent: Mapping[BudgetPeriod, float]
) -> list[BudgetStatus]:
    """Each of the frame's budgets at `now`, from its counter's spend."""
    out: list[BudgetStatus] = []
    prices = budget_prices(frame, now, spent)
    for budget, period in frame_periods(frame, now):
        share = planned_share(budget, now, frame.spec.time_zone)
        out.append(
            BudgetStatus(
                key=budget.key,
                measure=budget.measure,
                scope=budget.scope,
                period=budget.period,
                period_start=period.start,
                period_end=period_end(budget.period, period.start),
                limit=budget.limit,
                spent=spent.get(period, 0.0),
                planned=share * budget.limit,
                price=prices[period],
            )
        )
    return out
