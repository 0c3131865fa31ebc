"""Training cut-offs: no policy is evaluated on the decisions it learned from."""

from __future__ import annotations

from datetime import UTC, datetime

import numpy as np

from optimizer.offline import NO_SEQUENCE, DecisionLogs, TrainingCutoff, version_cutoff
from tests.offline_eval.helpers import random_log


def logs_with_ties(n: int = 60) -> DecisionLogs:
    """Decisions in bursts of four with the same time; reward sequences in another order."""
    rng = np.random.default_rng(3)
    stamps = np.datetime64("2026-11-02T06:00:00", "us") + (np.arange(n) // 4) * np.timedelta64(
        1, "h"
    )
    data = random_log(rng, n, timestamp=stamps)
    sequences = rng.permutation(n).astype(np.int64) + 1
    return DecisionLogs(data=data, contexts=[{} for _ in range(n)], sequences=sequences)


def test_split_keeps_decisions_of_one_moment_on_one_side() -> None:
    logs = logs_with_ties()
    for share in (0.3, 0.5, 0.51, 0.7):
        earlier, later = logs.split(share)
        assert earlier.data.n + later.data.n == logs.data.n
        assert earlier.data.timestamp is not None
        assert later.data.timestamp is not None
        assert earlier.data.timestamp.max() < later.data.timestamp.min()


def test_later_slice_lies_after_the_earlier_slices_cutoff() -> None:
    logs = logs_with_ties()
    earlier, later = logs.split(0.5)
    cutoff = earlier.cutoff()
    assert later.unseen(TrainingCutoff(decided_until=cutoff.decided_until)).all()
    assert not earlier.unseen(cutoff).any()
    assert cutoff.rows == earlier.data.n


def test_online_cursor_hides_every_reward_it_learned() -> None:
    logs = logs_with_ties()
    assert logs.sequences is not None
    cursor = int(np.median(logs.sequences))
    unseen = logs.unseen(TrainingCutoff(reward_sequence=cursor))
    assert np.array_equal(unseen, logs.sequences > cursor)


def test_unknown_sequences_count_as_seen_by_any_cursor() -> None:
    logs = logs_with_ties()
    assert logs.sequences is not None
    sequences = logs.sequences.copy()
    sequences[:5] = NO_SEQUENCE
    logs = DecisionLogs(data=logs.data, contexts=logs.contexts, sequences=sequences)
    assert not logs.unseen(TrainingCutoff(reward_sequence=0))[:5].any()


def test_cutoff_round_trips_through_version_tags() -> None:
    cutoff = TrainingCutoff(
        decided_until=datetime(2026, 11, 5, 6, tzinfo=UTC),
        reward_sequence=412,
        trained_from=datetime(2026, 11, 2, 6, tzinfo=UTC),
    )
    tags = {f"campopt.{k}": v for k, v in cutoff.to_tags().items()}
    assert TrainingCutoff.from_tags(tags) == cutoff
    assert TrainingCutoff.from_tags({"campopt.source": "test"}) is None


def test_online_checkpoint_also_saw_what_its_offline_parent_learned() -> None:
    versions = {
        "7": {
            "campopt.source": "online",
            "campopt.cursor": "300",
            "campopt.parent_version": "5",
        },
        "5": {
            "campopt.source": "offline",
            "campopt.trained_until": "2026-11-20T00:00:00+00:00",
            "campopt.trained_through_sequence": "350",
            "campopt.parent_version": "2",
        },
        "2": {"campopt.source": "online", "campopt.cursor": "900"},
    }
    cutoff = version_cutoff("7", versions.get)
    assert cutoff == TrainingCutoff(
        decided_until=datetime(2026, 11, 20, tzinfo=UTC), reward_sequence=350
    )
    assert version_cutoff("online-135", versions.get) == TrainingCutoff(reward_sequence=135)
    assert version_cutoff("9", versions.get) is None
