"""Reading usage batch files (CSV or Parquet); every problem names file, row and column."""

from __future__ import annotations

from pathlib import Path

import pandas as pd
from pydantic import ValidationError

from optimizer.health import UsageIn
from optimizer.outbound import UsageRow

COLUMNS = ("customer_id", "recency_days", "sessions_30d", "minutes_30d")


class UsageFileError(ValueError):
    pass


def _instant_text(value: object) -> str:
    """Files hold a time as their writer stored it (a Parquet timestamp, `2026-11-23 09:00:00+01:00`
    in a CSV); the API's model takes RFC 3339 text, and refuses a time without an offset."""
    try:
        return pd.Timestamp(value).isoformat()  # type: ignore[arg-type]
    except (TypeError, ValueError):
        return str(value)


def read_usage_file(path: Path) -> list[UsageRow]:
    try:
        if path.suffix.lower() == ".parquet":
            frame = pd.read_parquet(path)
            first_row = 0
        else:
            frame = pd.read_csv(path, dtype={"customer_id": str})
            first_row = 2  # line 1 is the header
    except (OSError, ValueError) as exc:
        raise UsageFileError(f"{path}: cannot read: {exc}") from exc
    missing = [c for c in COLUMNS if c not in frame.columns]
    if missing:
        raise UsageFileError(f"{path}: missing column(s) {', '.join(missing)}")
    rows = []
    for i, record in enumerate(frame.to_dict(orient="records")):
        where = f"{path}:{i + first_row}" if first_row else f"{path}: row {i}"
        data = {k: record[k] for k in COLUMNS[1:]}
        observed = record.get("observed_at")
        if observed is not None and not (isinstance(observed, float) and pd.isna(observed)):
            data["observed_at"] = _instant_text(observed)
        try:
            usage = UsageIn.model_validate(data)
        except ValidationError as exc:
            error = exc.errors()[0]
            column = ".".join(str(p) for p in error["loc"])
            raise UsageFileError(f"{where}: {column}: {error['msg']}") from None
        customer = str(record["customer_id"])
        if not customer or customer == "nan":
            raise UsageFileError(f"{where}: customer_id: missing")
        rows.append(UsageRow(customer_id=customer, usage=usage))
    return rows
