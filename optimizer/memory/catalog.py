"""The catalog in memory: a snapshot built from a catalog spec, as a fresh database loads it."""

from __future__ import annotations

import threading
from datetime import UTC

from optimizer.core.catalog import (
    NO_CONTACT,
    CatalogSnapshot,
    CatalogSpec,
    FrameSpec,
    FrameVersion,
    action_signature,
    frame_actions,
)
from optimizer.core.values import FrameStatus


def catalog_snapshot(catalog: CatalogSpec) -> CatalogSnapshot:
    """What `read_snapshot` returns after `catalog` is loaded into an empty database: frames
    that carry an approval are active (version 1) with their spec as stored (without the
    approval), actions are numbered in signature order."""
    frames: list[FrameVersion] = []
    for spec in catalog.frames:
        if spec.approval is not None:
            frames.append(
                FrameVersion(
                    id=len(frames) + 1,
                    key=spec.key,
                    version=1,
                    status=FrameStatus.active,
                    spec=FrameSpec.model_validate(
                        spec.model_dump(mode="json", exclude={"approval"})
                    ),
                    approved_by=spec.approval.approved_by,
                    approved_at=spec.approval.approved_at.astimezone(UTC),
                )
            )
    signatures = {NO_CONTACT}
    for spec in catalog.frames:
        signatures.update(action_signature(*combo) for combo in frame_actions(spec, catalog.texts))
    return CatalogSnapshot(
        revision=1,
        triggers={t.key: t for t in catalog.triggers},
        channels={c.key: c for c in catalog.channels},
        send_times={s.key: s for s in catalog.send_times},
        offers={o.key: o for o in catalog.offers},
        texts={t.key: t for t in catalog.texts},
        frames=tuple(frames),
        actions={signature: i for i, signature in enumerate(sorted(signatures), start=1)},
    )


class MemoryCatalog:
    """The optimizer's `CatalogReader` over a snapshot that `replace` swaps."""

    def __init__(self, snapshot: CatalogSnapshot) -> None:
        self._snapshot = snapshot
        self._changes = 0
        self._lock = threading.Lock()

    @classmethod
    def of(cls, catalog: CatalogSpec) -> MemoryCatalog:
        return cls(catalog_snapshot(catalog))

    def replace(self, snapshot: CatalogSnapshot) -> None:
        with self._lock:
            self._snapshot = snapshot
            self._changes += 1

    def fingerprint(self) -> int:
        with self._lock:
            return self._changes

    def snapshot(self) -> CatalogSnapshot:
        with self._lock:
            return self._snapshot
