"""The service's decision logs as offline_eval datasets, and VW policies replayed on them.

`offline_eval` knows nothing of the database or of VW; this module brings the two together: it
reads policy decisions with final rewards into a `LoggedBandit`, replays any `BanditPolicy` (a
served version, one trained off-policy on an earlier slice, uniform, …) over every logged
candidate set through the same featurisation as serving, and supplies a VW regression as the
reward model for DM and DR.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import Any

import numpy as np
import pandas as pd

from offline_eval import LoggedBandit
from offline_eval.report import TrainingWindow
from offline_eval.reward_models import Features
from optimizer.core.catalog import CatalogSnapshot, split_signature
from optimizer.core.policy_spec import PolicySpec
from optimizer.features import ActionLines, shared_line
from optimizer.policy import BanditPolicy
from optimizer.ports.decision_logs import DecisionLogReader, LogFilters
from optimizer.serving import ONLINE_PREFIX
from optimizer.vw import RegressionModel

FloatArray = np.ndarray[Any, np.dtype[np.float64]]
SEGMENTS = ("health_class", "trigger", "channel", "frame_key")


NO_SEQUENCE = -1


@dataclass(frozen=True)
class TrainingCutoff:
    """The last decisions a policy learned from: the latest decision time of an offline
    training slice and/or the last reward sequence an online learner consumed.

    A decision is unseen by the policy only if it is after both. An offline candidate learned
    from `until` and earlier; an online checkpoint from every final reward up to its cursor
    (and, through its parent, from what that parent learned).
    """

    decided_until: datetime | None = None
    reward_sequence: int | None = None
    trained_from: datetime | None = None
    rows: int | None = None

    def merge(self, other: TrainingCutoff | None) -> TrainingCutoff:
        """What a policy saw that learned from both (a checkpoint on top of its parent)."""
        if other is None:
            return self

        def later(a: Any, b: Any) -> Any:
            return b if a is None else a if b is None else max(a, b)

        def earlier(a: Any, b: Any) -> Any:
            return b if a is None else a if b is None else min(a, b)

        return TrainingCutoff(
            decided_until=later(self.decided_until, other.decided_until),
            reward_sequence=later(self.reward_sequence, other.reward_sequence),
            trained_from=earlier(self.trained_from, other.trained_from),
            rows=None if self.rows is None or other.rows is None else self.rows + other.rows,
        )

    def describe(self) -> str:
        parts = []
        if self.decided_until is not None:
            parts.append(f"decisions until {self.decided_until.isoformat()}")
        if self.reward_sequence is not None:
            parts.append(f"final rewards up to sequence {self.reward_sequence}")
        return " and ".join(parts) or "unknown decisions"

    def to_tags(self) -> dict[str, str]:
        """Registry tags of a version trained on this slice."""
        tags = {}
        if self.trained_from is not None:
            tags["trained_from"] = self.trained_from.isoformat()
        if self.decided_until is not None:
            tags["trained_until"] = self.decided_until.isoformat()
        if self.reward_sequence is not None:
            tags["trained_through_sequence"] = str(self.reward_sequence)
        return tags

    @classmethod
    def from_tags(cls, tags: Mapping[str, str]) -> TrainingCutoff | None:
        """Read back `to_tags` (prefixed `campopt.`), or an online checkpoint's cursor; None
        when the version says nothing about what it was trained on."""

        def stamp(key: str) -> datetime | None:
            value = tags.get(f"campopt.{key}")
            return datetime.fromisoformat(value) if value else None

        sequences = [
            int(v)
            for k in ("campopt.trained_through_sequence", "campopt.cursor")
            if (v := tags.get(k, "")).isdigit()
        ]
        rows = tags.get("campopt.trained_rows", "")
        cutoff = cls(
            decided_until=stamp("trained_until"),
            reward_sequence=max(sequences) if sequences else None,
            trained_from=stamp("trained_from"),
            rows=int(rows) if rows.isdigit() else None,
        )
        if cutoff.decided_until is None and cutoff.reward_sequence is None:
            return None
        return cutoff


def training_window(cutoff: TrainingCutoff | None, *, note: str = "") -> TrainingWindow:
    """How a report names what a policy was trained on."""
    if cutoff is None:
        return TrainingWindow(note=note or "the version does not record what it was trained on")
    until = cutoff.decided_until.isoformat() if cutoff.decided_until else None
    if until is None and cutoff.reward_sequence is not None:
        until = f"reward sequence {cutoff.reward_sequence}"
    return TrainingWindow(
        trained_from=cutoff.trained_from.isoformat() if cutoff.trained_from else None,
        until=until,
        rows=cutoff.rows,
        note=note,
    )


def version_cutoff(
    version: str, tags_of: Callable[[str], Mapping[str, str] | None]
) -> TrainingCutoff | None:
    """A registered version's cut-off from its tags (`tags_of(version)`, None when unknown); an
    online checkpoint also saw what its parents learned, so their cut-offs are merged in. A
    database checkpoint's version (`online-<cursor>`) names its cursor."""
    if version.startswith(ONLINE_PREFIX) and version.removeprefix(ONLINE_PREFIX).isdigit():
        return TrainingCutoff(reward_sequence=int(version.removeprefix(ONLINE_PREFIX)))
    tags = tags_of(version)
    cutoff = None if tags is None else TrainingCutoff.from_tags(tags)
    seen = {version}
    while cutoff is not None and tags is not None and tags.get("campopt.source") == "online":
        parent = tags.get("campopt.parent_version")
        if not parent or parent in seen:
            break
        seen.add(parent)
        tags = tags_of(parent)
        if tags is None:  # a pruned parent: what is known stays
            break
        cutoff = cutoff.merge(TrainingCutoff.from_tags(tags))
    return cutoff


