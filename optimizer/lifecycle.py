"""The policy lifecycle: train a candidate, prove it offline, promote it, or roll back.

A candidate is trained off-policy on the earlier part of a frame's logs and estimated, with the
champion, on the later part (the same rows for both). No policy is estimated on decisions it was
trained on: each version records its training cut-off (last decision time, last reward sequence),
evaluation uses only decisions after the cut-offs of both policies, and a champion that learned
from every one of them (an online checkpoint) is compared through the logged mean of what served.
The evaluation pipeline (`optimizer.evaluation`) turns the estimates into promote / reject /
needs approval. Training is an MLflow run (spec as parameters, estimates as metrics, report and
gate as artifacts) whose model becomes a version with the `challenger` alias. Promotion moves
`champion` only with fresh, passing evidence and a model that loads; every step lands in the
audit log with who, when, why and the evidence.
"""

from __future__ import annotations

import json
import logging
import tempfile
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from datetime import datetime, timedelta
from pathlib import Path
from typing import TYPE_CHECKING, Literal

import numpy as np

from offline_eval.gate import GateConfig, GateResult, Verdict
from optimizer.core.catalog import FrameVersion
from optimizer.core.policy_spec import PolicySpec
from optimizer.core.values import utcnow
from optimizer.errors import ConflictError, InvalidInputError, NotFoundError
from optimizer.evaluation import Champion, GateEvidence, gate_candidate
from optimizer.offline import (
    DecisionLogs,
    TrainingCutoff,
    load_decision_logs,
    train_policies,
    version_cutoff,
)
from optimizer.policy import BanditPolicy
from optimizer.ports.audit import AuditEntry, AuditLog, JsonValue
from optimizer.ports.decision_logs import DecisionLogReader, LogFilters
from optimizer.ports.learning import ServingRecords
from optimizer.publishing import make_serving, served_version, version_cut_off
from optimizer.serving import CatalogCache

if TYPE_CHECKING:
    from optimizer.registry import PolicyRegistry, VersionInfo

log = logging.getLogger("campopt.lifecycle")


@dataclass(frozen=True)
class LifecycleConfig:
    estimator: Literal["SNIPS", "DR"] = "SNIPS"
    gate: GateConfig = field(default_factory=GateConfig)
    later_share: float = 0.5
    max_evidence_age: timedelta = timedelta(days=7)


@dataclass(frozen=True)
class TrainResult:
    policy: str
    version: str
    gate: GateResult
    evidence_at: str
    rows: int


@dataclass(frozen=True)
class PromotionResult:
    policy: str
    version: str
    replaced: str | None
    action: str


@dataclass(frozen=True)
class FrameOutcome:
    """What the scheduled job did for one frame: skipped (and why), or trained and gated."""

    frame: str
    version: str | None = None
    gate: Verdict | None = None
    promoted: bool = False
    skipped: str | None = None


@dataclass(frozen=True)
class WaitingPolicy:
    """A registered version whose gate says it leaves its frame: it waits for a manager, with
    the evidence the gate judged (tags and run metrics)."""

    policy: str
    version: str
    serving: str | None
    evidence_at: str
    evaluated: str
    evaluated_rows: str
    metrics: Mapping[str, float]


def version_id(name: str, version: str) -> str:
    """`churn_prevention:7`: how the API names a version of a frame's policy."""
    return f"{name}:{version}"


def parse_version_id(value: str) -> tuple[str, str]:
    name, _, version = value.rpartition(":")
    if not name or not version.isdigit():
        raise InvalidInputError(
            "version", f"{value!r} is not <policy>:<version>, e.g. churn_prevention:3"
        )
    return name, version


