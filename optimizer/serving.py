"""What a serving process keeps in memory: the catalog snapshot and one policy per frame.

Both refresh without blocking requests for long: the catalog when its fingerprint (catalog
revision and frame statuses) changes, policies when their model source has a newer version.
"""

from __future__ import annotations

import threading
import time
from collections.abc import Callable
from dataclasses import dataclass
from typing import Protocol

from optimizer.core.catalog import CatalogSnapshot, FrameVersion
from optimizer.core.policy_spec import PolicySpec
from optimizer.eligibility import Combination, frame_combinations
from optimizer.features import ActionLines
from optimizer.policy import UNTRAINED_VERSION, BanditPolicy, StoredModel
from optimizer.ports.catalog import CatalogFingerprint, CatalogReader
from optimizer.ports.learning import Checkpoints


class CatalogCache:
    """The active catalog, re-read when a load or a frame status change altered it."""

    def __init__(self, catalog: CatalogReader, *, check_every_seconds: float = 2.0) -> None:
        self._catalog = catalog
        self._check_every = check_every_seconds
        self._lock = threading.Lock()
        self._checked_at = 0.0
        self._fingerprint: CatalogFingerprint | None = None
        self._snapshot: CatalogSnapshot | None = None
        self._lines: ActionLines | None = None
        self._combinations: dict[tuple[int, str, str], tuple[Combination, ...]] = {}

    def current(self) -> tuple[CatalogSnapshot, ActionLines]:
        if self._snapshot is None or time.monotonic() - self._checked_at > self._check_every:
            self.refresh()
        assert self._snapshot is not None
        assert self._lines is not None
        return self._snapshot, self._lines

    def refresh(self, *, force: bool = False) -> bool:
        """Re-read the catalog if it changed; returns whether it did.

        The fingerprint is read before the snapshot: a change between the two leaves an older
        fingerprint with a newer snapshot, which costs one more read next time, never a stale
        snapshot kept.
        """
        with self._lock:
            fingerprint = self._catalog.fingerprint()
            changed = force or fingerprint != self._fingerprint
            if changed:
                snapshot = self._catalog.snapshot()
            self._checked_at = time.monotonic()
            if changed:
                self._snapshot = snapshot
                self._lines = ActionLines(snapshot)
                self._combinations = {}
                self._fingerprint = fingerprint
            return changed

    def combinations(
        self, frame: FrameVersion, language: str, health_class: str
    ) -> tuple[Combination, ...]:
        """`frame_combinations` for the current snapshot, computed once per key."""
        key = (frame.id, language, health_class)
        combos = self._combinations.get(key)
        if combos is None:
            snapshot, _ = self.current()
            combos = frame_combinations(snapshot, frame, language, health_class)
            self._combinations[key] = combos
        return combos


@dataclass(frozen=True)
class ServedVersion:
    """The version a policy serves and its training cut-off (the reward sequence it has learned
    up to), as the service recorded it."""

    version: str
    cursor: int


class ModelSource(Protocol):
    """Where trained policies come from (the MLflow registry in production)."""

    def serving_version(self, name: str) -> str | None: ...

    def load(self, name: str, version: str) -> StoredModel: ...


ONLINE_PREFIX = "online-"


def online_version(cursor: int) -> str:
    """The version of a model the online learner checkpointed at `cursor`, without a registry."""
    return f"{ONLINE_PREFIX}{cursor}"


class CheckpointSource:
    """The learner's checkpoints in the database as the model source when MLflow is disabled,
    so that every process of every replica serves what the leading worker learned."""

    def __init__(self, checkpoints: Checkpoints) -> None:
        self._checkpoints = checkpoints

    def serving_version(self, name: str) -> str | None:
        newest = self._checkpoints.newest_checkpoint(name)
        return None if newest is None else online_version(newest.cursor)

    def load(self, name: str, version: str) -> StoredModel:
        cursor = int(version.removeprefix(ONLINE_PREFIX))
        checkpoint = self._checkpoints.newest_checkpoint(name, cursor=cursor)
        if checkpoint is None:
            raise LookupError(f"no checkpoint of {name} at {version}")
        return StoredModel(
            name=name,
            version=version,
            spec=checkpoint.spec,
            model_data=checkpoint.model,
            examples_learned=checkpoint.examples_learned,
        )


def policy_name(frame_key: str) -> str:
    """One policy lineage per frame."""
    return frame_key


class PolicyPool:
    """One policy per frame: the serving version from the model source, else untrained.

    The decision path never waits for the model source: a frame seen for the first time serves
    its untrained (uniform) policy until `refresh` — run at start-up and by the reloader thread —
    has fetched the champion. An unreachable registry therefore degrades learning, not serving.
    """

    def __init__(
        self,
        source: ModelSource | None = None,
        *,
        on_error: Callable[[str, Exception], None] | None = None,
    ) -> None:
        self._source = source
        self._policies: dict[str, BanditPolicy] = {}
        self._specs: dict[str, PolicySpec] = {}
        self._lock = threading.Lock()
        self._on_error = on_error
        self.last_refresh_ok: bool = True

    def policy_for(self, frame: FrameVersion) -> BanditPolicy:
        name = policy_name(frame.key)
        policy = self._policies.get(name)
        if policy is None:
            with self._lock:
                policy = self._policies.get(name)
                if policy is None:
                    spec = frame.spec.policy_spec()
                    self._specs[name] = spec
                    policy = BanditPolicy(spec, name=name, version=UNTRAINED_VERSION)
                    self._policies[name] = policy
        return policy

    def want(self, frames: list[FrameVersion]) -> None:
        """Serve these frames' policies (untrained until the next refresh loads champions)."""
        for frame in frames:
            self.policy_for(frame)

    def _report(self, name: str, exc: Exception) -> None:
        self.last_refresh_ok = False
        if self._on_error is not None:
            self._on_error(name, exc)

    def install(self, policy: BanditPolicy) -> None:
        """Serve `policy` from now on (the learner in the same process, a reload, a test)."""
        with self._lock:
            self._policies[policy.name] = policy

    def loaded(self) -> dict[str, str]:
        return {name: policy.version for name, policy in self._policies.items()}

    def drifting(self) -> dict[str, bool]:
        """Per loaded policy, whether its drift test says it has not caught up with a change."""
        return {name: policy.drifting for name, policy in self._policies.items()}

    def refresh(self) -> list[str]:
        """Load every policy whose serving version moved; keep the old one on any error."""
        if self._source is None:
            return []
        changed = []
        ok = True
        for name, current in list(self._policies.items()):
            try:
                version = self._source.serving_version(name)
                if version is None or version == current.version:
                    continue
                self.install(BanditPolicy.from_stored(self._source.load(name, version)))
                changed.append(name)
            except Exception as exc:
                ok = False
                self._report(name, exc)
        self.last_refresh_ok = ok
        return changed
