"""The decision store on the bare DB-API connection, a batch at a time.

The decision writer reads the state of every customer in a batch with three statements, locks
them with one, and inserts all contacts and log rows with two `executemany` calls, whatever the
batch size; a statement through SQLAlchemy's execution machinery would cost 30 to 150 µs of
Python, on the driver's cursor it costs a few, and on PostgreSQL every statement saved is a round
trip saved. Values are converted exactly as the SQLModel tables store them (SQLite: UUIDs as 32
hex characters, timestamps as naive-UTC text, JSON as text), so rows written here read back
identically through the ORM; the tests check that round trip.
"""

from __future__ import annotations

import json
import random
import sqlite3
import time
import uuid
from collections.abc import Iterable, Iterator, Mapping, Sequence
from contextlib import contextmanager
from datetime import UTC, date, datetime
from typing import Any

import numpy as np
from sqlalchemy import Engine
from sqlmodel import Session, col, select

from campaign_db.budgets import charge_budget_spend, read_budget_spend
from campaign_db.engine import (
    SQLITE_BUSY_TIMEOUT_MS,
    is_sqlite,
    session_scope,
    sqlite_writer_lock,
)
from campaign_db.models import Action, DecisionLog
from optimizer.core.decision import CustomerProfile, CustomerRecord, PastContact
from optimizer.ports.decisions import (
    BatchPlanner,
    BatchTaker,
    BudgetCharge,
    BudgetPeriod,
    LogEntry,
    LoggedCandidate,
    LoggedDecision,
    PendingReward,
    ReservedContact,
    StoredRequest,
)

CONTACT_COLUMNS = (
    "id",
    "customer_id",
    "decision_id",
    "frame_key",
    "channel_key",
    "send_at",
    "created_at",
    "status",
)
DECISION_COLUMNS = (
    "id",
    "request_id",
    "created_at",
    "customer_id",
    "trigger_key",
    "frame_key",
    "frame_version",
    "catalog_revision",
    "policy_name",
    "policy_version",
    "reason",
    "context",
    "candidate_action_ids",
    "probabilities",
    "chosen_action_id",
    "probability",
    "seed",
    "send_at",
    "eligibility_trace",
    "response",
    "request_digest",
    "budget_prices",
)
REWARD_COLUMNS = ("decision_id", "status", "window_closes_at", "conversions", "sent")
_JSON = {"context", "eligibility_trace", "response", "request_digest", "budget_prices"}


def get_decision(session: Session, *, decision_id: uuid.UUID) -> DecisionLog | None:
    return session.get(DecisionLog, decision_id)


def actions_by_id(session: Session, *, ids: list[int]) -> dict[int, Action]:
    rows = session.exec(select(Action).where(col(Action.id).in_(ids))).all()
    return {row.id: row for row in rows if row.id is not None}


