"""Logged datasets in and out: the flat layout (pandas, Arrow), partitioned Parquet, VW DSJSON.

The flat layout has one row per decision (see docs/offline-evaluation.md):

    decision_id, timestamp, <context columns>, candidates (list), chosen_action,
    logged_probability, reward, [logging_probabilities (list)], [reward_predictions (list)],
    [target__<name> (list) ...]

Arrow list columns are CSR already (offsets + flat values), so conversion to and from the
dataset copies no Python objects per row; pandas goes through Arrow.
"""

from __future__ import annotations

import json
import math
from collections.abc import Iterable, Mapping, Sequence
from datetime import date
from pathlib import Path
from typing import Any, TextIO

import numpy as np
import numpy.typing as npt
import pandas as pd
import pyarrow as pa
import pyarrow.compute as pc
import pyarrow.dataset as ds

from offline_eval._arrays import FloatArray, Int32Array, IntArray, uniform_size
from offline_eval.dataset import DEFAULT_TOLERANCE, LoggedBandit

ID = "decision_id"
TIMESTAMP = "timestamp"
CANDIDATES = "candidates"
CHOSEN = "chosen_action"
LOGGED_PROBABILITY = "logged_probability"
REWARD = "reward"
LOGGING = "logging_probabilities"
PREDICTIONS = "reward_predictions"
TARGET_PREFIX = "target__"
DATE = "date"
RESERVED = {ID, TIMESTAMP, CANDIDATES, CHOSEN, LOGGED_PROBABILITY, REWARD, LOGGING, PREDICTIONS}

_INT32_LIMIT = 2**31 - 1


# -- flat layout -----------------------------------------------------------------------------


def to_arrow(data: LoggedBandit, *, targets: Mapping[str, FloatArray] | None = None) -> pa.Table:
    """The flat layout as an Arrow table; the dataset's own target is written as `target__target`
    unless `targets` names it otherwise."""
    columns: dict[str, pa.Array | pa.ChunkedArray] = {}
    context = data.context if data.context is not None else pd.DataFrame(index=range(data.n))
    if ID in context.columns:
        columns[ID] = pa.array(context[ID].astype(str).to_numpy(dtype=object), pa.string())
    else:
        columns[ID] = pa.array(np.arange(data.n).astype(str), pa.string())
    if data.timestamp is not None:
        columns[TIMESTAMP] = pa.array(data.timestamp, pa.timestamp("us", tz="UTC"))
    for name in context.columns:
        if name == ID:
            continue
        if name in RESERVED or name.startswith(TARGET_PREFIX) or name == DATE:
            raise ValueError(f"context: column {name!r} clashes with a reserved column name")
        columns[name] = pa.array(context[name])
    columns[CANDIDATES] = _list_column(data.offsets, data.action_ids)
    columns[CHOSEN] = pa.array(data.chosen_action_ids)
    columns[LOGGED_PROBABILITY] = pa.array(data.logged_probability)
    columns[REWARD] = pa.array(data.reward)
    if data.logging_probabilities is not None:
        columns[LOGGING] = _list_column(data.offsets, data.logging_probabilities)
    if data.reward_predictions is not None:
        columns[PREDICTIONS] = _list_column(data.offsets, data.reward_predictions)
    all_targets = dict(targets or {})
    if data.target_probabilities is not None and "target" not in all_targets:
        all_targets["target"] = data.target_probabilities
    for name, probs in all_targets.items():
        values = np.asarray(probs, dtype=np.float64)
        if values.shape != (data.n_candidates,):
            raise ValueError(
                f"targets[{name!r}]: expected one probability per candidate "
                f"({data.n_candidates}), got {values.shape}"
            )
        columns[TARGET_PREFIX + name] = _list_column(data.offsets, values)
    return pa.table(columns)


def _list_column(offsets: IntArray, values: npt.NDArray[Any]) -> pa.Array:
    if offsets[-1] > _INT32_LIMIT:
        return pa.LargeListArray.from_arrays(pa.array(offsets), pa.array(values))
    return pa.ListArray.from_arrays(pa.array(offsets.astype(np.int32)), pa.array(values))


