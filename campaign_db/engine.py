"""Engines from a URL: SQLite (embedded default) and PostgreSQL through psycopg 3.

SQLite runs in WAL mode with foreign keys on and `synchronous=FULL`, so an acknowledged commit
survives a power loss. Write transactions on SQLite start with `BEGIN IMMEDIATE`: they take the
write lock up front and wait for it (busy timeout) instead of failing when a read transaction
tries to upgrade. On PostgreSQL, writers serialise per customer with row locks instead.
"""

from __future__ import annotations

import fcntl
import hashlib
import os
import sqlite3
import threading
import time
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

import psycopg
from sqlalchemy import Connection, create_engine, event, text
from sqlalchemy import Engine as Engine  # the handle other packages pass to our stores
from sqlalchemy.engine import make_url
from sqlalchemy.exc import DBAPIError, InterfaceError, OperationalError
from sqlalchemy.pool import ConnectionPoolEntry
from sqlmodel import Session

SQLITE_BUSY_TIMEOUT_MS = 30_000


def normalise_url(url: str) -> str:
    """Accept the usual spellings and pick psycopg 3 for PostgreSQL."""
    if url.startswith("postgres://"):
        url = "postgresql://" + url.removeprefix("postgres://")
    if url.startswith("postgresql://"):
        url = "postgresql+psycopg://" + url.removeprefix("postgresql://")
    return url


def is_sqlite(engine: Engine) -> bool:
    return engine.dialect.name == "sqlite"


def create_engine_from_url(
    url: str, *, echo: bool = False, pool_size: int = 10, autocheckpoint: bool = True
) -> Engine:
    """Build an engine for `url`; for SQLite files the parent folder is created.

    `autocheckpoint=False` stops SQLite from copying the WAL back into the database inside a
    committing request (a multi-millisecond stall every few thousand commits); a server then
    runs `Checkpointer` in the background instead.
    """
    url = normalise_url(url)
    parsed = make_url(url)
    if parsed.get_backend_name() == "sqlite":
        database = parsed.database or ""
        if database and database != ":memory:" and not database.startswith("file:"):
            Path(database).parent.mkdir(parents=True, exist_ok=True)
        engine = create_engine(
            url,
            echo=echo,
            connect_args={"check_same_thread": False, "timeout": SQLITE_BUSY_TIMEOUT_MS / 1000},
        )
        _configure_sqlite(engine, autocheckpoint=autocheckpoint)
        return engine
    if parsed.get_backend_name() == "postgresql":
        return create_engine(
            url,
            echo=echo,
            pool_size=pool_size,
            max_overflow=pool_size,
            pool_pre_ping=True,
            connect_args={"application_name": f"campopt-{os.getpid()}"},
        )
    raise ValueError(f"database url: unsupported backend {parsed.get_backend_name()!r}")


def _configure_sqlite(engine: Engine, *, autocheckpoint: bool) -> None:
    @event.listens_for(engine, "connect")
    def _on_connect(dbapi_connection: sqlite3.Connection, _record: ConnectionPoolEntry) -> None:
        # Let SQLAlchemy's `begin` event below emit BEGIN instead of pysqlite's implicit one.
        dbapi_connection.isolation_level = None
        cursor = dbapi_connection.cursor()
        cursor.execute("PRAGMA journal_mode=WAL")
        cursor.execute("PRAGMA synchronous=FULL")
        cursor.execute("PRAGMA foreign_keys=ON")
        # Deleted rows are overwritten with zeros, so an erased customer's id does not stay
        # readable in free space of the file (many builds default to this; not all do).
        cursor.execute("PRAGMA secure_delete=ON")
        cursor.execute(f"PRAGMA busy_timeout={SQLITE_BUSY_TIMEOUT_MS}")
        if not autocheckpoint:
            cursor.execute("PRAGMA wal_autocheckpoint=0")
        cursor.close()

    @event.listens_for(engine, "begin")
    def _on_begin(connection: Any) -> None:
        if connection.get_execution_options().get("sqlite_write", False):
            connection.exec_driver_sql("BEGIN IMMEDIATE")
        else:
            connection.exec_driver_sql("BEGIN")


DATABASE_ERRORS: tuple[type[Exception], ...] = (
    DBAPIError,
    sqlite3.Error,
    psycopg.Error,
)


def answers(engine: Engine) -> bool:
    """Whether the database answers a trivial query now (readiness)."""
    try:
        with engine.connect() as connection:
            connection.execute(text("SELECT 1"))
    except Exception:
        return False
    return True


def database_unavailable(exc: BaseException) -> bool:
    """Lost connections, a server that is down or restarting, a locked SQLite file: worth a
    retry later, unlike a constraint violation. Covers SQLAlchemy's wrappers and the raw
    driver errors of the decision hot path."""
    if isinstance(exc, DBAPIError) and exc.connection_invalidated:
        return True
    return isinstance(
        exc,
        OperationalError
        | InterfaceError
        | sqlite3.OperationalError
        | psycopg.OperationalError
        | psycopg.InterfaceError,
    )


