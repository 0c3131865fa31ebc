"""The catalog as serving reads it: the active snapshot, and a cheap fingerprint of it."""

from __future__ import annotations

from collections.abc import Hashable
from typing import Protocol

from optimizer.core.catalog import CatalogSnapshot

CatalogFingerprint = Hashable
"""Equal for two reads exactly when no catalog load or frame status change came between."""


class CatalogReader(Protocol):
    def fingerprint(self) -> CatalogFingerprint:
        """Changes whenever a catalog load or a frame status change could change decisions."""
        ...

    def snapshot(self) -> CatalogSnapshot:
        """The catalog and its active frames."""
        ...
