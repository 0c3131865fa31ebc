"""Schema migrations (Alembic), applied by `campopt db upgrade` and on first start.

The Alembic configuration is built in code so that the migrations ship inside the package and
run the same from a checkout, a wheel or a test.
"""

from __future__ import annotations

import fcntl
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

from alembic import command
from alembic.autogenerate import compare_metadata
from alembic.config import Config
from alembic.migration import MigrationContext
from alembic.script import ScriptDirectory
from sqlalchemy import Engine, text
from sqlmodel import SQLModel

import campaign_db.models  # noqa: F401  (registers the tables)

MIGRATIONS = Path(__file__).parent / "migrations"
LOCK_KEY = 0x63616D706F707400  # "campopt\0": the advisory lock migrations take on PostgreSQL


def _config(engine: Engine) -> Config:
    config = Config()
    config.set_main_option("script_location", str(MIGRATIONS))
    config.attributes["engine"] = engine
    return config


def _run(engine: Engine, action: str, revision: str) -> None:
    """Run under a lock: several processes starting at once (replicas with `migrate_on_start`)
    take turns, and the later ones find the schema already at the revision."""
    config = _config(engine)
    with _migration_lock(engine), engine.begin() as connection:
        if connection.dialect.name == "postgresql":
            connection.execute(text("SELECT pg_advisory_xact_lock(:key)"), {"key": LOCK_KEY})
        config.attributes["connection"] = connection
        getattr(command, action)(config, revision)


@contextmanager
def _migration_lock(engine: Engine) -> Iterator[None]:
    """SQLite: an exclusive `flock` next to the database file (PostgreSQL locks in-transaction)."""
    database = engine.url.database
    if engine.dialect.name != "sqlite" or not database or database == ":memory:":
        yield
        return
    with Path(f"{database}.migrate.lock").open("a+") as handle:
        fcntl.flock(handle.fileno(), fcntl.LOCK_EX)
        try:
            yield
        finally:
            fcntl.flock(handle.fileno(), fcntl.LOCK_UN)


def upgrade(engine: Engine, revision: str = "head") -> None:
    _run(engine, "upgrade", revision)


def downgrade(engine: Engine, revision: str) -> None:
    _run(engine, "downgrade", revision)


def current_revision(engine: Engine) -> str | None:
    with engine.connect() as connection:
        return MigrationContext.configure(connection).get_current_revision()


def head_revision() -> str:
    head = ScriptDirectory.from_config(_config_without_engine()).get_current_head()
    if head is None:
        raise RuntimeError("no migrations found in the package")
    return head


def _config_without_engine() -> Config:
    config = Config()
    config.set_main_option("script_location", str(MIGRATIONS))
    return config


def is_up_to_date(engine: Engine) -> bool:
    return current_revision(engine) == head_revision()


def schema_differences(engine: Engine) -> list[object]:
    """What the tables in code and the migrated database disagree on (empty when in sync)."""
    with engine.connect() as connection:
        context = MigrationContext.configure(connection, opts={"compare_type": True})
        return list(compare_metadata(context, SQLModel.metadata))


def revision(engine: Engine, message: str) -> None:
    """Autogenerate a new migration from the tables (developer tool, not a production path)."""
    config = _config(engine)
    with engine.begin() as connection:
        config.attributes["connection"] = connection
        command.revision(config, message=message, autogenerate=True)
