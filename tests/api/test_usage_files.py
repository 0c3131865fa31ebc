"""Usage batch files: the times they hold as a file stores them, refusals naming row and column."""

from __future__ import annotations

from datetime import UTC, datetime
from pathlib import Path

import pandas as pd
import pytest

from api.usage_files import UsageFileError, read_usage_file

OBSERVED = datetime(2026, 11, 23, 9, 0, tzinfo=UTC)


def _frame(observed: object) -> pd.DataFrame:
    return pd.DataFrame(
        {
            "customer_id": ["c-1"],
            "recency_days": [1.0],
            "sessions_30d": [3.0],
            "minutes_30d": [40.0],
            "observed_at": [observed],
        }
    )


def test_a_parquet_timestamp_column_is_read_as_the_instant_it_holds(tmp_path: Path) -> None:
    path = tmp_path / "usage.parquet"
    _frame(pd.Timestamp(OBSERVED)).to_parquet(path)
    (row,) = read_usage_file(path)
    assert row.usage.observed_at == OBSERVED


@pytest.mark.parametrize("text", ["2026-11-23T09:00:00Z", "2026-11-23 10:00:00+01:00"])
def test_a_csv_time_with_an_offset_is_read(tmp_path: Path, text: str) -> None:
    path = tmp_path / "usage.csv"
    _frame(text).to_csv(path, index=False)
    (row,) = read_usage_file(path)
    assert row.usage.observed_at == OBSERVED


@pytest.mark.parametrize("text", ["2026-11-23 09:00:00", "yesterday"])
def test_a_csv_time_without_an_offset_is_refused_naming_row_and_column(
    tmp_path: Path, text: str
) -> None:
    path = tmp_path / "usage.csv"
    _frame(text).to_csv(path, index=False)
    with pytest.raises(UsageFileError, match=r"usage\.csv:2: observed_at"):
        read_usage_file(path)