def from_arrow(
    table: pa.Table,
    *,
    target: str | None = None,
    reward_range: tuple[float, float] | None = None,
    tolerance: float = DEFAULT_TOLERANCE,
) -> LoggedBandit:
    """A validated dataset from the flat layout; `target` picks a `target__<name>` column."""
    missing = [
        c for c in (CANDIDATES, CHOSEN, LOGGED_PROBABILITY, REWARD) if c not in table.schema.names
    ]
    if missing:
        raise ValueError(f"table: missing required columns {missing}")
    offsets, action_ids = _from_list(table.column(CANDIDATES), CANDIDATES, None)
    chosen = _numpy(table.column(CHOSEN), np.int64, CHOSEN)
    chosen_index = _chosen_index(offsets, action_ids, chosen)
    logging = (
        _from_list(table.column(LOGGING), LOGGING, offsets)[1]
        if LOGGING in table.schema.names
        else None
    )
    predictions = (
        _from_list(table.column(PREDICTIONS), PREDICTIONS, offsets)[1]
        if PREDICTIONS in table.schema.names
        else None
    )
    target_probs = None
    if target is not None:
        name = TARGET_PREFIX + target
        if name not in table.schema.names:
            raise ValueError(f"target: no column {name!r} in the table")
        target_probs = _from_list(table.column(name), name, offsets)[1]
    timestamp = None
    if TIMESTAMP in table.schema.names:
        column = table.column(TIMESTAMP)
        if column.null_count:
            raise ValueError(f"timestamp: {column.null_count} of {len(column)} rows are missing")
        timestamp = column.combine_chunks().to_numpy(zero_copy_only=False)
    context_names = [
        c
        for c in table.schema.names
        if c not in RESERVED - {ID} and c != DATE and not c.startswith(TARGET_PREFIX)
    ]
    context = table.select(context_names).to_pandas() if context_names else None
    return LoggedBandit(
        offsets=offsets,
        action_ids=action_ids,
        chosen_index=chosen_index,
        logged_probability=_numpy(table.column(LOGGED_PROBABILITY), np.float64, LOGGED_PROBABILITY),
        reward=_numpy(table.column(REWARD), np.float64, REWARD),
        logging_probabilities=logging,
        target_probabilities=target_probs,
        reward_predictions=predictions,
        timestamp=timestamp,
        context=context,
        reward_range=reward_range,
        tolerance=tolerance,
    )


def targets_from_arrow(table: pa.Table) -> dict[str, FloatArray]:
    """Every `target__<name>` column as per-candidate probabilities aligned with the log."""
    offsets, _ = _from_list(table.column(CANDIDATES), CANDIDATES, None)
    return {
        name.removeprefix(TARGET_PREFIX): _from_list(table.column(name), name, offsets)[1]
        for name in table.schema.names
        if name.startswith(TARGET_PREFIX)
    }


def _from_list(
    column: pa.ChunkedArray, name: str, expected_offsets: IntArray | None
) -> tuple[IntArray, npt.NDArray[Any]]:
    array = column.combine_chunks() if isinstance(column, pa.ChunkedArray) else column
    if not (pa.types.is_list(array.type) or pa.types.is_large_list(array.type)):
        raise ValueError(f"{name}: expected a list column, got {array.type}")
    if array.null_count:
        raise ValueError(f"{name}: {array.null_count} of {len(array)} rows are missing (null)")
    raw_offsets = np.asarray(array.offsets.to_numpy(zero_copy_only=False), dtype=np.int64)
    offsets = raw_offsets - raw_offsets[0]
    if expected_offsets is not None and not np.array_equal(offsets, expected_offsets):
        rows = int(np.count_nonzero(np.diff(offsets) != np.diff(expected_offsets)))
        raise ValueError(f"{name}: {rows} of {len(array)} rows differ in length from candidates")
    flat = array.values.slice(int(raw_offsets[0]), int(offsets[-1]))
    if flat.null_count:
        if not pa.types.is_floating(flat.type):
            raise ValueError(f"{name}: {flat.null_count} list entries are missing (null)")
        flat = pc.fill_null(flat, math.nan)
    values = flat.to_numpy(zero_copy_only=False)
    return offsets, values


def _numpy(column: pa.ChunkedArray, dtype: type[np.generic], name: str) -> npt.NDArray[Any]:
    array = column.combine_chunks() if isinstance(column, pa.ChunkedArray) else column
    if array.null_count and not np.issubdtype(dtype, np.floating):
        raise ValueError(f"{name}: {array.null_count} of {len(array)} rows are missing (null)")
    if array.null_count:
        array = pc.fill_null(array.cast(pa.float64()), math.nan)
    return np.asarray(array.to_numpy(zero_copy_only=False), dtype=dtype)


