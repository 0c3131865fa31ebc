"""The policy lifecycle: train a candidate, prove it offline, promote it, or roll back.

A candidate is trained off-policy on the earlier part of a frame's logs and estimated, with the
champion, on the later part (the same rows for both). No policy is estimated on decisions it was
trained on: each version records its training cut-off (last decision time, last reward sequence),
evaluation uses only decisions after the cut-offs of both policies, and a champion that learned
from every one of them (an online checkpoint) is compared through the logged mean of what served.
The promotion gate in `offline_eval` turns the estimates into promote / reject / needs approval.
Training is an MLflow run (spec as parameters, estimates as metrics, report and gate as
artifacts) whose model becomes a version with the `challenger` alias. Promotion moves
`champion` only with fresh, passing evidence and a model that loads; every step lands in the
audit log with who, when, why and the evidence.
"""

from __future__ import annotations

import json
import logging
import tempfile
from dataclasses import dataclass, field
from datetime import datetime, timedelta
from pathlib import Path
from typing import TYPE_CHECKING, Any, Literal

import numpy as np
from sqlalchemy import Engine

from campaign_db import queries
from campaign_db.decision_logs import SqlDecisionLogs
from campaign_db.engine import session_scope
from offline_eval import DR, SNIPS, Estimate, LoggedMean, cross_fit, evaluate
from offline_eval.estimators import Diagnostics
from offline_eval.gate import GateConfig, GateResult, Guardrail, promotion_gate
from optimizer.core.catalog import FrameVersion
from optimizer.core.policy_spec import PolicySpec
from optimizer.core.values import utcnow
from optimizer.errors import ConflictError, InvalidInputError, NotFoundError
from optimizer.offline import (
    SEGMENTS,
    DecisionLogs,
    TrainingCutoff,
    VWRewardModel,
    load_decision_logs,
    offer_costs,
    replay_policies,
    reward_features,
    train_policies,
    training_window,
    version_cutoff,
)
from optimizer.policy import BanditPolicy
from optimizer.ports.decision_logs import LogFilters
from optimizer.publishing import make_serving, served_version, version_cut_off
from optimizer.serving import CatalogCache

if TYPE_CHECKING:
    from optimizer.registry import PolicyRegistry

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
    gate: dict[str, Any]
    evidence_at: str
    rows: int


@dataclass(frozen=True)
class PromotionResult:
    policy: str
    version: str
    replaced: str | None
    action: str


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


