"""The catalog reader behaves alike in memory and on both databases: a fingerprint that moves
only with the catalog, and the same snapshot of a freshly loaded catalog."""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, replace

import pytest
from sqlalchemy import Engine

from campaign_db.catalog import SqlCatalogReader, load_catalog
from campaign_db.engine import session_scope
from campaign_db.governance import SqlGovernanceStore
from optimizer.core.catalog import CatalogSpec
from optimizer.core.values import utcnow
from optimizer.memory.catalog import MemoryCatalog, catalog_snapshot
from optimizer.ports.catalog import CatalogReader
from optimizer.ports.governance import FrameState


@dataclass
class Catalog:
    reader: CatalogReader
    put_in_safe_mode: Callable[[str], None]
    """The kill switch on one frame: a change that alters decisions."""


@pytest.fixture
def catalog(store_engine: Engine | None, example_catalog: CatalogSpec) -> Catalog:
    if store_engine is None:
        memory = MemoryCatalog.of(example_catalog)

        def safe_in_memory(key: str) -> None:
            memory.replace(replace(memory.snapshot(), modes={key: "safe"}))

        return Catalog(memory, safe_in_memory)
    engine = store_engine
    with session_scope(engine, write=True) as session:
        load_catalog(session, catalog=example_catalog, source="example", actor="test")

    def safe_in_sql(key: str) -> None:
        SqlGovernanceStore(engine).set_state(
            FrameState(
                frame_key=key, mode="safe", reason="test", changed_at=utcnow(), changed_by="ops"
            )
        )

    return Catalog(SqlCatalogReader(engine), safe_in_sql)


def test_the_fingerprint_moves_only_when_the_catalog_changes(catalog: Catalog) -> None:
    before = catalog.reader.fingerprint()
    assert catalog.reader.fingerprint() == before
    catalog.put_in_safe_mode("churn_prevention")
    after = catalog.reader.fingerprint()
    assert after != before
    assert catalog.reader.snapshot().modes == {"churn_prevention": "safe"}
    assert catalog.reader.fingerprint() == after


def test_the_snapshot_holds_the_approved_frames_and_every_action(
    catalog: Catalog, example_catalog: CatalogSpec
) -> None:
    snapshot = catalog.reader.snapshot()
    approved = {f.key for f in example_catalog.frames if f.approval is not None}
    assert {f.key for f in snapshot.frames} == approved
    assert all(f.status == "active" for f in snapshot.frames)
    assert set(snapshot.offers) == {o.key for o in example_catalog.offers}
    assert "no_contact" in snapshot.actions
    assert len(set(snapshot.actions.values())) == len(snapshot.actions)


@pytest.mark.parametrize("store_engine", ["sqlite", "postgresql"], indirect=True)
def test_memory_builds_the_snapshot_a_database_reads_after_loading(
    catalog: Catalog, example_catalog: CatalogSpec
) -> None:
    read = catalog.reader.snapshot()
    built = catalog_snapshot(example_catalog)
    assert built.actions == read.actions
    assert (built.triggers, built.channels, built.send_times) == (
        read.triggers,
        read.channels,
        read.send_times,
    )
    assert (built.offers, built.texts) == (read.offers, read.texts)
    by_key = {f.key: f for f in read.frames}
    for frame in built.frames:
        other = by_key[frame.key]
        assert (frame.version, frame.status, frame.approved_by, frame.approved_at) == (
            other.version,
            other.status,
            other.approved_by,
            other.approved_at,
        )
        assert frame.spec == other.spec
        assert frame.spec.policy_spec() == other.spec.policy_spec()
