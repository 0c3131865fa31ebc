"""Which policy version serves: recorded in our database first, mirrored to MLflow's alias after.

The serving record (`ServingRecords`) is the only thing serving and the learner follow.
Every change the service makes — the learner publishing a checkpoint, a promotion, a rollback —
writes the record with the version's training cut-off, then moves the `champion` alias. A crash
between the two leaves an unsynced record, which `reconcile_aliases` finishes. An alias that
points elsewhere after the service synced it was moved by someone else (the MLflow UI, a
script): serving ignores it, the record says so (`tampered_alias`, shown in readiness and frame
status) and the audit log gets one `policy.alias_tampered` entry per move. The service's next
publication or promotion moves the alias back.
"""

from __future__ import annotations

import logging
from dataclasses import dataclass
from typing import TYPE_CHECKING, Literal

from optimizer.core.values import utcnow
from optimizer.policy import BanditPolicy, StoredModel
from optimizer.ports.audit import AuditEntry
from optimizer.ports.learning import ANY_VERSION, ServingRecords
from optimizer.serving import CatalogCache, ServedVersion

if TYPE_CHECKING:
    from optimizer.registry import PolicyRegistry, VersionInfo

log = logging.getLogger("campopt.publishing")

CUT_OFF_TAG = "campopt.cursor"


@dataclass(frozen=True)
class AliasState:
    policy: str
    serving: str
    alias: str | None
    tampered: bool


@dataclass(frozen=True)
class ServingState:
    """What readiness and frame status show of a policy's serving record."""

    version: str
    cursor: int
    source: str
    tampered_alias: str | None


def serving_states(records: ServingRecords) -> dict[str, ServingState]:
    return {
        r.policy_name: ServingState(r.version, r.cursor, r.source, r.tampered_alias)
        for r in records.serving_records()
    }


def served_version(records: ServingRecords, name: str) -> ServedVersion | None:
    record = records.serving(name)
    return None if record is None else ServedVersion(record.version, record.cursor)


class ApprovedSource:
    """Serving's model source with a registry: the version our serving record names, loaded from
    the registry. What the registry's alias says does not matter here."""

    def __init__(self, records: ServingRecords, registry: PolicyRegistry) -> None:
        self.records = records
        self.registry = registry

    def serving_version(self, name: str) -> str | None:
        served = served_version(self.records, name)
        return None if served is None else served.version

    def load(self, name: str, version: str) -> StoredModel:
        return self.registry.load(name, version)

    def ping(self) -> bool:
        return self.registry.ping()

    def version_info(self, name: str, version: str) -> VersionInfo:
        return self.registry.version_info(name, version)


def make_serving(
    records: ServingRecords,
    registry: PolicyRegistry,
    *,
    name: str,
    version: str,
    cursor: int,
    source: str,
    actor: str,
    only_replacing: str | Literal["any"] | None = ANY_VERSION,
) -> bool:
    """Record `version` as serving (see `ServingRecords.record_serving` for `only_replacing`),
    then move the alias. Returns False when the record had moved on and nothing changed."""
    recorded = records.record_serving(
        policy_name=name,
        version=version,
        cursor=cursor,
        source=source,
        actor=actor,
        now=utcnow(),
        only_replacing=only_replacing,
    )
    if recorded:
        _sync_alias(records, registry, name=name, version=version)
    return recorded


def _sync_alias(
    records: ServingRecords, registry: PolicyRegistry, *, name: str, version: str
) -> None:
    from optimizer.registry import CHAMPION, RegistryError

    try:
        registry.set_alias(name, CHAMPION, version)
    except RegistryError as exc:  # serving follows the record; the alias catches up later
        log.warning("policy %s serves v%s; moving the alias failed: %s", name, version, exc)
        return
    records.mark_alias(policy_name=name, version=version, tampered_alias=None)


def version_cut_off(registry: PolicyRegistry, name: str, version: str) -> int | None:
    """The reward sequence a registered version has learned up to, if it was recorded."""
    value = registry.version_info(name, version).tags.get(CUT_OFF_TAG)
    return int(value) if value not in (None, "") else None


def reconcile_aliases(records: ServingRecords, registry: PolicyRegistry) -> list[AliasState]:
    """Compare every policy's `champion` alias with the serving record: finish interrupted
    moves, and report (log, record, audit once) an alias someone else moved."""
    from optimizer.registry import CHAMPION

    states = []
    for record in records.serving_records():
        alias = registry.alias_version(record.policy_name, CHAMPION)
        if alias == record.version:
            if not record.alias_synced or record.tampered_alias is not None:
                records.mark_alias(
                    policy_name=record.policy_name, version=record.version, tampered_alias=None
                )
        elif not record.alias_synced:
            _sync_alias(records, registry, name=record.policy_name, version=record.version)
            alias = record.version
        elif alias != record.tampered_alias:
            log.warning(
                "policy %s: champion alias moved to %s outside the service; serving stays on %s",
                record.policy_name,
                alias,
                record.version,
            )
            records.mark_alias(
                policy_name=record.policy_name,
                version=record.version,
                tampered_alias=alias or "(none)",
                audit=AuditEntry(
                    actor="registry",
                    action="policy.alias_tampered",
                    subject=f"{record.policy_name}:{alias or ''}",
                    details={"alias": alias, "serving": record.version},
                    at=utcnow(),
                ),
            )
        states.append(
            AliasState(
                policy=record.policy_name,
                serving=record.version,
                alias=alias,
                tampered=alias != record.version,
            )
        )
    return states


class RegistryPublisher:
    """The learner's checkpoints become registry versions that serve, unless a promotion or a
    rollback moved the serving record away from the lineage the learner was extending."""

    def __init__(
        self,
        records: ServingRecords,
        registry: PolicyRegistry,
        catalog: CatalogCache,
        *,
        keep_versions: int = 20,
    ) -> None:
        self.records = records
        self.registry = registry
        self.catalog = catalog
        self.keep_versions = keep_versions

    def publish(
        self, policy: BanditPolicy, *, cursor: int, parent_version: str | None
    ) -> str | None:
        from optimizer.registry import RegistryError

        snapshot, lines = self.catalog.current()
        frame = next((f for f in snapshot.frames if f.key == policy.name), None)
        floor = policy.spec.floor_share(frame.spec.exploration) if frame else 0.05
        action_lines = {sig: lines[action_id] for sig, action_id in snapshot.actions.items()}
        version = self.registry.register(
            policy,
            action_lines=action_lines,
            floor_share=floor,
            source="online",
            parent_version=parent_version,
            tags={"cursor": str(cursor)},
        )
        if not make_serving(
            self.records,
            self.registry,
            name=policy.name,
            version=version,
            cursor=cursor,
            source="online",
            actor="learner",
            only_replacing=parent_version,
        ):
            log.info("policy %s: serving moved away from v%s; not published", policy.name, version)
            return None
        try:
            self.registry.prune_online_versions(policy.name, keep=self.keep_versions)
        except RegistryError as exc:  # the new version serves; pruning can wait for the next
            log.warning("could not prune old checkpoint versions: %s", exc)
        return version

    def serving(self, name: str) -> ServedVersion | None:
        return served_version(self.records, name)
