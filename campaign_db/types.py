"""Column types and enumerations shared by the tables.

Kept apart from the tables so that pure code (the catalog schema, the optimizer) can use the
enumerations without touching SQLAlchemy sessions.
"""

from __future__ import annotations

import enum
import re
import uuid
from datetime import UTC, date, datetime
from typing import Annotated, Any, TypeVar

import numpy as np
import uuid6
from pydantic import AfterValidator, AwareDatetime, BeforeValidator, Strict
from sqlalchemy import DateTime, LargeBinary
from sqlalchemy.engine import Dialect
from sqlalchemy.types import TypeDecorator


class HealthClass(enum.StrEnum):
    """A (healthy) … D (about to churn), derived from the usage index."""

    A = "A"
    B = "B"
    C = "C"
    D = "D"

    @property
    def rank(self) -> int:
        """0 for A … 3 for D: a larger rank is a worse health class."""
        return "ABCD".index(self.value)


class ChannelKind(enum.StrEnum):
    """Push channels contact the customer; pull channels wait until the customer comes."""

    push = "push"
    pull = "pull"


class SendTimeKind(enum.StrEnum):
    immediate = "immediate"
    slot = "slot"
    occasion = "occasion"


class OfferKind(enum.StrEnum):
    incentive = "incentive"
    upgrade = "upgrade"
    cross_sell = "cross_sell"
    content = "content"
    tip = "tip"
    none = "none"


class FrameStatus(enum.StrEnum):
    draft = "draft"
    approved = "approved"
    active = "active"
    retired = "retired"


class RewardDefinition(enum.StrEnum):
    binary = "binary"
    value_minus_cost = "value_minus_cost"


class DecisionReason(enum.StrEnum):
    """Why a decision came out as it did; `policy` is the only one with a contact."""

    policy = "policy"
    policy_no_contact = "policy_no_contact"
    holdout = "holdout"
    nothing_eligible = "nothing_eligible"


class ContactStatus(enum.StrEnum):
    reserved = "reserved"
    sent = "sent"
    delivered = "delivered"
    failed = "failed"
    cancelled = "cancelled"


_T = TypeVar("_T")


def _has_nul(value: object) -> bool:
    if isinstance(value, str):
        return "\x00" in value
    if isinstance(value, dict):
        return any(_has_nul(k) or _has_nul(v) for k, v in value.items())
    if isinstance(value, list | tuple):
        return any(_has_nul(v) for v in value)
    return False


def refuse_nul(value: _T) -> _T:
    """PostgreSQL stores no NUL character in text or JSONB: refuse it in any string, key or
    nested value before it reaches a table, so that every backend answers alike."""
    if _has_nul(value):
        raise ValueError("must not contain the NUL character (U+0000)")
    return value


NulFreeStr = Annotated[str, AfterValidator(refuse_nul)]
"""A string the database can store: input text that ends up in a column or a JSON document."""

_RFC3339 = re.compile(
    r"\d{4}-\d{2}-\d{2}[Tt]\d{2}:\d{2}:\d{2}(\.\d+)?([Zz]|[+-]\d{2}:\d{2})", re.ASCII
)


def rfc3339_text(value: object) -> object:
    """Pydantic also reads numbers, and strings of digits, as Unix times and takes dates without
    a time: input the OpenAPI `date-time` format refuses, so it is refused here too."""
    if isinstance(value, str) and not _RFC3339.fullmatch(value):
        raise ValueError("must be an RFC 3339 date-time with an offset, e.g. 2026-11-23T10:15:00Z")
    if not isinstance(value, str | datetime):
        raise ValueError("must be an RFC 3339 date-time string, e.g. 2026-11-23T10:15:00Z")
    return value


Timestamp = Annotated[AwareDatetime, BeforeValidator(rfc3339_text)]
"""An instant as the API takes it: an RFC 3339 date-time with an offset, as its schema says."""


def iso_date_text(value: object) -> object:
    """A calendar date as `YYYY-MM-DD` only, not a Unix time (what pydantic also reads)."""
    if isinstance(value, date):
        return value
    if not isinstance(value, str) or not re.fullmatch(r"\d{4}-\d{2}-\d{2}", value, re.ASCII):
        raise ValueError("must be a date string YYYY-MM-DD, e.g. 2024-03-01")
    return value


def json_number(value: object) -> object:
    """Pydantic reads `true` and numeric strings as numbers; a JSON body's number must be one."""
    if isinstance(value, bool | str):
        raise ValueError("must be a JSON number")
    return value


CalendarDate = Annotated[date, BeforeValidator(iso_date_text)]
JsonFloat = Annotated[float, BeforeValidator(json_number)]
JsonBool = Annotated[bool, Strict()]
"""Body fields typed as their schema says: no numbers from strings or booleans, no booleans
from numbers or strings (query parameters are text and keep pydantic's conversions)."""


def new_id() -> uuid.UUID:
    """A time-ordered UUIDv7: random v4 keys slow inserts on large tables two to three times."""
    return uuid6.uuid7()


def utcnow() -> datetime:
    return datetime.now(UTC)


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