def _chosen_index(offsets: IntArray, action_ids: npt.NDArray[Any], chosen: IntArray) -> Int32Array:
    """Position of the chosen action id within its row, vectorised over the flat arrays."""
    n = len(chosen)
    size = uniform_size(offsets)
    if size is not None:
        hits = action_ids.reshape(n, size) == chosen[:, None]
        counts = hits.sum(axis=1)
        first = hits.argmax(axis=1)
    else:
        sizes = np.diff(offsets)
        matches = np.flatnonzero(action_ids == np.repeat(chosen, sizes))
        owner = np.searchsorted(offsets, matches, side="right") - 1
        counts = np.bincount(owner, minlength=n)
        first = np.zeros(n, dtype=np.int64)
        keep = np.ones(len(owner), dtype=bool)
        keep[1:] = owner[1:] != owner[:-1]
        first[owner[keep]] = matches[keep] - offsets[:-1][owner[keep]]
    absent = int(np.count_nonzero(counts == 0))
    if absent:
        raise ValueError(
            f"chosen_action: {absent} of {len(chosen)} rows choose an action that is not among "
            "their candidates"
        )
    repeated = int(np.count_nonzero(counts > 1))
    if repeated:
        raise ValueError(
            f"candidates: {repeated} of {len(chosen)} rows list the chosen action more than once"
        )
    index: Int32Array = first.astype(np.int32)
    return index


def to_pandas(
    data: LoggedBandit, *, targets: Mapping[str, FloatArray] | None = None
) -> pd.DataFrame:
    """The flat layout as a DataFrame (list columns hold numpy arrays)."""
    frame: pd.DataFrame = to_arrow(data, targets=targets).to_pandas()
    return frame


def from_pandas(
    frame: pd.DataFrame,
    *,
    target: str | None = None,
    reward_range: tuple[float, float] | None = None,
    tolerance: float = DEFAULT_TOLERANCE,
) -> LoggedBandit:
    """A validated dataset from a DataFrame in the flat layout."""
    if TIMESTAMP in frame.columns and isinstance(frame[TIMESTAMP].dtype, pd.DatetimeTZDtype):
        frame = frame.assign(**{TIMESTAMP: frame[TIMESTAMP].dt.tz_convert("UTC")})
        frame[TIMESTAMP] = frame[TIMESTAMP].dt.tz_localize(None)
    try:
        table = pa.Table.from_pandas(frame, preserve_index=False)
    except (pa.ArrowInvalid, pa.ArrowTypeError) as error:
        raise ValueError(f"frame: cannot be read in the flat layout: {error}") from None
    return from_arrow(table, target=target, reward_range=reward_range, tolerance=tolerance)


# -- Parquet, partitioned by date ---------------------------------------------------------------


def _partitioning() -> ds.Partitioning:
    return ds.partitioning(pa.schema([(DATE, pa.date32())]), flavor="hive")


def write_parquet(
    data: LoggedBandit,
    path: str | Path,
    *,
    targets: Mapping[str, FloatArray] | None = None,
) -> None:
    """Write the flat layout under `path` as Hive partitions `date=YYYY-MM-DD` (UTC day of
    the timestamp). Partitions being written replace earlier files of the same day."""
    if data.timestamp is None:
        raise ValueError("timestamp: partitioning by date needs a timestamp for every row")
    table = to_arrow(data, targets=targets)
    days = pa.array(data.timestamp.astype("datetime64[D]"), pa.date32())
    table = table.append_column(DATE, days)
    # Dictionary encoding pays off for repeated values (segments, action ids); for unique ids
    # and probabilities it only costs time (about 5x on the write), so it is limited to those.
    repeated = [c for c in table.schema.names if c not in RESERVED or c in (CANDIDATES, CHOSEN)]
    options = ds.ParquetFileFormat().make_write_options(use_dictionary=repeated)
    ds.write_dataset(
        table,
        str(path),
        format="parquet",
        file_options=options,
        partitioning=_partitioning(),
        existing_data_behavior="delete_matching",
        basename_template="part-{i}.parquet",
        preserve_order=True,
    )


def read_parquet(
    path: str | Path,
    *,
    target: str | None = None,
    start: date | None = None,
    end: date | None = None,
    reward_range: tuple[float, float] | None = None,
    tolerance: float = DEFAULT_TOLERANCE,
) -> LoggedBandit:
    """Read a partitioned log, optionally only days in [start, end] (partition pruning).

    Rows come back day by day in the order they were written."""
    table = read_parquet_table(path, start=start, end=end)
    return from_arrow(table, target=target, reward_range=reward_range, tolerance=tolerance)


