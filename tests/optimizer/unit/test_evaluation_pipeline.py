"""The evaluation pipeline on decision logs in memory: no database, a few seconds.

A frame of the minimal catalog logged under the uniform policy, with rewards by a known truth
(a free month by SMS converts best, a usage tip hardly at all).
"""

from __future__ import annotations

import math
import uuid
from collections.abc import Callable
from dataclasses import replace
from datetime import UTC, datetime, timedelta
from pathlib import Path

import numpy as np
import pytest
import yaml

from offline_eval.gate import GateConfig
from offline_eval.report import EvaluationReport
from optimizer.core.catalog import (
    CatalogSnapshot,
    CatalogSpec,
    FrameSpec,
    FrameVersion,
    HarmSpec,
    split_signature,
)
from optimizer.evaluation import (
    Champion,
    GateEvidence,
    compare_policies,
    frame_harm,
    gate_candidate,
)
from optimizer.features import ActionLines
from optimizer.memory.decision_logs import MemoryDecisionLogs
from optimizer.offline import TrainingCutoff, load_decision_logs, train_policies
from optimizer.policy import BanditPolicy, StoredModel
from optimizer.ports.decision_logs import LogFilters, LoggedDecision
from optimizer.serving import online_version
from tests.optimizer.test_eligibility import snapshot_of

MINIMAL = Path(__file__).resolve().parents[2] / "campaign_db" / "minimal_catalog.yaml"
FRAME = "churn_prevention"
START = datetime(2026, 11, 2, 9, tzinfo=UTC)
N = 400
TRUTH = {("free_month", "sms"): 0.6, ("free_month", "email"): 0.3}


@pytest.fixture(scope="module")
def snapshot() -> CatalogSnapshot:
    return snapshot_of(CatalogSpec.model_validate(yaml.safe_load(MINIMAL.read_text())))


Outcome = Callable[[int, str | None, str | None, np.random.Generator], tuple[float, bool]]
"""Round, offer and channel chosen, the generator -> (reward, unsubscribed)."""


def uniform_logs(
    snapshot: CatalogSnapshot, *, seed: int, reward_range: tuple[float, float], outcome: Outcome
) -> MemoryDecisionLogs:
    """N uniform decisions a minute apart, reward sequences in time order."""
    rng = np.random.default_rng(seed)
    store = MemoryDecisionLogs()
    store.declare_reward_range(FRAME, 1, *reward_range)
    ids = np.array(sorted(snapshot.actions.values()), dtype=np.int32)
    signature = {a: s for s, a in snapshot.actions.items()}
    for i in range(N):
        chosen = int(rng.choice(ids))
        offer, _, channel, _ = split_signature(signature[chosen])
        decision = LoggedDecision(
            id=uuid.UUID(int=i + 1),
            created_at=START + timedelta(minutes=i),
            customer_id=f"c{i}",
            trigger_key="health_c_to_d",
            frame_key=FRAME,
            reason="policy" if offer else "policy_no_contact",
            context={
                "health_class": "CD"[i % 2],
                "language": "de",
                "usage_index": 0.2,
                "trigger": "health_c_to_d",
                "hour": 9 + i % 8,
                "weekday": i % 7,
            },
            candidate_action_ids=ids,
            probabilities=np.full(len(ids), 1.0 / len(ids)),
            chosen_action_id=chosen,
            probability=1.0 / len(ids),
            send_at=None,
            policy_version="uniform",
        )
        store.log(decision)
        value, unsubscribed = outcome(i, offer, channel, rng)
        store.reward(decision.id, value=value, unsubscribed=unsubscribed, sequence=i + 1)
    return store


@pytest.fixture(scope="module")
def logs(snapshot: CatalogSnapshot) -> MemoryDecisionLogs:
    """0/1 rewards by the known truth."""

    def converts(
        i: int, offer: str | None, channel: str | None, rng: np.random.Generator
    ) -> tuple[float, bool]:
        rate = TRUTH.get((offer or "", channel or ""), 0.05)
        return float(rng.random() < rate), False

    return uniform_logs(snapshot, seed=7, reward_range=(0.0, 1.0), outcome=converts)


class Registry:
    """A model source with one champion per frame, trained on the logs up to `cursor` (an
    online checkpoint's version names what it has learned)."""

    def __init__(self, snapshot: CatalogSnapshot, logs: MemoryDecisionLogs, cursor: int) -> None:
        frame = next(f for f in snapshot.frames if f.key == FRAME)
        data = load_decision_logs(logs, snapshot)
        seen = data.take(np.flatnonzero(~data.unseen(TrainingCutoff(reward_sequence=cursor))))
        spec = frame.spec.policy_spec()
        policy = train_policies(seen, {FRAME: spec}, ActionLines(snapshot))[FRAME]
        self.version = online_version(cursor)
        self.stored = StoredModel(FRAME, self.version, spec, policy.serialize(), seen.data.n)

    def serving_version(self, name: str) -> str | None:
        return self.version if name == FRAME else None

    def load(self, name: str, version: str) -> StoredModel:
        return self.stored


