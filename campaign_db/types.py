"""Column types that store the core's values on every database (UTC times, numpy arrays)."""

from __future__ import annotations

from datetime import UTC, datetime
from typing import Any

import numpy as np
from sqlalchemy import DateTime, LargeBinary
from sqlalchemy.engine import Dialect
from sqlalchemy.types import TypeDecorator


class UTCDateTime(TypeDecorator[datetime]):
    """Timezone-aware datetimes stored as UTC on every database.

    SQLite keeps no offset, so values are normalised to UTC on the way in and marked UTC on the
    way out; a naive datetime is refused rather than guessed.
    """

    impl = DateTime(timezone=True)
    cache_ok = True

    def process_bind_param(self, value: datetime | None, dialect: Dialect) -> datetime | None:
        if value is None:
            return None
        if value.tzinfo is None:
            raise ValueError("naive datetime: every timestamp must carry a time zone")
        value = value.astimezone(UTC)
        if dialect.name == "sqlite":
            return value.replace(tzinfo=None)
        return value

    def process_result_value(self, value: datetime | None, dialect: Dialect) -> datetime | None:
        if value is None:
            return None
        if value.tzinfo is None:
            return value.replace(tzinfo=UTC)
        return value.astimezone(UTC)


class Float64Array(TypeDecorator[np.ndarray[Any, np.dtype[np.float64]]]):
    """A float64 vector stored compactly as little-endian bytes (8 bytes a candidate)."""

    impl = LargeBinary
    cache_ok = True

    def process_bind_param(self, value: Any, dialect: Dialect) -> bytes | None:
        if value is None:
            return None
        return np.asarray(value, dtype="<f8").tobytes()

    def process_result_value(
        self, value: bytes | None, dialect: Dialect
    ) -> np.ndarray[Any, np.dtype[np.float64]] | None:
        if value is None:
            return None
        return np.frombuffer(value, dtype="<f8").copy()


class Int32Array(TypeDecorator[np.ndarray[Any, np.dtype[np.int32]]]):
    """An int32 vector (candidate action ids) stored compactly as little-endian bytes."""

    impl = LargeBinary
    cache_ok = True

    def process_bind_param(self, value: Any, dialect: Dialect) -> bytes | None:
        if value is None:
            return None
        return np.asarray(value, dtype="<i4").tobytes()

    def process_result_value(
        self, value: bytes | None, dialect: Dialect
    ) -> np.ndarray[Any, np.dtype[np.int32]] | None:
        if value is None:
            return None
        return np.frombuffer(value, dtype="<i4").copy()