def read_parquet_table(
    path: str | Path, *, start: date | None = None, end: date | None = None
) -> pa.Table:
    """The flat-layout table of a partitioned log (for targets_from_arrow or other tools)."""
    dataset = ds.dataset(str(path), format="parquet", partitioning=_partitioning())
    condition = None
    if start is not None:
        condition = ds.field(DATE) >= pa.scalar(start, pa.date32())
    if end is not None:
        upper = ds.field(DATE) <= pa.scalar(end, pa.date32())
        condition = upper if condition is None else condition & upper
    table = dataset.to_table(filter=condition)
    if table.num_rows == 0:
        raise ValueError(f"path: no logged decisions under {path} for the requested days")
    return table.drop_columns([DATE])


# -- VW DSJSON ---------------------------------------------------------------------------------


def write_dsjson(
    data: LoggedBandit,
    out: str | Path | TextIO,
    *,
    context_features: Sequence[Mapping[str, Any]] | None = None,
    action_features: Mapping[int, Mapping[str, Any]] | None = None,
) -> None:
    """One VW decision-service JSON object per line.

    `_label_cost` is -reward (VW minimises cost), `_label_probability` the logged probability,
    `_label_Action` / `_labelIndex` the chosen candidate's 1-based / 0-based position in `_multi`.
    `a` lists VW action ids, which are 1-based positions in `_multi`, chosen first; `p` holds the
    logged probabilities in the same order ("NaN" where the logging policy never scored a
    candidate, or everywhere but the chosen one when only its probability was logged). `c`
    carries the shared features (`context_features[i]`) and `_multi`, one object per candidate
    with `action_features[action_id]`; our int32 action id travels in `_action_id`, a key VW
    ignores because it starts with an underscore.
    """
    if context_features is not None and len(context_features) != data.n:
        raise ValueError(f"context_features: has {len(context_features)} rows, expected {data.n}")
    if isinstance(out, (str, Path)):
        with Path(out).open("w", encoding="utf-8") as stream:
            _write_lines(data, stream, context_features, action_features)
    else:
        _write_lines(data, out, context_features, action_features)


def _write_lines(
    data: LoggedBandit,
    stream: TextIO,
    context_features: Sequence[Mapping[str, Any]] | None,
    action_features: Mapping[int, Mapping[str, Any]] | None,
) -> None:
    ids = _decision_ids(data)
    stamps = None if data.timestamp is None else _dsjson_timestamps(data.timestamp)
    offsets = data.offsets.tolist()
    actions = data.action_ids.tolist()
    logging = None if data.logging_probabilities is None else data.logging_probabilities.tolist()
    chosen = data.chosen_index.tolist()
    logged = data.logged_probability.tolist()
    rewards = data.reward.tolist()
    features_by_action: dict[int, dict[str, Any]] = {}
    for row in range(data.n):
        lo, hi, pick = offsets[row], offsets[row + 1], chosen[row]
        order = [pick, *(k for k in range(hi - lo) if k != pick)]
        if logging is None:
            probs: list[float | str] = [logged[row]] + ["NaN"] * (hi - lo - 1)
        else:
            probs = [_json_probability(logging[lo + k]) for k in order]
        shared: dict[str, Any] = dict(context_features[row]) if context_features else {}
        if "_multi" in shared:
            raise ValueError(f"context_features: row {row} uses the reserved key '_multi'")
        shared["_multi"] = [
            _action_object(actions[j], action_features, features_by_action) for j in range(lo, hi)
        ]
        line: dict[str, Any] = {
            "_label_cost": 0.0 - rewards[row],
            "_label_probability": logged[row],
            "_label_Action": pick + 1,
            "_labelIndex": pick,
            "Version": "1",
            "EventId": ids[row],
            "a": [k + 1 for k in order],
            "c": shared,
            "p": probs,
        }
        if stamps is not None:
            line["Timestamp"] = stamps[row]
        stream.write(json.dumps(line, separators=(",", ":"), allow_nan=False))
        stream.write("\n")


def _json_probability(value: float) -> float | str:
    return "NaN" if math.isnan(value) else value


