"""The decision transaction on the bare DB-API connection, a batch at a time.

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
from collections.abc import Iterable, Iterator, Sequence
from contextlib import contextmanager
from dataclasses import dataclass
from datetime import UTC, date, datetime
from typing import Any

import numpy as np
from sqlalchemy import Engine

from campaign_db.engine import SQLITE_BUSY_TIMEOUT_MS, is_sqlite, sqlite_writer_lock

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
)
REWARD_COLUMNS = ("decision_id", "status", "window_closes_at", "conversions", "sent")
_JSON = {"context", "eligibility_trace", "response", "request_digest"}
_TIMES = {"created_at", "send_at", "window_closes_at"}
_UUIDS = {"id", "decision_id"}


@dataclass(frozen=True)
class CustomerRow:
    id: str
    health_class: str
    usage_index: float
    customer_since: date | None
    time_zone: str
    language: str
    attributes: dict[str, Any]


Contact = tuple[str, str, datetime]
"""(frame key, channel, send time) of one contact that counts against the contact policy."""


@dataclass(frozen=True)
class CustomerRecord:
    """What a decision reads about its customer; if it changed, the decision is made again."""

    row: CustomerRow
    consents: frozenset[str]
    history: tuple[Contact, ...]

    def with_contact(self, contact: Contact) -> CustomerRecord:
        return CustomerRecord(self.row, self.consents, (*self.history, contact))


@dataclass(frozen=True)
class StoredRequest:
    """What a reused request id is checked against; `digest` is None for rows logged before
    digests were."""

    customer_id: str
    answer: dict[str, Any]
    digest: dict[str, str] | None


class DecisionStore:
    """SQL and value conversion for one dialect; `transaction()` yields a `DecisionCursor`."""

    def __init__(self, engine: Engine) -> None:
        self.engine = engine
        self.sqlite = is_sqlite(engine)
        self.mark = "?" if self.sqlite else "%s"
        self.insert_contact = _insert("contact_history", CONTACT_COLUMNS, self.sqlite)
        self.insert_decision = _insert("decision_log", DECISION_COLUMNS, self.sqlite)
        self.insert_reward = _insert("reward", REWARD_COLUMNS, self.sqlite)

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

    def __init__(self, store: DecisionStore, cursor: Any) -> None:
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
        history: dict[str, list[Contact]] = {}
        self.cursor.execute(
            "SELECT customer_id, frame_key, channel_key, send_at FROM contact_history WHERE "
            f"{store.any_of('customer_id', len(ids))} AND send_at >= {store.mark} "
            "AND status <> 'failed' AND status <> 'cancelled' ORDER BY send_at, id",
            (*params, self._time(since)),
        )
        for customer_id, frame, channel, send_at in self.cursor.fetchall():
            history.setdefault(customer_id, []).append((frame, channel, self._read_time(send_at)))
        return {
            customer_id: CustomerRecord(
                row=row,
                consents=frozenset(consents.get(customer_id, ())),
                history=tuple(history.get(customer_id, ())),
            )
            for customer_id, row in rows.items()
        }

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

    def insert_contacts(self, rows: Sequence[dict[str, Any]]) -> None:
        if rows:
            self.cursor.executemany(
                self.store.insert_contact, [self._row(CONTACT_COLUMNS, r) for r in rows]
            )

    def insert_decisions(self, rows: Sequence[dict[str, Any]]) -> None:
        if rows:
            self.cursor.executemany(
                self.store.insert_decision, [self._row(DECISION_COLUMNS, r) for r in rows]
            )

    def insert_rewards(self, rows: Sequence[dict[str, Any]]) -> None:
        if rows:
            self.cursor.executemany(
                self.store.insert_reward, [self._row(REWARD_COLUMNS, r) for r in rows]
            )

    def _customer(self, row: Sequence[Any]) -> CustomerRow:
        since, attributes = row[3], row[6]
        if isinstance(since, str):
            since = date.fromisoformat(since)
        if isinstance(attributes, str):
            attributes = json.loads(attributes)
        return CustomerRow(
            id=row[0],
            health_class=row[1],
            usage_index=float(row[2]),
            customer_since=since,
            time_zone=row[4],
            language=row[5],
            attributes=attributes or {},
        )

    def _row(self, columns: tuple[str, ...], values: dict[str, Any]) -> tuple[Any, ...]:
        out: list[Any] = []
        for column in columns:
            value = values.get(column)
            if value is None:
                out.append(None)
            elif column in _UUIDS:
                out.append(value.hex if self.sqlite else value)
            elif column in _TIMES:
                out.append(self._time(value))
            elif column in _JSON:
                out.append(value if isinstance(value, str) else json.dumps(value))
            elif column == "candidate_action_ids":
                out.append(np.asarray(value, dtype="<i4").tobytes())
            elif column == "probabilities":
                out.append(np.asarray(value, dtype="<f8").tobytes())
            elif isinstance(value, np.generic):
                out.append(value.item())
            else:
                out.append(value)
        return tuple(out)

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