class SqlDecisionStore:
    """The `DecisionStore` port for one dialect; `transaction()` yields a `DecisionCursor`."""

    def __init__(self, engine: Engine) -> None:
        self.engine = engine
        self.sqlite = is_sqlite(engine)
        self.mark = "?" if self.sqlite else "%s"
        self.insert_contact = _insert("contact_history", CONTACT_COLUMNS, self.sqlite)
        self.insert_decision = _insert("decision_log", DECISION_COLUMNS, self.sqlite)
        self.insert_reward = _insert("reward", REWARD_COLUMNS, self.sqlite)

    # --- the port ---------------------------------------------------------------------------

    def read_customers(
        self, customer_ids: Sequence[str], since: datetime
    ) -> dict[str, CustomerRecord]:
        with self.transaction(write=False) as cursor:
            return cursor.read_customers(customer_ids, since, lock=False)

    def logged_requests(self, request_ids: Iterable[str]) -> dict[str, str]:
        with self.transaction(write=False) as cursor:
            return cursor.logged_requests(request_ids)

    def stored_request(self, request_id: str) -> StoredRequest | None:
        with self.transaction(write=False) as cursor:
            return cursor.stored_answer(request_id)

    def read_budgets(self, periods: Iterable[BudgetPeriod]) -> dict[BudgetPeriod, float]:
        with self.transaction(write=False) as cursor:
            return cursor.read_budgets(periods, lock=False)

    def write_batch(self, *, take: BatchTaker, plan: BatchPlanner) -> None:
        with self.transaction(write=True) as cursor:
            keys = take()
            states = cursor.read_customers(keys.customer_ids, keys.since, lock=True)
            spent = cursor.read_budgets(keys.budgets, lock=True)
            logged = cursor.logged_requests(keys.request_ids)
            writes = plan(states, logged, spent)
            cursor.insert_contacts([w.contact for w in writes if w.contact is not None])
            cursor.insert_decisions([w.entry for w in writes])
            cursor.insert_rewards([w.reward for w in writes if w.reward is not None])
            cursor.charge_budgets([(w.entry.id, c) for w in writes for c in w.charges])

    def logged_decision(self, decision_id: uuid.UUID) -> LoggedDecision | None:
        with session_scope(self.engine) as session:
            row = get_decision(session, decision_id=decision_id)
            if row is None:
                return None
            ids = [
                int(i)
                for i in (row.candidate_action_ids if row.candidate_action_ids is not None else [])
            ]
            actions = actions_by_id(session, ids=ids)
        probabilities = row.probabilities
        return LoggedDecision(
            answer=row.response,
            context=row.context,
            candidates=tuple(
                LoggedCandidate(
                    action_id=action_id,
                    signature=actions[action_id].signature if action_id in actions else "?",
                    probability=float(probabilities[i]) if probabilities is not None else None,
                )
                for i, action_id in enumerate(ids)
            ),
            chosen_action_id=row.chosen_action_id,
            seed=row.seed,
            catalog_revision=row.catalog_revision,
            eligibility_trace=row.eligibility_trace or {},
        )

    # --- SQL helpers ------------------------------------------------------------------------

    def any_of(self, column: str, count: int) -> str:
        """`column IN (…)` for `count` values: one list parameter on PostgreSQL."""
        if self.sqlite:
            return f"{column} IN ({', '.join('?' * count)})"
        return f"{column} = ANY(%s)"

    def list_params(self, values: Sequence[Any]) -> tuple[Any, ...]:
        return tuple(values) if self.sqlite else (list(values),)

    @contextmanager
    def transaction(self, *, write: bool) -> Iterator[DecisionCursor]:
        """One transaction on a pooled connection; SQLite writers queue on the process lock."""
        if write and self.sqlite:
            with sqlite_writer_lock(self.engine), self._transaction(write=True) as cursor:
                yield cursor
        else:
            with self._transaction(write=write) as cursor:
                yield cursor

    @contextmanager
    def _transaction(self, *, write: bool) -> Iterator[DecisionCursor]:
        raw = self.engine.raw_connection()
        try:
            cursor = raw.cursor()
            if self.sqlite and write:
                _begin_immediate(cursor)
            elif self.sqlite:
                cursor.execute("BEGIN")
            try:
                yield DecisionCursor(self, cursor)
            except BaseException:
                raw.rollback()
                raise
            raw.commit()
        finally:
            raw.close()


