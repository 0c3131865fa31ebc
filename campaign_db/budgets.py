"""Budget counters: one row per frame budget and period in `budget_spend`, spent only within
its limit, in the transaction of the decisions that spend it.

The counters of a batch are created (at 0) and locked before the batch is planned, after its
customers and in key order as every writer locks them, so that two writers cannot deadlock; on
PostgreSQL a writer of another process waits on the row lock and reads what is left only after
this transaction ends. The conditional `UPDATE … WHERE spent + :x <= :limit` then adds the
batch's spend: planning already left out what does not fit, so it only fails if something is
wrong, and then it fails the whole transaction rather than pass the limit.
"""

from __future__ import annotations

import uuid
from collections.abc import Iterable, Sequence
from datetime import UTC, date, datetime
from typing import Any

from sqlalchemy import case, delete, select, update
from sqlmodel import Session

from campaign_db.models import BudgetChargeRow, BudgetSpend, table_of
from optimizer.ports.decisions import BudgetCharge, BudgetPeriod

_spend = table_of(BudgetSpend)
_charges = table_of(BudgetChargeRow)

# A sum of float costs may land a hair above a limit it equals.
_SLACK = 1e-9


class BudgetExceededError(RuntimeError):
    """A charge would take a budget counter past its limit; the transaction is rolled back."""


def read_budget_spend(
    cursor: Any, periods: Iterable[BudgetPeriod], *, sqlite: bool, lock: bool
) -> dict[BudgetPeriod, float]:
    """The spend of each counter (0 for one never spent); `lock=True` creates the missing
    counters and, on PostgreSQL, locks them (SQLite's write transaction excludes all others)."""
    wanted = sorted(set(periods))
    if not wanted:
        return {}
    mark = "?" if sqlite else "%s"
    if lock:
        now = _now(sqlite)
        cursor.executemany(
            "INSERT INTO budget_spend (frame_key, budget_key, period_start, spent, updated_at) "
            f"VALUES ({mark}, {mark}, {mark}, 0, {mark}) ON CONFLICT DO NOTHING",
            [(*_key(p, sqlite), now) for p in wanted],
        )
    frames = sorted({p.frame_key for p in wanted})
    params: tuple[Any, ...]
    if sqlite:
        where, params = f"frame_key IN ({', '.join('?' * len(frames))})", tuple(frames)
    else:
        where, params = "frame_key = ANY(%s)", (frames,)
    statement = (
        f"SELECT frame_key, budget_key, period_start, spent FROM budget_spend WHERE {where} "
        "ORDER BY frame_key, budget_key, period_start"
    )
    if lock and not sqlite:
        statement += " FOR UPDATE"
    cursor.execute(statement, params)
    found: dict[BudgetPeriod, float] = {}
    for frame_key, budget_key, start, spent in cursor.fetchall():
        if isinstance(start, str):
            start = date.fromisoformat(start)
        found[BudgetPeriod(frame_key, budget_key, start)] = float(spent)
    return {p: found.get(p, 0.0) for p in wanted}


def charge_budget_spend(
    cursor: Any, charges: Sequence[tuple[Any, BudgetCharge]], *, sqlite: bool
) -> None:
    """Add the charges (each with its decision's id, as the driver takes it) to their counters,
    each counter only while it stays within its limit, `BudgetExceededError` (and so a
    rolled-back transaction) otherwise; and record each decision's charges."""
    totals: dict[BudgetPeriod, float] = {}
    limits: dict[BudgetPeriod, float] = {}
    mark = "?" if sqlite else "%s"
    if charges:
        cursor.executemany(
            "INSERT INTO budget_charge (decision_id, budget_key, frame_key, period_start, amount) "
            f"VALUES ({mark}, {mark}, {mark}, {mark}, {mark})",
            [
                (
                    decision_id,
                    c.period.budget_key,
                    c.period.frame_key,
                    _key(c.period, sqlite)[2],
                    c.amount,
                )
                for decision_id, c in charges
            ],
        )
    for _, charge in charges:
        totals[charge.period] = totals.get(charge.period, 0.0) + charge.amount
        limits[charge.period] = charge.limit
    now = _now(sqlite)
    for period in sorted(totals):
        amount = totals[period]
        cursor.execute(
            f"UPDATE budget_spend SET spent = spent + {mark}, updated_at = {mark} "
            f"WHERE frame_key = {mark} AND budget_key = {mark} AND period_start = {mark} "
            f"AND spent + {mark} <= {mark}",
            (amount, now, *_key(period, sqlite), amount, limits[period] + _SLACK),
        )
        if cursor.rowcount != 1:
            raise BudgetExceededError(
                f"budgets: {period.budget_key} of frame {period.frame_key} has less than "
                f"{amount:g} left in the period from {period.start.isoformat()}"
            )


def release_budget_spend(session: Session, *, decision_id: uuid.UUID) -> None:
    """Give back what a decision spent of its budgets (its contact failed): each counter goes
    down by the decision's charge, once, however often this is called."""
    connection = session.connection()
    charges = connection.execute(
        select(
            _charges.c.frame_key, _charges.c.budget_key, _charges.c.period_start, _charges.c.amount
        )
        .where(_charges.c.decision_id == decision_id)
        .order_by(_charges.c.frame_key, _charges.c.budget_key)
    ).all()
    for frame_key, budget_key, period_start, amount in charges:
        connection.execute(
            update(_spend)
            .where(
                _spend.c.frame_key == frame_key,
                _spend.c.budget_key == budget_key,
                _spend.c.period_start == period_start,
            )
            .values(
                spent=case((_spend.c.spent > amount, _spend.c.spent - amount), else_=0.0),
                updated_at=datetime.now(UTC),
            )
        )
    connection.execute(delete(_charges).where(_charges.c.decision_id == decision_id))


def _key(period: BudgetPeriod, sqlite: bool) -> tuple[Any, ...]:
    start = period.start.isoformat() if sqlite else period.start
    return (period.frame_key, period.budget_key, start)


def _now(sqlite: bool) -> Any:
    now = datetime.now(UTC)
    return now.replace(tzinfo=None).isoformat(" ", "microseconds") if sqlite else now