@dataclass(frozen=True)
class DecisionLogs:
    """A validated dataset plus what replaying VW policies needs: each row's feature snapshot,
    and each row's reward sequence (`NO_SEQUENCE` where unknown) for training cut-offs."""

    data: LoggedBandit
    contexts: list[dict[str, Any]]
    sequences: np.ndarray[Any, np.dtype[np.int64]] | None = field(default=None, compare=False)

    @property
    def decided_at(self) -> list[datetime]:
        assert self.data.timestamp is not None
        return [
            datetime.fromisoformat(str(t)).replace(tzinfo=UTC)
            for t in self.data.timestamp.astype("datetime64[us]")
        ]

    def cutoff(self) -> TrainingCutoff:
        """What a policy trained on exactly these rows has seen."""
        stamps = self.decided_at
        sequence = None
        if self.sequences is not None and (self.sequences != NO_SEQUENCE).any():
            sequence = int(self.sequences.max())
        return TrainingCutoff(
            decided_until=max(stamps),
            reward_sequence=sequence,
            trained_from=min(stamps),
            rows=self.data.n,
        )

    def unseen(self, cutoff: TrainingCutoff | None) -> np.ndarray[Any, np.dtype[np.bool_]]:
        """Rows a policy with this cut-off was not trained on (all rows when it is unknown)."""
        keep = np.ones(self.data.n, dtype=bool)
        if cutoff is None:
            return keep
        if cutoff.decided_until is not None:
            limit = np.datetime64(cutoff.decided_until.astimezone(UTC).replace(tzinfo=None), "us")
            assert self.data.timestamp is not None
            keep &= self.data.timestamp.astype("datetime64[us]") > limit
        if cutoff.reward_sequence is not None:
            if self.sequences is None:
                raise ValueError("sequences: the logs carry no reward sequences to cut at")
            keep &= self.sequences > cutoff.reward_sequence
        return keep

    @property
    def frame_keys(self) -> np.ndarray[Any, Any]:
        assert self.data.context is not None
        return np.asarray(self.data.context["frame_key"])

    def take(self, rows: Sequence[int] | np.ndarray[Any, Any]) -> DecisionLogs:
        index = np.asarray(rows, dtype=np.int64)
        return DecisionLogs(
            data=self.data.take(index),
            contexts=[self.contexts[i] for i in index],
            sequences=None if self.sequences is None else self.sequences[index],
        )

    def split(self, share: float) -> tuple[DecisionLogs, DecisionLogs]:
        """(earlier, later) by time: about `share` of the rows go to the later slice, and every
        later decision is strictly after every earlier one (ties stay on one side), so a policy
        trained on the earlier slice has a cut-off the later slice lies after."""
        if not 0.0 < share < 1.0:
            raise ValueError(f"share: must lie in (0, 1), got {share}")
        cut = round(self.data.n * (1.0 - share))
        stamps = self.data.timestamp
        if stamps is not None and 0 < cut < self.data.n:
            boundary = stamps[cut - 1]
            after = int(np.searchsorted(stamps, boundary, side="right"))
            before = int(np.searchsorted(stamps, boundary, side="left"))
            cut = after if after < self.data.n else before
        if cut == 0 or cut == self.data.n:
            raise ValueError(
                f"share: {self.data.n} decisions cannot be split {1 - share:.0%}/{share:.0%}"
            )
        return self.take(np.arange(cut)), self.take(np.arange(cut, self.data.n))

    def split_by_sequence(self, share: float) -> tuple[DecisionLogs, DecisionLogs, int]:
        """(earlier, later, cut_off): the earlier slice holds every row whose reward sequence is
        at most `cut_off`, the later one the `share` after it. A model trained on the earlier
        slice has learned exactly the rewards up to `cut_off`, as an online model at that
        cursor has; evaluating it on the later slice never reuses a row it learned from."""
        if not 0.0 < share < 1.0:
            raise ValueError(f"share: must lie in (0, 1), got {share}")
        if self.sequences is None or (self.sequences == NO_SEQUENCE).any():
            raise ValueError("sequences: every row needs its reward sequence to split by it")
        order = np.argsort(self.sequences, kind="stable")
        cut = round(self.data.n * (1.0 - share))
        if cut == 0 or cut == self.data.n:
            raise ValueError(
                f"share: {self.data.n} decisions cannot be split {1 - share:.0%}/{share:.0%}"
            )
        cut_off = int(self.sequences[order[cut - 1]])
        return self.take(order[:cut]), self.take(order[cut:]), cut_off