class DecisionCursor:
    """The statements of a decision batch, bound to one open transaction."""

    def __init__(self, store: SqlDecisionStore, cursor: Any) -> None:
        self.store = store
        self.cursor = cursor
        self.sqlite = store.sqlite

    def read_customers(
        self, customer_ids: Sequence[str], since: datetime, *, lock: bool
    ) -> dict[str, CustomerRecord]:
        """Profile, granted consents and countable contacts since `since`, per customer.

        `lock=True` takes the customers' row locks on PostgreSQL, in id order so that two
        writers locking overlapping batches cannot deadlock; SQLite needs none (its write
        transaction excludes all others).
        """
        ids = sorted(set(customer_ids))
        if not ids:
            return {}
        store, params = self.store, self.store.list_params(ids)
        statement = (
            "SELECT id, health_class, usage_index, customer_since, time_zone, language, "
            f"attributes FROM customer WHERE {store.any_of('id', len(ids))} ORDER BY id"
        )
        if lock and not self.sqlite:
            statement += " FOR UPDATE"
        self.cursor.execute(statement, params)
        rows = {row[0]: self._customer(row) for row in self.cursor.fetchall()}
        consents: dict[str, set[str]] = {}
        self.cursor.execute(
            "SELECT customer_id, channel_key FROM consent WHERE "
            f"{store.any_of('customer_id', len(ids))} AND granted = "
            + ("1" if self.sqlite else "true"),
            params,
        )
        for customer_id, channel in self.cursor.fetchall():
            consents.setdefault(customer_id, set()).add(channel)
        history: dict[str, list[PastContact]] = {}
        self.cursor.execute(
            "SELECT customer_id, frame_key, channel_key, send_at FROM contact_history WHERE "
            f"{store.any_of('customer_id', len(ids))} AND send_at >= {store.mark} "
            "AND status <> 'failed' AND status <> 'cancelled' ORDER BY send_at, id",
            (*params, self._time(since)),
        )
        for customer_id, frame, channel, send_at in self.cursor.fetchall():
            history.setdefault(customer_id, []).append(
                PastContact(frame, channel, self._read_time(send_at))
            )
        return {
            customer_id: CustomerRecord(
                profile=row,
                consents=frozenset(consents.get(customer_id, ())),
                history=tuple(history.get(customer_id, ())),
            )
            for customer_id, row in rows.items()
        }

    def read_budgets(
        self, periods: Iterable[BudgetPeriod], *, lock: bool
    ) -> dict[BudgetPeriod, float]:
        return read_budget_spend(self.cursor, periods, sqlite=self.sqlite, lock=lock)

    def charge_budgets(self, charges: Sequence[tuple[uuid.UUID, BudgetCharge]]) -> None:
        charge_budget_spend(
            self.cursor, [(self._uuid(d), c) for d, c in charges], sqlite=self.sqlite
        )

    def logged_requests(self, request_ids: Iterable[str]) -> dict[str, str]:
        """request id → customer id, for those of `request_ids` already decided."""
        ids = sorted(set(request_ids))
        if not ids:
            return {}
        self.cursor.execute(
            "SELECT request_id, customer_id FROM decision_log WHERE "
            + self.store.any_of("request_id", len(ids)),
            self.store.list_params(ids),
        )
        return dict(self.cursor.fetchall())

    def stored_answer(self, request_id: str) -> StoredRequest | None:
        """The logged decision of `request_id`: its customer, answer and request digest."""
        self.cursor.execute(
            "SELECT customer_id, response, request_digest FROM decision_log "
            f"WHERE request_id = {self.store.mark}",
            (request_id,),
        )
        row = self.cursor.fetchone()
        if row is None:
            return None
        answer, digest = (json.loads(v) if isinstance(v, str) else v for v in row[1:])
        return StoredRequest(customer_id=row[0], answer=answer, digest=digest)

    def insert_contacts(self, contacts: Sequence[ReservedContact]) -> None:
        if contacts:
            self.cursor.executemany(self.store.insert_contact, [self._contact(c) for c in contacts])

    def insert_decisions(self, entries: Sequence[LogEntry]) -> None:
        if entries:
            self.cursor.executemany(self.store.insert_decision, [self._entry(e) for e in entries])

    def insert_rewards(self, rewards: Sequence[PendingReward]) -> None:
        if rewards:
            self.cursor.executemany(self.store.insert_reward, [self._reward(r) for r in rewards])

    def _reward(self, r: PendingReward) -> tuple[Any, ...]:
        return (self._uuid(r.decision_id), "pending", self._time(r.window_closes_at), 0, r.sent)

    def _contact(self, c: ReservedContact) -> tuple[Any, ...]:
        decision_id = None if c.decision_id is None else self._uuid(c.decision_id)
        return (
            self._uuid(c.id),
            c.customer_id,
            decision_id,
            c.frame_key,
            c.channel,
            self._time(c.send_at),
            self._time(c.created_at),
            "reserved",
        )

    def _entry(self, e: LogEntry) -> tuple[Any, ...]:
        ids, probabilities = e.candidate_action_ids, e.probabilities
        return (
            self._uuid(e.id),
            e.request_id,
            self._time(e.created_at),
            e.customer_id,
            e.trigger,
            e.frame_key,
            e.frame_version,
            e.catalog_revision,
            e.policy_name,
            e.policy_version,
            None if e.reason is None else e.reason.value,
            _json(e.context),
            None if ids is None else np.asarray(ids, dtype="<i4").tobytes(),
            None if probabilities is None else np.asarray(probabilities, dtype="<f8").tobytes(),
            e.chosen_action_id,
            None if e.probability is None else float(e.probability),
            int(e.seed),
            None if e.send_at is None else self._time(e.send_at),
            _json(e.eligibility_trace),
            e.response,
            _json(e.request_digest),
            None if e.budget_prices is None else _json(e.budget_prices),
        )

    def _uuid(self, value: uuid.UUID) -> Any:
        return value.hex if self.sqlite else value

    def _customer(self, row: Sequence[Any]) -> CustomerProfile:
        since, attributes = row[3], row[6]
        if isinstance(since, str):
            since = date.fromisoformat(since)
        if isinstance(attributes, str):
            attributes = json.loads(attributes)
        return CustomerProfile(
            id=row[0],
            health_class=row[1],
            usage_index=float(row[2]),
            customer_since=since,
            time_zone=row[4],
            language=row[5],
            attributes=attributes or {},
        )

    def _time(self, value: datetime) -> Any:
        if value.tzinfo is None:
            raise ValueError("naive datetime: every timestamp must carry a time zone")
        value = value.astimezone(UTC)
        if self.sqlite:
            return value.replace(tzinfo=None).isoformat(" ", "microseconds")
        return value

    def _read_time(self, value: Any) -> datetime:
        if isinstance(value, str):
            return datetime.fromisoformat(value).replace(tzinfo=UTC)
        result: datetime = value.astimezone(UTC)
        return result