@dataclass(frozen=True)
class LifecycleContext:
    """What training and promotion share: the stores, the registry and the catalog, plus the
    look-ups both make."""

    serving: ServingRecords
    registry: PolicyRegistry
    catalog: CatalogCache
    logs: DecisionLogReader
    audit: AuditLog
    config: LifecycleConfig
    clock: Callable[[], datetime]

    def frame(self, key: str) -> FrameVersion:
        snapshot, _ = self.catalog.current()
        frame = next((f for f in snapshot.frames if f.key == key), None)
        if frame is None:
            raise NotFoundError("frame", f"no active frame {key!r}")
        return frame

    def version(self, name: str, version: str) -> VersionInfo:
        try:
            return self.registry.version_info(name, version)
        except Exception as exc:
            raise NotFoundError("version", f"no version {version_id(name, version)}") from exc

    def cutoff(self, name: str, version: str) -> TrainingCutoff | None:
        """What a registered version was trained on, from its tags; None when it does not say."""
        self.version(name, version)

        def tags_of(v: str) -> dict[str, str] | None:
            try:
                return dict(self.registry.version_info(name, v).tags)
            except Exception:
                return None

        return version_cutoff(version, tags_of)

    def served(self, name: str) -> str | None:
        served = served_version(self.serving, name)
        return None if served is None else served.version

    def champion(self, name: str) -> Champion | None:
        version = self.served(name)
        if version is None:
            return None
        stored = self.registry.load(name, version)
        try:
            cutoff = self.cutoff(name, version)
        except NotFoundError:
            cutoff = None
        return Champion(BanditPolicy.from_stored(stored, version=version), cutoff)

    def record(self, actor: str, action: str, subject: str, details: Mapping[str, object]) -> None:
        self.audit.add(
            AuditEntry(
                actor=actor, action=action, subject=subject, at=self.clock(), details=_json(details)
            )
        )


def _json(details: Mapping[str, object]) -> dict[str, JsonValue]:
    """Details as the JSON document the audit log stores."""
    loaded: dict[str, JsonValue] = json.loads(json.dumps(details, default=str))
    return loaded