def load_decision_logs(
    reader: DecisionLogReader, snapshot: CatalogSnapshot, filters: LogFilters | None = None
) -> DecisionLogs:
    """Policy decisions with final rewards (filters optional) as one validated dataset."""
    found = reader.evaluation_rows(filters or LogFilters())
    rows = found.rows
    if not rows:
        raise ValueError("logs: no policy decisions with final rewards match the filters")
    signatures = {action_id: sig for sig, action_id in snapshot.actions.items()}
    sizes = np.fromiter(
        (len(r.candidate_action_ids) for r in rows), dtype=np.int64, count=len(rows)
    )
    offsets = np.concatenate([[0], np.cumsum(sizes)])
    action_ids = np.concatenate([r.candidate_action_ids for r in rows])
    chosen_index = np.empty(len(rows), dtype=np.int32)
    for i, r in enumerate(rows):
        hits = np.flatnonzero(r.candidate_action_ids == r.chosen_action_id)
        if len(hits) != 1:
            raise ValueError(
                f"candidate_action_ids: decision {r.decision_id} lacks its chosen action"
            )
        chosen_index[i] = hits[0]
    low = min((x[0] for x in found.reward_ranges), default=0.0)
    high = max((x[1] for x in found.reward_ranges), default=1.0)
    context = pd.DataFrame(
        {
            "decision_id": [str(r.decision_id) for r in rows],
            "frame_key": [r.frame_key for r in rows],
            "trigger": [r.trigger_key for r in rows],
            "policy_version": [r.policy_version or "" for r in rows],
            "health_class": [str(r.context.get("health_class", "")) for r in rows],
            "language": [str(r.context.get("language", "")) for r in rows],
            "channel": [
                split_signature(signatures.get(r.chosen_action_id, "no_contact"))[2] or "no_contact"
                for r in rows
            ],
            "unsubscribed": [float(r.unsubscribed) for r in rows],
            "complained": [float(r.complained) for r in rows],
        }
    )
    data = LoggedBandit(
        offsets=offsets,
        action_ids=action_ids,
        chosen_index=chosen_index,
        logged_probability=np.array([r.probability for r in rows]),
        reward=np.array([r.reward for r in rows]),
        logging_probabilities=np.concatenate([r.probabilities for r in rows]),
        timestamp=np.array(
            [r.created_at.astimezone(UTC).replace(tzinfo=None) for r in rows],
            dtype="datetime64[us]",
        ),
        context=context,
        reward_range=(low, high),
    )
    sequences = np.array(
        [NO_SEQUENCE if r.reward_sequence is None else r.reward_sequence for r in rows],
        dtype=np.int64,
    )
    return DecisionLogs(data=data, contexts=[dict(r.context) for r in rows], sequences=sequences)