def _action_object(
    action_id: int,
    action_features: Mapping[int, Mapping[str, Any]] | None,
    cache: dict[int, dict[str, Any]],
) -> dict[str, Any]:
    found = cache.get(action_id)
    if found is None:
        features: Mapping[str, Any]
        if action_features is None:
            features = {"Action": {"id": str(action_id)}}
        elif action_id in action_features:
            features = action_features[action_id]
        else:
            raise ValueError(f"action_features: no features for action id {action_id}")
        found = {"_action_id": action_id, **features}
        cache[action_id] = found
    return found


def _decision_ids(data: LoggedBandit) -> list[str]:
    if data.context is not None and ID in data.context.columns:
        return [str(v) for v in data.context[ID].tolist()]
    return [str(i) for i in range(data.n)]


def _dsjson_timestamps(stamps: npt.NDArray[np.datetime64]) -> list[str]:
    text = np.datetime_as_string(stamps.astype("datetime64[us]"), unit="us")
    return [f"{t}Z" for t in text.tolist()]


def read_dsjson(
    source: str | Path | Iterable[str],
    *,
    reward_range: tuple[float, float] | None = None,
    tolerance: float = DEFAULT_TOLERANCE,
) -> LoggedBandit:
    """Read DSJSON lines (ours or another system's CB logs) back into a dataset.

    Action ids come from `_action_id` when present, else the 0-based position in `_multi`.
    Lines whose `p` has only the chosen probability known give a dataset without a logging
    distribution. Unlabelled lines (no `_label_cost`) are rejected with their line number.
    """
    lines: Iterable[str]
    if isinstance(source, (str, Path)):
        lines = Path(source).read_text(encoding="utf-8").splitlines()
    else:
        lines = source
    sizes: list[int] = []
    actions: list[int] = []
    logging: list[float] = []
    chosen: list[int] = []
    logged: list[float] = []
    rewards: list[float] = []
    ids: list[str] = []
    stamps: list[str | None] = []
    only_chosen_known = True
    for number, raw in enumerate(lines, start=1):
        if not raw.strip():
            continue
        try:
            event = json.loads(raw)
        except json.JSONDecodeError as error:
            raise ValueError(f"line {number}: not JSON ({error.msg})") from None
        if "_label_cost" not in event:
            raise ValueError(f"line {number}: no _label_cost (unlabelled event)")
        multi = event.get("c", {}).get("_multi")
        if not isinstance(multi, list) or not multi:
            raise ValueError(f"line {number}: c._multi must list the candidates")
        k = len(multi)
        pick = int(event.get("_labelIndex", int(event.get("_label_Action", 0)) - 1))
        if not 0 <= pick < k:
            raise ValueError(f"line {number}: _labelIndex {pick} is outside the {k} candidates")
        row_probs = [math.nan] * k
        for position, prob in zip(event.get("a", []), event.get("p", []), strict=False):
            if not 1 <= int(position) <= k:
                raise ValueError(f"line {number}: action {position} in a is outside _multi")
            row_probs[int(position) - 1] = math.nan if prob == "NaN" else float(prob)
        if any(not math.isnan(p) for j, p in enumerate(row_probs) if j != pick):
            only_chosen_known = False
        sizes.append(k)
        actions.extend(int(obj.get("_action_id", j)) for j, obj in enumerate(multi))
        logging.extend(row_probs)
        chosen.append(pick)
        logged.append(float(event.get("_label_probability", math.nan)))
        rewards.append(-float(event["_label_cost"]) + 0.0)
        ids.append(str(event.get("EventId", len(ids))))
        stamps.append(event.get("Timestamp"))
    if not sizes:
        raise ValueError("source: the log is empty (0 decisions)")
    offsets = np.zeros(len(sizes) + 1, dtype=np.int64)
    np.cumsum(sizes, out=offsets[1:])
    timestamp = None
    if all(s is not None for s in stamps):
        timestamp = np.array([str(s).rstrip("Z") for s in stamps], dtype="datetime64[us]")
    return LoggedBandit(
        offsets=offsets,
        action_ids=np.asarray(actions, dtype=np.int64),
        chosen_index=np.asarray(chosen, dtype=np.int32),
        logged_probability=np.asarray(logged),
        reward=np.asarray(rewards),
        logging_probabilities=None if only_chosen_known and max(sizes) > 1 else np.asarray(logging),
        timestamp=timestamp,
        context=pd.DataFrame({ID: ids}),
        reward_range=reward_range,
        tolerance=tolerance,
    )
