"""Migrations build the schema the tables describe, and tear it down again."""

from __future__ import annotations

import pytest
from sqlalchemy import inspect

from campaign_db import migrate
from campaign_db.engine import create_engine_from_url


@pytest.mark.parametrize("fresh_database_url", ["sqlite", "postgresql"], indirect=True)
def test_migrations_go_up_and_down_and_match_the_tables(
    fresh_database_url: tuple[str, str],
) -> None:
    _backend, url = fresh_database_url
    engine = create_engine_from_url(url)
    try:
        assert migrate.current_revision(engine) is None
        migrate.upgrade(engine)
        assert migrate.is_up_to_date(engine)
        assert migrate.schema_differences(engine) == []
        tables = set(inspect(engine).get_table_names())
        assert {"decision_log", "decision_frame", "customer", "contact_history"} <= tables

        migrate.downgrade(engine, "base")
        assert migrate.current_revision(engine) is None
        assert set(inspect(engine).get_table_names()) <= {"alembic_version"}

        migrate.upgrade(engine)
        assert migrate.is_up_to_date(engine)
    finally:
        engine.dispose()


def test_sqlite_runs_in_wal_mode_with_foreign_keys(tmp_path) -> None:  # type: ignore[no-untyped-def]
    engine = create_engine_from_url(f"sqlite:///{tmp_path / 'x.db'}")
    with engine.connect() as connection:
        assert connection.exec_driver_sql("PRAGMA journal_mode").scalar() == "wal"
        assert connection.exec_driver_sql("PRAGMA foreign_keys").scalar() == 1
        assert connection.exec_driver_sql("PRAGMA synchronous").scalar() == 2
    engine.dispose()


def _upgrade(url: str) -> None:
    engine = create_engine_from_url(url)
    migrate.upgrade(engine)
    engine.dispose()


@pytest.mark.parametrize("fresh_database_url", ["sqlite", "postgresql"], indirect=True)
def test_processes_starting_at_once_migrate_in_turn(fresh_database_url: tuple[str, str]) -> None:
    import multiprocessing as mp

    _backend, url = fresh_database_url
    context = mp.get_context("spawn")
    processes = [context.Process(target=_upgrade, args=(url,)) for _ in range(3)]
    for process in processes:
        process.start()
    for process in processes:
        process.join(120)
    assert [p.exitcode for p in processes] == [0, 0, 0]
    engine = create_engine_from_url(url)
    try:
        assert migrate.is_up_to_date(engine)
    finally:
        engine.dispose()
