"""The catalog cache re-reads the snapshot only when the catalog's fingerprint changed."""

from __future__ import annotations

from dataclasses import replace

from optimizer.core.catalog import CatalogSnapshot, CatalogSpec
from optimizer.memory.catalog import MemoryCatalog
from optimizer.serving import CatalogCache


class CountingCatalog(MemoryCatalog):
    snapshots_read = 0

    def snapshot(self) -> CatalogSnapshot:
        self.snapshots_read += 1
        return super().snapshot()


def test_the_snapshot_is_read_again_only_after_a_change(example_catalog: CatalogSpec) -> None:
    reader = CountingCatalog.of(example_catalog)
    cache = CatalogCache(reader, check_every_seconds=0)
    first, lines = cache.current()
    assert not cache.refresh()
    assert cache.current()[0] is first
    assert reader.snapshots_read == 1

    reader.replace(replace(first, modes={"churn_prevention": "safe"}))
    assert cache.refresh()
    changed, new_lines = cache.current()
    assert changed.modes == {"churn_prevention": "safe"}
    assert new_lines is not lines
    assert reader.snapshots_read == 2
    assert cache.refresh(force=True)
    assert reader.snapshots_read == 3


def test_combinations_are_computed_once_per_snapshot(example_catalog: CatalogSpec) -> None:
    reader = MemoryCatalog.of(example_catalog)
    cache = CatalogCache(reader, check_every_seconds=0)
    snapshot, _ = cache.current()
    frame = next(f for f in snapshot.frames if f.key == "churn_prevention")
    combos = cache.combinations(frame, "en", "D")
    assert combos
    assert cache.combinations(frame, "en", "D") is combos
    reader.replace(replace(snapshot))
    cache.refresh()
    assert cache.combinations(frame, "en", "D") is not combos
