"""Plain values every package shares: enumerations, input checks, ids and the clock.

Pure: no database, no HTTP. `campaign_db.types` adds the column types that store them.
"""

from __future__ import annotations

import enum
import random
import re
import threading
import uuid
from collections.abc import Callable
from datetime import UTC, date, datetime, timedelta
from typing import Annotated, TypeVar

import uuid6
from pydantic import AfterValidator, AwareDatetime, BeforeValidator, Strict


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


IdSource = Callable[[datetime], uuid.UUID]
"""Makes the id of something decided at a given time: the real clock's UUIDv7 in service, a
seeded one in a simulation, whose figures then repeat with its seed."""

UUID7_RANDOM_BITS = 74
_EPOCH = datetime(1970, 1, 1, tzinfo=UTC)


def clock_id(at: datetime) -> uuid.UUID:
    """`new_id()`, whatever the time asked for: a decision stamped in the past (a simulation
    through the API) still gets an id that sorts with the others written now."""
    return new_id()


def uuid7_from(ms: int, random_bits: int) -> uuid.UUID:
    """The UUIDv7 (RFC 9562) with this Unix millisecond timestamp and these 74 random bits."""
    if not 0 <= ms < 1 << 48:
        raise ValueError(f"ms must fit in 48 bits, got {ms}")
    if not 0 <= random_bits < 1 << UUID7_RANDOM_BITS:
        raise ValueError(f"random_bits must fit in {UUID7_RANDOM_BITS} bits, got {random_bits}")
    rand_a, rand_b = random_bits >> 62, random_bits & ((1 << 62) - 1)
    return uuid.UUID(int=ms << 80 | 0x7 << 76 | rand_a << 64 | 0b10 << 62 | rand_b)


def unix_ms(at: datetime) -> int:
    """Whole milliseconds since the Unix epoch, in integers (a float timestamp rounds)."""
    return (at - _EPOCH) // timedelta(milliseconds=1)


class SeededIds:
    """UUIDv7s stamped with the time asked for, their random bits from `random.Random(seed)`:
    the same seed and the same sequence of times give the same ids."""

    def __init__(self, seed: int) -> None:
        self._random = random.Random(seed)
        self._lock = threading.Lock()

    def __call__(self, at: datetime) -> uuid.UUID:
        with self._lock:
            bits = self._random.getrandbits(UUID7_RANDOM_BITS)
        return uuid7_from(unix_ms(at), bits)


def utcnow() -> datetime:
    return datetime.now(UTC)