class PolicyTraining:
    """Train a candidate and gate it, or gate an existing version again; the evidence goes to
    the registry and the audit log."""

    def __init__(self, context: LifecycleContext) -> None:
        self.context = context

    def train(self, frame_key: str, *, spec: PolicySpec | None = None, actor: str) -> TrainResult:
        """Train a candidate on the earlier logs, gate it on the later ones, register it as the
        challenger with all its evidence."""
        c = self.context
        frame = c.frame(frame_key)
        spec = spec or frame.spec.policy_spec()
        snapshot, lines = c.catalog.current()
        logs = load_decision_logs(c.logs, snapshot, LogFilters(frame_key=frame_key))
        earlier, later, cut_off = logs.split_by_sequence(c.config.later_share)
        candidate = train_policies(earlier, {frame_key: spec}, lines)[frame_key]
        trained = earlier.cutoff()
        champion = c.champion(frame_key)
        with tempfile.TemporaryDirectory() as tmp:
            evidence = self._gate(frame, candidate, champion, later, Path(tmp), spec, trained)
            now = c.clock()
            data_from, data_to = _span(evidence.evaluated)
            version = c.registry.register(
                candidate,
                action_lines={sig: lines[a] for sig, a in snapshot.actions.items()},
                floor_share=spec.floor_share(frame.spec.exploration),
                source="offline",
                parent_version=champion.policy.version if champion else None,
                metrics=dict(evidence.metrics),
                tags={
                    "gate": evidence.gate.verdict,
                    "evidence_at": now.isoformat(),
                    "trained_rows": str(earlier.data.n),
                    **trained.to_tags(),
                    "evaluated_rows": str(evidence.evaluated.data.n),
                    "data_from": data_from,
                    "data_to": data_to,
                    "frame_version": str(frame.version),
                    "cursor": str(cut_off),
                },
                artifacts=dict(evidence.files),
                alias="challenger",
            )
        rows = evidence.evaluated.data.n
        c.record(
            actor,
            "policy.train",
            version_id(frame_key, version),
            {
                "gate": evidence.gate.to_dict(),
                "spec": spec.model_dump(mode="json"),
                "rows": rows,
                "trained": trained.describe(),
                "evaluated": f"{data_from} to {data_to}",
            },
        )
        return TrainResult(frame_key, version, evidence.gate, now.isoformat(), rows)

    def evaluate(self, name: str, version: str, *, actor: str) -> TrainResult:
        """Evaluate an existing version against the champion on the decisions after its
        training cut-off (the newest `later_share` when it records none), and store the fresh
        evidence on the version (promotion refuses evidence older than the limit)."""
        c = self.context
        c.version(name, version)
        frame = c.frame(name)
        stored = c.registry.load(name, version)
        candidate = BanditPolicy.from_stored(stored, version=version)
        snapshot, _ = c.catalog.current()
        logs = load_decision_logs(c.logs, snapshot, LogFilters(frame_key=name))
        cutoff = c.cutoff(name, version)
        if cutoff is None:  # nothing recorded: the latest share, as a fresh candidate gets
            _, later = logs.split(c.config.later_share)
        else:
            unseen = np.flatnonzero(logs.unseen(cutoff))
            if unseen.size == 0:
                raise ConflictError(
                    "version",
                    f"{version_id(name, version)} was trained on {cutoff.describe()}: no later "
                    "decision has a final reward yet to evaluate it on",
                )
            later = logs.take(unseen)
        champion = c.champion(name)
        with tempfile.TemporaryDirectory() as tmp:
            evidence = self._gate(frame, candidate, champion, later, Path(tmp), stored.spec, cutoff)
        now = c.clock()
        data_from, data_to = _span(evidence.evaluated)
        rows = evidence.evaluated.data.n
        for key, value in (
            ("gate", evidence.gate.verdict),
            ("evidence_at", now.isoformat()),
            ("data_from", data_from),
            ("data_to", data_to),
            ("evaluated_rows", str(rows)),
        ):
            c.registry.tag_version(name, version, f"campopt.{key}", value)
        c.record(
            actor,
            "policy.evaluate",
            version_id(name, version),
            {
                "gate": evidence.gate.to_dict(),
                "rows": rows,
                "trained": cutoff.describe() if cutoff else "unknown",
                "evaluated": f"{data_from} to {data_to}",
            },
        )
        return TrainResult(name, version, evidence.gate, now.isoformat(), rows)

    def _gate(
        self,
        frame: FrameVersion,
        candidate: BanditPolicy,
        champion: Champion | None,
        later: DecisionLogs,
        folder: Path,
        spec: PolicySpec,
        cutoff: TrainingCutoff | None,
    ) -> GateEvidence:
        snapshot, lines = self.context.catalog.current()
        return gate_candidate(
            frame=frame,
            candidate=candidate,
            spec=spec,
            cutoff=cutoff,
            champion=champion,
            later=later,
            snapshot=snapshot,
            lines=lines,
            estimator=self.context.config.estimator,
            config=self.context.config.gate,
            folder=folder,
        )


