"""Round trips: the flat layout (pandas), partitioned Parquet and VW DSJSON."""

from __future__ import annotations

import io
import json
from datetime import date
from pathlib import Path

import numpy as np
import pandas as pd
import pytest

from offline_eval import LoggedBandit
from offline_eval.io import (
    from_pandas,
    read_dsjson,
    read_parquet,
    read_parquet_table,
    targets_from_arrow,
    to_pandas,
    write_dsjson,
    write_parquet,
)
from tests.offline_eval.helpers import random_log

START = np.datetime64("2026-11-20T08:00:00.000000")


def timed_log(rng: np.random.Generator, n: int = 120) -> LoggedBandit:
    """A log over several days, in time order, with one candidate the logger never scored."""
    data = random_log(rng, n, timestamp=START + np.arange(n) * np.timedelta64(61, "m"))
    logging = data.logging_probabilities.copy()
    unscored = np.flatnonzero(data.sizes > 1)[0]
    position = data.offsets[unscored] + (1 - data.chosen_index[unscored])
    logging[position] = np.nan
    fields = {
        name: getattr(data, name)
        for name in (
            "offsets",
            "action_ids",
            "chosen_index",
            "logged_probability",
            "reward",
            "target_probabilities",
            "timestamp",
            "context",
        )
    }
    return LoggedBandit(**fields, logging_probabilities=logging)


def assert_same_log(left: LoggedBandit, right: LoggedBandit) -> None:
    np.testing.assert_array_equal(left.offsets, right.offsets)
    np.testing.assert_array_equal(left.action_ids, right.action_ids)
    np.testing.assert_array_equal(left.chosen_index, right.chosen_index)
    np.testing.assert_array_equal(left.chosen_action_ids, right.chosen_action_ids)
    np.testing.assert_array_equal(left.logged_probability, right.logged_probability)
    np.testing.assert_array_equal(left.reward, right.reward)
    np.testing.assert_array_equal(left.logging_probabilities, right.logging_probabilities)
    np.testing.assert_array_equal(left.timestamp, right.timestamp)


def test_pandas_round_trip_keeps_every_field(rng: np.random.Generator) -> None:
    data = timed_log(rng)
    frame = to_pandas(data, targets={"uniform": np.repeat(1.0 / data.sizes, data.sizes)})
    assert {"decision_id", "timestamp", "candidates", "chosen_action", "target__uniform"} <= set(
        frame.columns
    )
    back = from_pandas(frame, target="target")
    assert_same_log(data, back)
    np.testing.assert_array_equal(back.target_probabilities, data.target_probabilities)
    pd.testing.assert_frame_equal(
        back.context.astype(str), data.context.astype(str), check_dtype=False
    )


def test_pandas_layout_from_another_system_is_validated() -> None:
    frame = pd.DataFrame(
        {
            "decision_id": ["a", "b"],
            "candidates": [[10, 11], [12, 13, 14]],
            "chosen_action": [11, 15],
            "logged_probability": [0.5, 0.3],
            "reward": [1.0, 0.0],
        }
    )
    with pytest.raises(ValueError, match="chosen_action: 1 of 2 rows choose an action that is not"):
        from_pandas(frame)
    frame.loc[1, "chosen_action"] = 14
    data = from_pandas(frame)
    assert data.chosen_index.tolist() == [1, 2]
    assert data.logging_probabilities is None


def test_parquet_round_trip_partitions_by_day(rng: np.random.Generator, tmp_path: Path) -> None:
    data = timed_log(rng)
    write_parquet(data, tmp_path / "log", targets={"other": data.target_probabilities})
    days = sorted(p.name for p in (tmp_path / "log").iterdir())
    assert days == [f"date=2026-11-{d}" for d in range(20, 26)]
    back = read_parquet(tmp_path / "log", target="target")
    assert_same_log(data, back)
    assert back.context["decision_id"].tolist() == data.context["decision_id"].tolist()
    table = read_parquet_table(tmp_path / "log")
    np.testing.assert_array_equal(targets_from_arrow(table)["other"], data.target_probabilities)
    one_day = read_parquet(tmp_path / "log", start=date(2026, 11, 21), end=date(2026, 11, 21))
    assert one_day.n == int(
        np.sum(data.timestamp.astype("datetime64[D]") == np.datetime64("2026-11-21"))
    )


def test_parquet_needs_timestamps(rng: np.random.Generator, tmp_path: Path) -> None:
    with pytest.raises(ValueError, match="timestamp: partitioning by date"):
        write_parquet(random_log(rng, 5), tmp_path)


def test_dsjson_round_trip_keeps_ids_probabilities_rewards_and_choice(
    rng: np.random.Generator,
) -> None:
    data = timed_log(rng)
    out = io.StringIO()
    write_dsjson(
        data,
        out,
        context_features=[{"GUser": {"hc": h}} for h in data.context["health_class"]],
        action_features={a: {"TAction": {"offer": f"o{a}"}} for a in range(20)},
    )
    back = read_dsjson(out.getvalue().splitlines())
    assert_same_log(data, back)
    assert back.context["decision_id"].tolist() == data.context["decision_id"].tolist()


def test_dsjson_lines_follow_vw_conventions(rng: np.random.Generator) -> None:
    data = timed_log(rng, 30)
    out = io.StringIO()
    write_dsjson(data, out)
    for row, line in enumerate(out.getvalue().splitlines()):
        assert ": " not in line  # VW skips underscore keys by scanning compact JSON
        event = json.loads(line)
        pick = int(data.chosen_index[row])
        assert event["_label_cost"] == -data.reward[row]
        assert event["_label_probability"] == data.logged_probability[row]
        assert event["_labelIndex"] == pick
        assert event["_label_Action"] == pick + 1
        assert event["a"][0] == pick + 1
        assert sorted(event["a"]) == list(range(1, int(data.sizes[row]) + 1))
        assert event["p"][0] == data.logged_probability[row]
        assert len(event["p"]) == len(event["a"]) == len(event["c"]["_multi"])
        assert event["EventId"] == data.context["decision_id"][row]
        assert event["Timestamp"].endswith("Z")
        ids = [obj["_action_id"] for obj in event["c"]["_multi"]]
        lo, hi = data.offsets[row], data.offsets[row + 1]
        assert ids == data.action_ids[lo:hi].tolist()


def test_dsjson_without_a_logged_distribution_round_trips_the_chosen_probability(
    rng: np.random.Generator,
) -> None:
    data = random_log(rng, 40)
    partial = LoggedBandit(
        offsets=data.offsets,
        action_ids=data.action_ids,
        chosen_index=data.chosen_index,
        logged_probability=data.logged_probability,
        reward=data.reward,
    )
    out = io.StringIO()
    write_dsjson(partial, out)
    back = read_dsjson(out.getvalue().splitlines())
    assert back.logging_probabilities is None
    np.testing.assert_array_equal(back.logged_probability, data.logged_probability)


def test_dsjson_reader_names_the_bad_line() -> None:
    with pytest.raises(ValueError, match="line 2: no _label_cost"):
        read_dsjson(
            ['{"_label_cost":-1,"_labelIndex":0,"c":{"_multi":[{}]},"a":[1],"p":[1.0]}', "{}"]
        )