class LeaderLock:
    """At most one leader among the processes sharing a database (for the scheduler).

    PostgreSQL: a session advisory lock held on a dedicated connection; it goes away with the
    connection, so a dead leader's lock frees itself. SQLite: an exclusive `flock` on a file next
    to the database, released by the operating system when the process ends.
    """

    def __init__(self, engine: Engine, *, name: str = "campopt-scheduler") -> None:
        self._engine = engine
        self._key = (
            int.from_bytes(hashlib.blake2b(name.encode(), digest_size=8).digest(), "big") >> 1
        )
        self._connection: Any = None
        self._file: Any = None
        self._name = name

    @property
    def held(self) -> bool:
        return self._connection is not None or self._file is not None

    def try_acquire(self) -> bool:
        if self.held:
            return self.alive()
        if is_sqlite(self._engine):
            path = Path(f"{self._engine.url.database}.{self._name}.lock")
            handle = path.open("a+")
            try:
                fcntl.flock(handle.fileno(), fcntl.LOCK_EX | fcntl.LOCK_NB)
            except OSError:
                handle.close()
                return False
            self._file = handle
            return True
        raw = self._engine.raw_connection()
        try:
            cursor = raw.cursor()
            cursor.execute("SELECT pg_try_advisory_lock(%s)", (self._key,))
            row = cursor.fetchone()
            acquired = bool(row is not None and row[0])
            raw.commit()
        except Exception:
            raw.close()
            raise
        if not acquired:
            raw.close()
            return False
        self._connection = raw
        return True

    def alive(self) -> bool:
        """Is the lock still ours? (A PostgreSQL connection can drop under us.)"""
        if self._file is not None:
            return True
        if self._connection is None:
            return False
        try:
            cursor = self._connection.cursor()
            cursor.execute("SELECT 1")
            cursor.fetchone()
            self._connection.commit()
        except Exception:
            self._connection = None
            return False
        return True

    def release(self) -> None:
        if self._file is not None:
            fcntl.flock(self._file.fileno(), fcntl.LOCK_UN)
            self._file.close()
            self._file = None
        if self._connection is not None:
            try:
                self._connection.invalidate()
            finally:
                self._connection = None


class Checkpointer:
    """Copies SQLite's WAL into the database every `interval` seconds, off the request path."""

    def __init__(self, engine: Engine, *, interval: float = 1.0) -> None:
        self._engine = engine
        self._interval = interval
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, name="wal-checkpoint", daemon=True)

    def start(self) -> Checkpointer:
        if is_sqlite(self._engine):
            self._thread.start()
        return self

    def _run(self) -> None:
        while not self._stop.wait(self._interval):
            self.checkpoint()

    def checkpoint(self) -> None:
        if not is_sqlite(self._engine):
            return
        raw = self._engine.raw_connection()
        try:
            raw.cursor().execute("PRAGMA wal_checkpoint(PASSIVE)")
        finally:
            raw.close()

    def stop(self) -> None:
        self._stop.set()
        if self._thread.is_alive():
            self._thread.join(timeout=5)


def truncate_wal(engine: Engine, *, attempts: int = 20, pause: float = 0.05) -> bool:
    """Copy SQLite's WAL into the database and empty the file; True when done. No-op on
    PostgreSQL.

    After an erasure the WAL still holds the pages as they were before, with the raw customer
    id, until a checkpoint overwrites them. A reader still working on an older snapshot makes
    the checkpoint give up; it is tried again `attempts` times.
    """
    if not is_sqlite(engine):
        return True
    for attempt in range(attempts):
        if attempt:
            time.sleep(pause)
        raw = engine.raw_connection()
        try:
            cursor = raw.cursor()
            cursor.execute("PRAGMA wal_checkpoint(TRUNCATE)")
            row = cursor.fetchone()
        finally:
            raw.close()
        if row is not None and row[0] == 0:
            return True
    return False


_SQLITE_WRITERS: dict[str, threading.Lock] = {}


def sqlite_writer_lock(engine: Engine) -> threading.Lock:
    """One writer at a time per process and SQLite file.

    SQLite admits one writer; threads that queue on its busy handler sleep 1, 2, 5, 10 … ms
    between attempts, so under load they wait far longer than the lock is held. Queuing on a
    process lock first leaves the busy handler to arbitrate between processes only.
    """
    key = str(engine.url)
    lock = _SQLITE_WRITERS.get(key)
    if lock is None:
        lock = _SQLITE_WRITERS.setdefault(key, threading.Lock())
    return lock


@contextmanager
def connection_scope(engine: Engine, *, write: bool = False) -> Iterator[Connection]:
    """One transaction on a Core connection, for hot paths that need no ORM bookkeeping."""
    if write and is_sqlite(engine):
        with sqlite_writer_lock(engine), _connection_scope(engine, write=True) as connection:
            yield connection
    else:
        with _connection_scope(engine, write=write) as connection:
            yield connection


@contextmanager
def _connection_scope(engine: Engine, *, write: bool) -> Iterator[Connection]:
    connection = engine.connect()
    if write and is_sqlite(engine):
        connection = connection.execution_options(sqlite_write=True)
    try:
        with connection.begin():
            yield connection
    finally:
        connection.close()


@contextmanager
def session_scope(engine: Engine, *, write: bool = False) -> Iterator[Session]:
    """One transaction: committed when the block ends, rolled back on any exception.

    `write=True` takes SQLite's write lock at BEGIN; use it for every transaction that writes.
    """
    if write and is_sqlite(engine):
        with sqlite_writer_lock(engine), _session_scope(engine, write=True) as session:
            yield session
    else:
        with _session_scope(engine, write=write) as session:
            yield session


@contextmanager
def _session_scope(engine: Engine, *, write: bool) -> Iterator[Session]:
    with Session(engine, expire_on_commit=False) as session:
        if write and is_sqlite(engine):
            session.connection(execution_options={"sqlite_write": True})
        try:
            yield session
            session.commit()
        except BaseException:
            session.rollback()
            raise