class PolicyPromotion:
    """Move the champion: promotion with fresh passing evidence, a manager's approval, a
    rejection, a rollback."""

    def __init__(self, context: LifecycleContext) -> None:
        self.context = context

    def promote(
        self, name: str, version: str, *, actor: str, reason: str, approved: bool = False
    ) -> PromotionResult:
        c = self.context
        tags = c.version(name, version).tags
        evidence_at = tags.get("campopt.evidence_at")
        if evidence_at is None:
            raise ConflictError("version", f"{version_id(name, version)} has no offline evidence")
        age = c.clock() - datetime.fromisoformat(evidence_at)
        if age > c.config.max_evidence_age:
            raise ConflictError(
                "version",
                f"evidence of {version_id(name, version)} is {age.days} days old (more than "
                f"{c.config.max_evidence_age.days}); evaluate it again",
            )
        verdict = tags.get("campopt.gate")
        if verdict == "reject":
            raise ConflictError("version", f"{version_id(name, version)} failed its promotion gate")
        if verdict == "needs_approval" and not approved:
            raise ConflictError(
                "version",
                f"{version_id(name, version)} leaves its frame and needs a manager's approval",
            )
        if tags.get("campopt.status") == "rejected":
            raise ConflictError("version", f"{version_id(name, version)} was rejected")
        self._check_loads(name, version)
        cut_off = self._cut_off(name, version)
        replaced = c.served(name)
        make_serving(
            c.serving,
            c.registry,
            name=name,
            version=version,
            cursor=cut_off,
            source="promotion",
            actor=actor,
        )
        if c.registry.alias_version(name, "challenger") == version:
            c.registry.delete_alias(name, "challenger")
        c.registry.tag_version(name, version, "campopt.replaces", replaced or "")
        action = "policy.approve" if approved else "policy.promote"
        c.record(
            actor,
            action,
            version_id(name, version),
            {"reason": reason, "replaced": replaced, "gate": verdict, "evidence_at": evidence_at},
        )
        return PromotionResult(policy=name, version=version, replaced=replaced, action=action)

    def reject(self, name: str, version: str, *, actor: str, reason: str) -> PromotionResult:
        c = self.context
        c.version(name, version)
        c.registry.client.set_model_version_tag(
            f"campopt-{name}", version, "campopt.status", "rejected"
        )
        if c.registry.alias_version(name, "challenger") == version:
            c.registry.delete_alias(name, "challenger")
        c.record(actor, "policy.reject", version_id(name, version), {"reason": reason})
        return PromotionResult(policy=name, version=version, replaced=None, action="policy.reject")

    def rollback(
        self, name: str, *, actor: str, reason: str, to_version: str | None = None
    ) -> PromotionResult:
        """Champion goes back to `to_version`, or to the version the last promotion replaced."""
        c = self.context
        current = c.served(name)
        target = to_version or self._replaced_by_last_promotion(name)
        if target is None:
            raise ConflictError("policy", f"{name} has no earlier champion to roll back to")
        if target == current:
            raise ConflictError("to_version", f"{version_id(name, target)} already serves")
        self._check_loads(name, target)
        make_serving(
            c.serving,
            c.registry,
            name=name,
            version=target,
            cursor=self._cut_off(name, target),
            source="rollback",
            actor=actor,
        )
        c.record(
            actor, "policy.rollback", version_id(name, target), {"reason": reason, "from": current}
        )
        return PromotionResult(
            policy=name, version=target, replaced=current, action="policy.rollback"
        )

    def _replaced_by_last_promotion(self, name: str) -> str | None:
        for entry in self.context.audit.entries(action="policy.", subject=f"{name}:", limit=200):
            if entry.action in ("policy.promote", "policy.approve"):
                replaced = (entry.details or {}).get("replaced")
                return str(replaced) if replaced else None
        return None

    def _cut_off(self, name: str, version: str) -> int:
        """The reward sequence the version has learned up to: the learner replays from there
        when it takes the version over. A version without one cannot serve."""
        cut_off = version_cut_off(self.context.registry, name, version)
        if cut_off is None:
            raise ConflictError(
                "version",
                f"{version_id(name, version)} records no training cut-off; train it again",
            )
        return cut_off

    def _check_loads(self, name: str, version: str) -> None:
        """Refuse a version whose model does not load; the champion stays as it is."""
        try:
            stored = self.context.registry.load(name, version)
            policy = BanditPolicy(
                stored.spec,
                name=name,
                version=version,
                model_data=stored.model_data,
                examples_learned=1,
            )
            policy.distribution("shared |c hc_A", ["|o a", "|o b"], floor_share=0.0)
        except Exception as exc:
            raise ConflictError(
                "version", f"the model of {version_id(name, version)} cannot be loaded: {exc}"
            ) from exc