def replay_policies(
    logs: DecisionLogs,
    policies: Mapping[str, BanditPolicy],
    lines: ActionLines,
    *,
    floor_shares: Mapping[str, float],
    costs: FloatArray | None = None,
    cost_limits: Mapping[str, float] | None = None,
) -> FloatArray:
    """Each row's distribution under the policy of its frame, over the logged candidates.

    With `costs` (every logged candidate's offer cost, `offer_costs`) and the frames' cost
    limits, each distribution is capped as serving caps it, so the estimate is of what would
    be served."""
    data = logs.data
    limits = cost_limits or {}
    if costs is not None and len(costs) != data.n_candidates:
        raise ValueError(f"costs: expected {data.n_candidates} values, got {len(costs)}")
    out = np.empty(data.n_candidates)
    frames = logs.frame_keys
    for i in range(data.n):
        start, end = int(data.offsets[i]), int(data.offsets[i + 1])
        policy = policies.get(str(frames[i]))
        if policy is None:
            raise ValueError(f"policies: none for frame {frames[i]!r}")
        candidates = [lines[int(a)] for a in data.action_ids[start:end]]
        out[start:end] = policy.distribution(
            shared_line(logs.contexts[i]),
            candidates,
            floor_share=floor_shares.get(str(frames[i]), policy.spec.min_probability_share),
            costs=None if costs is None else costs[start:end],
            max_expected_cost=limits.get(str(frames[i])),
        )
    return out


def train_policies(
    logs: DecisionLogs, specs: Mapping[str, PolicySpec], lines: ActionLines
) -> dict[str, BanditPolicy]:
    """Train one policy per frame off-policy on the logs (IPS-weighted by VW's cb learner)."""
    policies = {
        name: BanditPolicy(spec, name=name, version="offline") for name, spec in specs.items()
    }
    data = logs.data
    frames = logs.frame_keys
    for i in range(data.n):
        policy = policies.get(str(frames[i]))
        if policy is None:
            continue
        start, end = int(data.offsets[i]), int(data.offsets[i + 1])
        policy.learn(
            shared_line(logs.contexts[i]),
            [lines[int(a)] for a in data.action_ids[start:end]],
            chosen=int(data.chosen_index[i]),
            reward=float(data.reward[i]),
            probability=float(data.logged_probability[i]),
        )
    return policies


# --- reward model features --------------------------------------------------------------------