def compare(
    logs: MemoryDecisionLogs,
    snapshot: CatalogSnapshot,
    folder: Path,
    champion_cursor: int | None,
) -> EvaluationReport:
    return compare_policies(
        logs,
        snapshot,
        filters=LogFilters(),
        later_share=0.5,
        source=None if champion_cursor is None else Registry(snapshot, logs, champion_cursor),
        out=folder,
        fmt="markdown",
    )


@pytest.fixture(scope="module")
def without_champion(
    logs: MemoryDecisionLogs, snapshot: CatalogSnapshot, tmp_path_factory: pytest.TempPathFactory
) -> tuple[EvaluationReport, Path]:
    folder = tmp_path_factory.mktemp("without")
    return compare(logs, snapshot, folder, champion_cursor=None), folder


@pytest.fixture(scope="module")
def champion_saw_everything(
    logs: MemoryDecisionLogs, snapshot: CatalogSnapshot, tmp_path_factory: pytest.TempPathFactory
) -> EvaluationReport:
    return compare(logs, snapshot, tmp_path_factory.mktemp("all"), champion_cursor=N)


@pytest.fixture(scope="module")
def champion_saw_three_quarters(
    logs: MemoryDecisionLogs, snapshot: CatalogSnapshot, tmp_path_factory: pytest.TempPathFactory
) -> EvaluationReport:
    return compare(logs, snapshot, tmp_path_factory.mktemp("most"), champion_cursor=3 * N // 4)


def test_trained_spec_is_estimated_only_on_decisions_after_its_training_slice(
    without_champion: tuple[EvaluationReport, Path],
) -> None:
    report, folder = without_champion

    (window,) = [w for w in report.windows() if w["policy"] == "trained_spec"]
    assert window["trained_until"] is not None
    assert window["evaluated_from"] is not None
    assert datetime.fromisoformat(window["trained_until"]) < datetime.fromisoformat(
        window["evaluated_from"]
    )
    assert window["trained_rows"] == N - report.n
    assert {"uniform", "trained_spec"} <= {p.policy for p in report.policies}
    assert (folder / "report.md").exists()
    assert (folder / "estimates.json").exists()


def test_champion_that_learned_from_every_decision_is_left_out_with_a_note(
    champion_saw_everything: EvaluationReport,
) -> None:
    report = champion_saw_everything

    assert "champion" not in {p.policy for p in report.policies}
    assert any("learned from every evaluation decision" in w for w in report.warnings)
    assert report.n == N // 2


def test_champion_is_estimated_only_on_decisions_after_its_cutoff(
    champion_saw_three_quarters: EvaluationReport,
) -> None:
    report = champion_saw_three_quarters
    cursor = 3 * N // 4

    assert "champion" in {p.policy for p in report.policies}
    assert report.n == N - cursor
    assert report.evaluated[0] is not None
    assert datetime.fromisoformat(report.evaluated[0]) == START + timedelta(minutes=cursor)


def test_every_estimate_stays_within_the_reward_range(
    without_champion: tuple[EvaluationReport, Path],
    champion_saw_everything: EvaluationReport,
    champion_saw_three_quarters: EvaluationReport,
) -> None:
    for report in (without_champion[0], champion_saw_everything, champion_saw_three_quarters):
        assert report.reward_range == (0.0, 1.0)
        estimates = [e for p in report.policies for e in p.estimates]
        estimates += [e for s in report.segments for e in s.estimates]
        assert len(estimates) > 6
        for estimate in estimates:
            if math.isfinite(estimate.value):
                assert 0.0 <= estimate.value <= 1.0, estimate
                assert 0.0 <= estimate.ci_low <= estimate.ci_high <= 1.0, estimate


def gate(
    logs: MemoryDecisionLogs,
    snapshot: CatalogSnapshot,
    folder: Path,
    champion_cursor: int,
) -> tuple[GateEvidence, TrainingCutoff, list[int]]:
    frame = next(f for f in snapshot.frames if f.key == FRAME)
    lines = ActionLines(snapshot)
    data = load_decision_logs(logs, snapshot, LogFilters(frame_key=FRAME))
    earlier, later, _ = data.split_by_sequence(0.5)
    spec = frame.spec.policy_spec()
    candidate = train_policies(earlier, {FRAME: spec}, lines)[FRAME]
    registry = Registry(snapshot, logs, cursor=champion_cursor)
    champion = Champion(
        BanditPolicy.from_stored(registry.stored), TrainingCutoff(reward_sequence=champion_cursor)
    )
    evidence = gate_candidate(
        frame=frame,
        candidate=candidate,
        spec=spec,
        cutoff=earlier.cutoff(),
        champion=champion,
        later=later,
        snapshot=snapshot,
        lines=lines,
        estimator="SNIPS",
        config=GateConfig(min_effective_sample_size=20),
        folder=folder,
    )
    assert evidence.evaluated.sequences is not None
    return evidence, earlier.cutoff(), evidence.evaluated.sequences.tolist()


def test_gate_estimates_both_policies_only_after_both_cutoffs(
    logs: MemoryDecisionLogs, snapshot: CatalogSnapshot, tmp_path: Path
) -> None:
    evidence, cutoff, sequences = gate(logs, snapshot, tmp_path, champion_cursor=300)

    assert cutoff.reward_sequence is not None
    assert min(sequences) > max(cutoff.reward_sequence, 300)
    assert len(sequences) == N - 300
    assert evidence.gate.champion.estimator == "SNIPS"
    assert (tmp_path / "gate.json").exists()
    for name in ("candidate_value", "champion_value", "guardrail_unsubscribe_rate"):
        assert name in evidence.metrics


def test_gate_compares_with_the_logged_mean_when_the_champion_saw_every_decision(
    logs: MemoryDecisionLogs, snapshot: CatalogSnapshot, tmp_path: Path
) -> None:
    evidence, _, sequences = gate(logs, snapshot, tmp_path, champion_cursor=N)

    assert len(sequences) == N // 2
    assert evidence.gate.champion.estimator == "logged mean"
    text = (tmp_path / "report.html").read_text()
    assert "the logged mean of what served stands in for it" in text
    assert 0.0 <= evidence.gate.candidate.value <= 1.0


def priced_harm(frame: FrameVersion, **limits: float) -> FrameVersion:
    spec = frame.spec.model_copy(
        update={
            "attribution": frame.spec.attribution.model_copy(
                update={"harm": HarmSpec(unsubscribe=2.0, contact=0.1)}
            ),
            "guardrails": frame.spec.guardrails.model_copy(update=limits),
        }
    )
    return replace(frame, spec=FrameSpec.model_validate(spec.model_dump()))


@pytest.fixture(scope="module")
def unsubscribing_logs(snapshot: CatalogSnapshot) -> MemoryDecisionLogs:
    """Uniform decisions as in `logs`, where every third SMS contact unsubscribes."""

    def unsubscribes(
        i: int, offer: str | None, channel: str | None, rng: np.random.Generator
    ) -> tuple[float, bool]:
        return 0.0, channel == "sms" and i % 3 == 0

    return uniform_logs(snapshot, seed=11, reward_range=(-2.1, 1.0), outcome=unsubscribes)


def test_harm_under_the_logging_policy_is_the_logged_harm_and_none_without_contacts(
    unsubscribing_logs: MemoryDecisionLogs, snapshot: CatalogSnapshot
) -> None:
    frame = priced_harm(next(f for f in snapshot.frames if f.key == FRAME))
    logs = load_decision_logs(unsubscribing_logs, snapshot)
    context = logs.data.context
    assert context is not None
    contacted = (context["channel"] != "no_contact").to_numpy()
    logged = np.mean(contacted * (0.1 + 2.0 * context["unsubscribed"].to_numpy()))
    assert logged > 0.1

    as_logged = frame_harm(frame, logs, logs.data.logging_probabilities)
    assert as_logged is not None
    assert as_logged.value == pytest.approx(logged)
    assert as_logged.ci_low <= logged <= as_logged.ci_high

    is_no_contact = np.array(
        [snapshot.actions["no_contact"] == a for a in logs.data.action_ids], dtype=np.float64
    )
    silent = frame_harm(frame, logs, is_no_contact)
    assert silent is not None
    assert silent.value == 0.0
    assert (
        frame_harm(next(f for f in snapshot.frames if f.key == FRAME), logs, is_no_contact) is None
    )


def test_the_gate_rejects_a_candidate_whose_harm_is_above_the_frames_limit(
    unsubscribing_logs: MemoryDecisionLogs, snapshot: CatalogSnapshot, tmp_path: Path
) -> None:
    frame = priced_harm(
        next(f for f in snapshot.frames if f.key == FRAME), max_harm_per_decision=0.01
    )
    lines = ActionLines(snapshot)
    data = load_decision_logs(unsubscribing_logs, snapshot, LogFilters(frame_key=FRAME))
    earlier, later, _ = data.split_by_sequence(0.5)
    spec = frame.spec.policy_spec()
    candidate = train_policies(earlier, {FRAME: spec}, lines)[FRAME]
    evidence = gate_candidate(
        frame=frame,
        candidate=candidate,
        spec=spec,
        cutoff=earlier.cutoff(),
        champion=None,
        later=later,
        snapshot=snapshot,
        lines=lines,
        estimator="SNIPS",
        config=GateConfig(min_effective_sample_size=20),
        folder=tmp_path,
    )
    (check,) = [c for c in evidence.gate.checks if c.name == "guardrail:harm_per_decision"]
    assert not check.passed
    assert evidence.gate.verdict == "reject"
    assert evidence.metrics["candidate_harm_per_decision"] > 0.01
