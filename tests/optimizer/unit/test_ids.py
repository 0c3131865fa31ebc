"""Seeded UUIDv7s: well-formed, ordered by their time, and repeated by their seed."""

from __future__ import annotations

import uuid
from datetime import UTC, datetime, timedelta

import pytest

from optimizer.core.values import UUID7_RANDOM_BITS, SeededIds, clock_id, unix_ms, uuid7_from

T0 = datetime(2026, 11, 2, 9, 30, tzinfo=UTC)


def test_uuid7_from_sets_version_variant_timestamp_and_random_bits() -> None:
    ms, bits = unix_ms(T0), (1 << UUID7_RANDOM_BITS) - 12345
    made = uuid7_from(ms, bits)
    assert made.version == 7
    assert made.variant == "specified in RFC 4122"
    assert made.int >> 80 == ms
    assert (made.int >> 64) & 0xFFF == bits >> 62
    assert made.int & ((1 << 62) - 1) == bits & ((1 << 62) - 1)


def test_uuid7_from_orders_by_time_whatever_the_random_bits() -> None:
    top = (1 << UUID7_RANDOM_BITS) - 1
    assert uuid7_from(1000, top) < uuid7_from(1001, 0)


@pytest.mark.parametrize(("ms", "bits"), [(-1, 0), (1 << 48, 0), (0, -1), (0, 1 << 74)])
def test_uuid7_from_refuses_what_does_not_fit(ms: int, bits: int) -> None:
    with pytest.raises(ValueError, match="must fit"):
        uuid7_from(ms, bits)


def _again(seed: int, times: list[datetime]) -> list[uuid.UUID]:
    ids = SeededIds(seed)
    return [ids(t) for t in times]


def test_seeded_ids_carry_the_time_asked_for_and_repeat_with_the_seed() -> None:
    times = [T0 + timedelta(milliseconds=m) for m in (0, 0, 1, 250, 86_400_000)]
    made = _again(7, times)
    assert made == _again(7, times)
    assert made != _again(8, times)
    assert len(set(made)) == len(made)
    assert [m.int >> 80 for m in made] == [unix_ms(t) for t in times]
    assert made[2:] == sorted(made[2:])
    assert all(m.version == 7 for m in made)


def test_unix_ms_counts_whole_milliseconds_without_float_rounding() -> None:
    assert unix_ms(datetime(1970, 1, 1, tzinfo=UTC)) == 0
    assert unix_ms(T0 + timedelta(microseconds=999)) == unix_ms(T0)
    assert unix_ms(datetime(2026, 11, 2, 0, 0, 0, 1000, tzinfo=UTC)) % 1000 == 1


def test_clock_id_is_a_fresh_uuid7_from_the_real_clock() -> None:
    before = unix_ms(datetime.now(UTC))
    made = clock_id(T0)
    assert made.version == 7
    assert made.int >> 80 >= before
    assert clock_id(T0) != made