class PolicyLifecycle:
    """Training, gating and promotion of every frame's policy, and the scheduled job that
    runs them."""

    def __init__(
        self,
        serving: ServingRecords,
        registry: PolicyRegistry,
        catalog: CatalogCache,
        *,
        logs: DecisionLogReader,
        audit: AuditLog,
        config: LifecycleConfig | None = None,
        clock: Callable[[], datetime] = utcnow,
    ) -> None:
        context = LifecycleContext(
            serving=serving,
            registry=registry,
            catalog=catalog,
            logs=logs,
            audit=audit,
            config=config or LifecycleConfig(),
            clock=clock,
        )
        self.context = context
        self.training = PolicyTraining(context)
        self.promotion = PolicyPromotion(context)

    def train(self, frame_key: str, *, spec: PolicySpec | None = None, actor: str) -> TrainResult:
        return self.training.train(frame_key, spec=spec, actor=actor)

    def evaluate(self, name: str, version: str, *, actor: str) -> TrainResult:
        return self.training.evaluate(name, version, actor=actor)

    def promote(
        self, name: str, version: str, *, actor: str, reason: str, approved: bool = False
    ) -> PromotionResult:
        return self.promotion.promote(name, version, actor=actor, reason=reason, approved=approved)

    def approve(self, name: str, version: str, *, actor: str, reason: str) -> PromotionResult:
        """A manager's approval of a candidate that leaves its frame: it is promoted."""
        return self.promotion.promote(name, version, actor=actor, reason=reason, approved=True)

    def reject(self, name: str, version: str, *, actor: str, reason: str) -> PromotionResult:
        return self.promotion.reject(name, version, actor=actor, reason=reason)

    def waiting(self, names: list[str]) -> list[WaitingPolicy]:
        """Versions of these policies that need a manager's approval and have not been
        judged: gate `needs_approval`, not rejected, not serving."""
        c = self.context
        found = []
        for name in names:
            serving = c.served(name)
            for info in c.registry.versions(name):
                tags = info.tags
                if (
                    tags.get("campopt.gate") != "needs_approval"
                    or tags.get("campopt.status") == "rejected"
                    or info.version == serving
                ):
                    continue
                found.append(
                    WaitingPolicy(
                        policy=name,
                        version=info.version,
                        serving=serving,
                        evidence_at=tags.get("campopt.evidence_at", ""),
                        evaluated=f"{tags.get('campopt.data_from', '?')} to "
                        f"{tags.get('campopt.data_to', '?')}",
                        evaluated_rows=tags.get("campopt.evaluated_rows", "?"),
                        metrics=c.registry.run_metrics(info.run_id) if info.run_id else {},
                    )
                )
        return found

    def rollback(
        self, name: str, *, actor: str, reason: str, to_version: str | None = None
    ) -> PromotionResult:
        return self.promotion.rollback(name, actor=actor, reason=reason, to_version=to_version)

    def train_and_promote_all(self, *, actor: str = "scheduler") -> list[FrameOutcome]:
        """For every active frame: train a candidate from the frame's spec; promote it when the
        gate says so, leave it waiting when it needs approval."""
        snapshot, _ = self.context.catalog.current()
        outcomes = []
        for frame in snapshot.frames:
            try:
                result = self.train(frame.key, actor=actor)
            except (ValueError, NotFoundError) as exc:
                outcomes.append(FrameOutcome(frame.key, skipped=str(exc)))
                continue
            promoted = result.gate.verdict == "promote"
            if promoted:
                self.promote(
                    frame.key, result.version, actor=actor, reason="passed the promotion gate"
                )
            outcomes.append(FrameOutcome(frame.key, result.version, result.gate.verdict, promoted))
        return outcomes


def _span(logs: DecisionLogs) -> tuple[str, str]:
    """First and last decision time of the rows, as tags and audits name them."""
    stamps = logs.data.timestamp
    if stamps is None or len(stamps) == 0:
        return "", ""
    return str(stamps[0]), str(stamps[-1])