def context_matrix(logs: DecisionLogs) -> FloatArray:
    """One row per decision: one-hot health class, trigger, language and hour band, and usage."""
    assert logs.data.context is not None
    frame = logs.data.context
    parts = [
        pd.get_dummies(frame["health_class"], prefix="hc").to_numpy(dtype=np.float64),
        pd.get_dummies(frame["trigger"], prefix="t").to_numpy(dtype=np.float64),
        pd.get_dummies(frame["language"], prefix="l").to_numpy(dtype=np.float64),
        pd.get_dummies(
            pd.Series([int(c.get("hour", 0)) // 6 for c in logs.contexts]), prefix="h"
        ).to_numpy(dtype=np.float64),
        np.array([[float(c.get("usage_index") or 0.0)] for c in logs.contexts]),
    ]
    return np.hstack(parts)


def action_table(snapshot: CatalogSnapshot) -> dict[int, list[float]]:
    """Per action id: one-hot offer, channel, send time and text tone (shared across texts)."""
    offers = [*sorted(snapshot.offers), "no_contact"]
    channels = sorted(snapshot.channels)
    slots = sorted(snapshot.send_times)
    tones = sorted({t.tone for t in snapshot.texts.values()})
    table = {}
    for signature, action_id in snapshot.actions.items():
        offer, text, channel, slot = split_signature(signature)
        vector = [0.0] * (len(offers) + len(channels) + len(slots) + len(tones))
        vector[offers.index(offer or "no_contact")] = 1.0
        if channel is not None:
            vector[len(offers) + channels.index(channel)] = 1.0
        if slot is not None:
            vector[len(offers) + len(channels) + slots.index(slot)] = 1.0
        if text is not None and text in snapshot.texts:
            tone = snapshot.texts[text].tone
            vector[len(offers) + len(channels) + len(slots) + tones.index(tone)] = 1.0
        table[action_id] = vector
    return table


def _features(row: np.ndarray[Any, Any], namespace: str) -> str:
    nonzero = np.flatnonzero(row)
    return f"|{namespace} " + " ".join(f"f{j}:{row[j]:.6g}" for j in nonzero)


class VWRewardModel:
    """A VW squared-loss regression over context x action interactions (offline_eval's
    `RewardModel` protocol): sparse, so it scales to the thousands of actions a catalog has."""

    def __init__(self, *, passes: int = 2, bits: int = 20) -> None:
        self.passes = passes
        self.model = RegressionModel(["-b", str(bits), "-q", "ca", "--noconstant"])

    def fit(
        self,
        *,
        context: FloatArray,
        action_table: FloatArray,
        action: np.ndarray[Any, Any],
        reward: FloatArray,
    ) -> None:
        actions = [_features(a, "a") for a in action_table]
        contexts = [_features(c, "c") for c in context]
        for _ in range(self.passes):
            for c, a, r in zip(contexts, action, reward, strict=True):
                self.model.learn(float(r), f"{c} {actions[int(a)]}")

    def predict(
        self,
        *,
        context: FloatArray,
        action_table: FloatArray,
        row: np.ndarray[Any, Any],
        action: np.ndarray[Any, Any],
    ) -> FloatArray:
        actions = [_features(a, "a") for a in action_table]
        contexts: dict[int, str] = {}
        out = np.empty(len(row))
        for j, (r, a) in enumerate(zip(row, action, strict=True)):
            line = contexts.get(int(r))
            if line is None:
                line = contexts[int(r)] = _features(context[int(r)], "c")
            out[j] = self.model.predict(f"{line} {actions[int(a)]}")
        return out


def offer_costs(logs: DecisionLogs, snapshot: CatalogSnapshot) -> FloatArray:
    """The offer cost of every logged candidate (0 for no contact)."""
    signatures = {action_id: sig for sig, action_id in snapshot.actions.items()}
    costs = {}
    for action_id, signature in signatures.items():
        offer = split_signature(signature)[0]
        costs[action_id] = snapshot.offers[offer].cost if offer in snapshot.offers else 0.0
    return np.array([costs.get(int(a), 0.0) for a in logs.data.action_ids])


def reward_features(logs: DecisionLogs, snapshot: CatalogSnapshot) -> Features:
    from offline_eval import action_features

    return action_features(logs.data, context=context_matrix(logs), table=action_table(snapshot))