def _json(value: Mapping[str, Any]) -> str:
    return json.dumps(dict(value))


def _begin_immediate(cursor: Any, timeout: float = SQLITE_BUSY_TIMEOUT_MS / 1000) -> None:
    """Take SQLite's write lock, polling every 50 to 1000 µs instead of SQLite's busy handler.

    The built-in handler sleeps 1, 2, 5, 10, 15 … ms between attempts; another process holds
    the lock for about a millisecond, so most of those sleeps would be idle time.
    """
    cursor.execute("PRAGMA busy_timeout=0")
    try:
        deadline = time.monotonic() + timeout
        pause = 50e-6
        while True:
            try:
                cursor.execute("BEGIN IMMEDIATE")
                return
            except sqlite3.OperationalError as exc:
                if "locked" not in str(exc) or time.monotonic() > deadline:
                    raise
            time.sleep(pause * (0.5 + random.random()))
            pause = min(pause * 2, 1e-3)
    finally:
        cursor.execute(f"PRAGMA busy_timeout={SQLITE_BUSY_TIMEOUT_MS}")


def _insert(table: str, columns: tuple[str, ...], sqlite: bool) -> str:
    names = ", ".join(columns)
    if sqlite:
        marks = ", ".join("?" for _ in columns)
    else:
        marks = ", ".join("%s::jsonb" if c in _JSON else "%s" for c in columns)
    return f"INSERT INTO {table} ({names}) VALUES ({marks})"