class PolicyLifecycle:
    def __init__(
        self,
        engine: Engine,
        registry: PolicyRegistry,
        catalog: CatalogCache,
        *,
        config: LifecycleConfig | None = None,
        clock: Any = utcnow,
    ) -> None:
        self.engine = engine
        self.registry = registry
        self.catalog = catalog
        self.config = config or LifecycleConfig()
        self.clock = clock

    # --- training and evidence --------------------------------------------------------------

    def _frame(self, key: str) -> FrameVersion:
        snapshot, _ = self.catalog.current()
        frame = next((f for f in snapshot.frames if f.key == key), None)
        if frame is None:
            raise NotFoundError("frame", f"no active frame {key!r}")
        return frame

    def _champion(self, name: str) -> BanditPolicy | None:
        served = served_version(self.engine, name)
        if served is None:
            return None
        stored = self.registry.load(name, served.version)
        return BanditPolicy.from_stored(stored, version=served.version)

    def _cutoff(self, name: str, version: str) -> TrainingCutoff | None:
        """What a registered version was trained on, from its tags; None when it does not say."""
        self._version(name, version)

        def tags_of(v: str) -> dict[str, str] | None:
            try:
                return dict(self.registry.version_info(name, v).tags)
            except Exception:
                return None

        return version_cutoff(version, tags_of)

    def train(self, frame_key: str, *, spec: PolicySpec | None = None, actor: str) -> TrainResult:
        """Train a candidate on the earlier logs, gate it on the later ones, register it as the
        challenger with all its evidence."""
        frame = self._frame(frame_key)
        spec = spec or frame.spec.policy_spec()
        snapshot, lines = self.catalog.current()
        logs = load_decision_logs(
            SqlDecisionLogs(self.engine), snapshot, LogFilters(frame_key=frame_key)
        )
        earlier, later, cut_off = logs.split_by_sequence(self.config.later_share)
        candidate = train_policies(earlier, {frame_key: spec}, lines)[frame_key]
        trained = earlier.cutoff()
        champion = self._champion(frame_key)
        with tempfile.TemporaryDirectory() as tmp:
            gate, estimates, report_files, evaluated = self._gate(
                frame, candidate, champion, later, Path(tmp), spec=spec, cutoff=trained
            )
            now = self.clock()
            data_from, data_to = _span(evaluated)
            action_lines = {sig: lines[a] for sig, a in snapshot.actions.items()}
            version = self.registry.register(
                candidate,
                action_lines=action_lines,
                floor_share=spec.floor_share(frame.spec.exploration),
                source="offline",
                parent_version=champion.version if champion else None,
                metrics=estimates,
                tags={
                    "gate": gate.verdict,
                    "evidence_at": now.isoformat(),
                    "trained_rows": str(earlier.data.n),
                    **trained.to_tags(),
                    "evaluated_rows": str(evaluated.data.n),
                    "data_from": data_from,
                    "data_to": data_to,
                    "frame_version": str(frame.version),
                    "cursor": str(cut_off),
                },
                artifacts=report_files,
                alias="challenger",
            )
        result = TrainResult(
            policy=frame_key,
            version=version,
            gate=gate.to_dict(),
            evidence_at=now.isoformat(),
            rows=evaluated.data.n,
        )
        self._audit(
            actor,
            "policy.train",
            version_id(frame_key, version),
            {
                "gate": gate.to_dict(),
                "spec": spec.model_dump(mode="json"),
                "rows": evaluated.data.n,
                "trained": trained.describe(),
                "evaluated": f"{data_from} to {data_to}",
            },
        )
        return result

    def evaluate(self, name: str, version: str, *, actor: str) -> TrainResult:
        """Evaluate an existing version against the champion on the decisions after its
        training cut-off (the newest `later_share` when it records none), and store the fresh
        evidence on the version (promotion refuses evidence older than the limit)."""
        self._version(name, version)
        frame = self._frame(name)
        stored = self.registry.load(name, version)
        candidate = BanditPolicy.from_stored(stored, version=version)
        snapshot, _ = self.catalog.current()
        logs = load_decision_logs(
            SqlDecisionLogs(self.engine), snapshot, LogFilters(frame_key=name)
        )
        cutoff = self._cutoff(name, version)
        if cutoff is None:  # nothing recorded: the latest share, as a fresh candidate gets
            _, later = logs.split(self.config.later_share)
        else:
            unseen = np.flatnonzero(logs.unseen(cutoff))
            if unseen.size == 0:
                raise ConflictError(
                    "version",
                    f"{version_id(name, version)} was trained on {cutoff.describe()}: no later "
                    "decision has a final reward yet to evaluate it on",
                )
            later = logs.take(unseen)
        champion = self._champion(name)
        with tempfile.TemporaryDirectory() as tmp:
            gate, _, _, evaluated = self._gate(
                frame, candidate, champion, later, Path(tmp), spec=stored.spec, cutoff=cutoff
            )
        now = self.clock()
        data_from, data_to = _span(evaluated)
        self.registry.tag_version(name, version, "campopt.gate", gate.verdict)
        self.registry.tag_version(name, version, "campopt.evidence_at", now.isoformat())
        self.registry.tag_version(name, version, "campopt.data_from", data_from)
        self.registry.tag_version(name, version, "campopt.data_to", data_to)
        self.registry.tag_version(name, version, "campopt.evaluated_rows", str(evaluated.data.n))
        self._audit(
            actor,
            "policy.evaluate",
            version_id(name, version),
            {
                "gate": gate.to_dict(),
                "rows": evaluated.data.n,
                "trained": cutoff.describe() if cutoff else "unknown",
                "evaluated": f"{data_from} to {data_to}",
            },
        )
        return TrainResult(
            policy=name,
            version=version,
            gate=gate.to_dict(),
            evidence_at=now.isoformat(),
            rows=evaluated.data.n,
        )

    def _gate(
        self,
        frame: FrameVersion,
        candidate: BanditPolicy,
        champion: BanditPolicy | None,
        later: DecisionLogs,
        folder: Path,
        *,
        spec: PolicySpec,
        cutoff: TrainingCutoff | None,
    ) -> tuple[GateResult, dict[str, float], dict[str, Path], DecisionLogs]:
        """Gate the candidate on `later` (decisions it was not trained on), and also after the
        champion's cut-off; returns the rows both were estimated on as well."""
        snapshot, lines = self.catalog.current()
        training = {"candidate": training_window(cutoff)}
        if champion is not None:
            try:
                champion_cutoff = self._cutoff(frame.key, champion.version)
            except NotFoundError:
                champion_cutoff = None
            both = np.flatnonzero(later.unseen(champion_cutoff))
            if both.size:
                later = later.take(both)
                training["champion"] = training_window(champion_cutoff)
            else:
                assert champion_cutoff is not None
                training["champion"] = training_window(
                    champion_cutoff,
                    note=(
                        f"version {champion.version} learned from every evaluation decision "
                        f"({champion_cutoff.describe()}); the logged mean of what served stands "
                        "in for it"
                    ),
                )
                champion = None
        floors = {frame.key: spec.floor_share(frame.spec.exploration)}
        costs = offer_costs(later, snapshot)
        limits = {frame.key: frame.spec.guardrails.max_offer_cost_per_decision}
        target = replay_policies(
            later,
            {frame.key: candidate},
            lines,
            floor_shares=floors,
            costs=costs,
            cost_limits=limits,
        )
        targets = {"candidate": target}
        predictions = None
        estimator: SNIPS | DR = SNIPS()
        if self.config.estimator == "DR":
            estimator = DR()
            predictions = cross_fit(
                later.data, features=reward_features(later, snapshot), model=VWRewardModel
            ).predictions
        candidate_estimate = estimator.estimate(
            later.data.with_target(target), predictions=predictions
        )
        if champion is not None:
            champion_target = replay_policies(
                later,
                {frame.key: champion},
                lines,
                floor_shares=floors,
                costs=costs,
                cost_limits=limits,
            )
            targets["champion"] = champion_target
            champion_estimate = estimator.estimate(
                later.data.with_target(champion_target), predictions=predictions
            )
        else:
            champion_estimate = LoggedMean().estimate(later.data)
        guardrails = self._guardrails(frame, later, target, snapshot)
        gate = promotion_gate(
            candidate=candidate_estimate,
            champion=champion_estimate,
            guardrails=guardrails,
            frame_violations=spec.frame_violations(frame.spec.exploration),
            config=self.config.gate,
        )
        report = evaluate(
            later.data,
            targets,
            predictions=predictions,
            segments=[
                s for s in SEGMENTS if later.data.context is not None and s in later.data.context
            ],
            out_dir=folder,
            fmt="html",
            training=training,
        )
        (folder / "gate.json").write_text(json.dumps(gate.to_dict(), indent=2, default=str))
        metrics = {
            "candidate_value": candidate_estimate.value,
            "candidate_ci_low": candidate_estimate.ci_low,
            "candidate_ci_high": candidate_estimate.ci_high,
            "champion_value": champion_estimate.value,
            "effective_sample_size": candidate_estimate.diagnostics.effective_sample_size,
            **{f"guardrail_{g.name}": g.estimate.value for g in guardrails},
        }
        for segment in report["segments"]:
            if segment["policy"] == "candidate" and segment["estimates"]:
                value = segment["estimates"][0]["value"]
                if value is not None:
                    key = f"segment_{segment['column']}_{segment['segment']}"
                    metrics[key.replace(" ", "_")] = value
        files = {p.name: p for p in folder.iterdir() if p.is_file()}
        return gate, {k: float(v) for k, v in metrics.items() if np.isfinite(v)}, files, later

    def _guardrails(
        self, frame: FrameVersion, later: DecisionLogs, target: np.ndarray[Any, Any], snapshot: Any
    ) -> list[Guardrail]:
        data = later.data.with_target(target)
        assert data.context is not None
        limits = frame.spec.guardrails
        out = []
        for name, column, threshold in (
            ("unsubscribe_rate", "unsubscribed", limits.max_unsubscribe_rate),
            ("complaint_rate", "complained", limits.max_complaint_rate),
        ):
            outcome = data.with_reward(
                data.context[column].to_numpy(dtype=np.float64), reward_range=(0.0, 1.0)
            )
            out.append(Guardrail(name, SNIPS().estimate(outcome), threshold))
        expected_cost = np.add.reduceat(target * offer_costs(later, snapshot), data.offsets[:-1])
        out.append(
            Guardrail(
                "offer_cost_per_decision",
                _mean_estimate(expected_cost, name="expected cost"),
                limits.max_offer_cost_per_decision,
            )
        )
        return out

    # --- promotion ---------------------------------------------------------------------------

    def promote(
        self, name: str, version: str, *, actor: str, reason: str, approved: bool = False
    ) -> PromotionResult:
        info = self._version(name, version)
        tags = info.tags
        evidence_at = tags.get("campopt.evidence_at")
        if evidence_at is None:
            raise ConflictError("version", f"{version_id(name, version)} has no offline evidence")
        age = self.clock() - datetime.fromisoformat(evidence_at)
        if age > self.config.max_evidence_age:
            raise ConflictError(
                "version",
                f"evidence of {version_id(name, version)} is {age.days} days old (more than "
                f"{self.config.max_evidence_age.days}); evaluate it again",
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
        served = served_version(self.engine, name)
        replaced = served.version if served else None
        make_serving(
            self.engine,
            self.registry,
            name=name,
            version=version,
            cursor=cut_off,
            source="promotion",
            actor=actor,
        )
        if self.registry.alias_version(name, "challenger") == version:
            self.registry.delete_alias(name, "challenger")
        self.registry.tag_version(name, version, "campopt.replaces", replaced or "")
        action = "policy.approve" if approved else "policy.promote"
        self._audit(
            actor,
            action,
            version_id(name, version),
            {"reason": reason, "replaced": replaced, "gate": verdict, "evidence_at": evidence_at},
        )
        return PromotionResult(policy=name, version=version, replaced=replaced, action=action)

    def approve(self, name: str, version: str, *, actor: str, reason: str) -> PromotionResult:
        """A manager's approval of a candidate that leaves its frame: it is promoted."""
        return self.promote(name, version, actor=actor, reason=reason, approved=True)

    def reject(self, name: str, version: str, *, actor: str, reason: str) -> PromotionResult:
        self._version(name, version)
        self.registry.client.set_model_version_tag(
            f"campopt-{name}", version, "campopt.status", "rejected"
        )
        if self.registry.alias_version(name, "challenger") == version:
            self.registry.delete_alias(name, "challenger")
        self._audit(actor, "policy.reject", version_id(name, version), {"reason": reason})
        return PromotionResult(policy=name, version=version, replaced=None, action="policy.reject")

    def rollback(
        self, name: str, *, actor: str, reason: str, to_version: str | None = None
    ) -> PromotionResult:
        """Champion goes back to `to_version`, or to the version the last promotion replaced."""
        served = served_version(self.engine, name)
        current = served.version if served else None
        target = to_version or self._replaced_by_last_promotion(name)
        if target is None:
            raise ConflictError("policy", f"{name} has no earlier champion to roll back to")
        if target == current:
            raise ConflictError("to_version", f"{version_id(name, target)} already serves")
        self._check_loads(name, target)
        make_serving(
            self.engine,
            self.registry,
            name=name,
            version=target,
            cursor=self._cut_off(name, target),
            source="rollback",
            actor=actor,
        )
        self._audit(
            actor, "policy.rollback", version_id(name, target), {"reason": reason, "from": current}
        )
        return PromotionResult(
            policy=name, version=target, replaced=current, action="policy.rollback"
        )

    def _replaced_by_last_promotion(self, name: str) -> str | None:
        with session_scope(self.engine) as session:
            for entry in queries.audit_entries(
                session, action="policy.", subject=f"{name}:", limit=200
            ):
                if entry.action in ("policy.promote", "policy.approve"):
                    replaced = (entry.details or {}).get("replaced")
                    return str(replaced) if replaced else None
        return None

    def _version(self, name: str, version: str) -> Any:
        try:
            return self.registry.version_info(name, version)
        except Exception as exc:
            raise NotFoundError("version", f"no version {version_id(name, version)}") from exc

    def _cut_off(self, name: str, version: str) -> int:
        """The reward sequence the version has learned up to: the learner replays from there
        when it takes the version over. A version without one cannot serve."""
        cut_off = version_cut_off(self.registry, name, version)
        if cut_off is None:
            raise ConflictError(
                "version",
                f"{version_id(name, version)} records no training cut-off; train it again",
            )
        return cut_off

    def _check_loads(self, name: str, version: str) -> None:
        """Refuse a version whose model does not load; the champion stays as it is."""
        try:
            stored = self.registry.load(name, version)
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

    def _audit(self, actor: str, action: str, subject: str, details: dict[str, Any]) -> None:
        with session_scope(self.engine, write=True) as session:
            queries.add_audit(
                session,
                actor=actor,
                action=action,
                subject=subject,
                details=details,
                now=self.clock(),
            )

    # --- the scheduled job ----------------------------------------------------------------------

    def train_and_promote_all(self, *, actor: str = "scheduler") -> list[dict[str, Any]]:
        """For every active frame: train a candidate from the frame's spec; promote it when the
        gate says so, leave it waiting when it needs approval."""
        snapshot, _ = self.catalog.current()
        outcomes = []
        for frame in snapshot.frames:
            try:
                result = self.train(frame.key, actor=actor)
            except (ValueError, NotFoundError) as exc:
                outcomes.append({"frame": frame.key, "skipped": str(exc)})
                continue
            outcome: dict[str, Any] = {
                "frame": frame.key,
                "version": result.version,
                "gate": result.gate["verdict"],
            }
            if result.gate["verdict"] == "promote":
                self.promote(
                    frame.key, result.version, actor=actor, reason="passed the promotion gate"
                )
                outcome["promoted"] = True
            outcomes.append(outcome)
        return outcomes


def _span(logs: DecisionLogs) -> tuple[str, str]:
    """First and last decision time of the rows, as tags and audits name them."""
    stamps = logs.data.timestamp
    if stamps is None or len(stamps) == 0:
        return "", ""
    return str(stamps[0]), str(stamps[-1])


def _mean_estimate(values: np.ndarray[Any, Any], *, name: str) -> Estimate:
    """A plain mean with a normal interval, shaped as an estimate."""
    n = len(values)
    mean = float(np.mean(values)) if n else float("nan")
    se = float(np.std(values, ddof=1) / np.sqrt(n)) if n > 1 else float("nan")
    return Estimate(
        estimator=name,
        value=mean,
        ci_low=mean - 1.96 * se,
        ci_high=mean + 1.96 * se,
        std_error=se,
        alpha=0.05,
        n=n,
        interval_method="analytic",
        diagnostics=Diagnostics(
            effective_sample_size=float(n),
            max_importance_weight=1.0,
            zero_probability_rows=0,
            unscored_rows=0,
            model_rows=None,
            warning=None,
        ),
    )
