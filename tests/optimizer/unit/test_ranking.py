"""Ranking slots for pull channels: pure planning, properties over many rankings."""

from __future__ import annotations

import itertools
import uuid
import zlib
from collections.abc import Sequence
from dataclasses import replace
from datetime import UTC, datetime, timedelta
from typing import Any

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from optimizer.core.catalog import (
    CatalogSnapshot,
    CatalogSpec,
    ImpressionLimit,
    cross_check,
    frame_widenings,
)
from optimizer.core.decision import CustomerProfile, CustomerRecord, PastContact
from optimizer.eligibility import Combination, frame_combinations, in_holdout
from optimizer.features import shared_line
from optimizer.policy import BanditPolicy
from optimizer.ranking import Mirrored, RankingAsk, plan_ranking, rank_slots
from tests.optimizer.test_eligibility import snapshot_of

NOW = datetime(2026, 11, 23, 9, 15, tzinfo=UTC)
FloatArray = np.ndarray[Any, np.dtype[np.float64]]


def combos(offers: int, texts: int = 2) -> list[Combination]:
    out = []
    for o, t in itertools.product(range(offers), range(texts)):
        line = f"|o offer{o} |x text{t}"
        out.append(
            Combination(o * texts + t + 1, f"o{o}", f"t{o}_{t}", "web", "now", ("", ""), line)
        )
    return out


def skewed(slot: int, lines: Sequence[str]) -> FloatArray:
    """A fixed distribution that is not uniform and depends on the slot."""
    weights = np.array([1.0 + ((zlib.crc32(line.encode()) + slot) % 7) for line in lines])
    pmf: FloatArray = weights / weights.sum()
    return pmf


@settings(max_examples=60, deadline=None)
@given(
    offers=st.integers(1, 8),
    texts=st.integers(1, 3),
    slots=st.integers(1, 20),
    seed=st.integers(0, 2**64 - 1),
)
def test_slots_hold_distinct_offers_each_drawn_from_what_the_slots_before_left(
    offers: int, texts: int, slots: int, seed: int
) -> None:
    candidates = combos(offers, texts)
    picks = rank_slots(
        candidates, slots=slots, distribution=skewed, ranking_id=uuid.UUID(int=seed % 2**128)
    )
    assert len(picks) == min(slots, offers)
    assert len({p.offer for p in picks}) == len(picks)
    left = list(candidates)
    for pick in picks:
        assert pick.candidate_action_ids == tuple(c.action_id for c in left)
        assert abs(sum(pick.probabilities) - 1.0) < 1e-9
        index = pick.candidate_action_ids.index(pick.action_id)
        assert pick.probability == pick.probabilities[index]
        left = [c for c in left if c.offer != pick.offer]


def test_the_product_of_slot_probabilities_is_a_distribution_over_rankings() -> None:
    """Summed over every ordered choice of 2 slots from 4 offers x 2 texts, the product of the
    conditional probabilities is 1, and the sampler's frequencies match it."""
    candidates = combos(4, 2)
    exact: dict[tuple[int, int], float] = {}
    for first in candidates:
        p1 = skewed(1, [c.line for c in candidates])[candidates.index(first)]
        rest = [c for c in candidates if c.offer != first.offer]
        p2 = skewed(2, [c.line for c in rest])
        for second, q in zip(rest, p2, strict=True):
            exact[(first.action_id, second.action_id)] = float(p1 * q)
    assert abs(sum(exact.values()) - 1.0) < 1e-12
    n = 20_000
    seen: dict[tuple[int, int], int] = {}
    for i in range(n):
        picks = rank_slots(candidates, slots=2, distribution=skewed, ranking_id=uuid.UUID(int=i))
        key = (picks[0].action_id, picks[1].action_id)
        seen[key] = seen.get(key, 0) + 1
        assert abs(picks[0].probability * picks[1].probability - exact[key]) < 1e-12
    for key, p in exact.items():
        assert abs(seen.get(key, 0) / n - p) < 4 * np.sqrt(p * (1 - p) / n) + 1e-3


def test_a_forced_offer_takes_the_first_slot_with_probability_one() -> None:
    candidates = combos(5)
    mirrored = candidates[5]  # offer o2
    picks = rank_slots(
        candidates, slots=3, distribution=skewed, ranking_id=uuid.uuid4(), forced=[mirrored]
    )
    assert picks[0].action_id == mirrored.action_id
    assert picks[0].forced
    assert picks[0].probability == 1.0
    assert picks[0].candidate_action_ids == (mirrored.action_id,)
    assert all(p.offer != "o2" for p in picks[1:])
    assert not any(p.forced for p in picks[1:])
    # two mirrors of one offer take one slot; no more slots than asked
    picks = rank_slots(
        candidates, slots=1, distribution=skewed, ranking_id=uuid.uuid4(), forced=[mirrored] * 2
    )
    assert [p.action_id for p in picks] == [mirrored.action_id]


# --- the planner on the example catalog ------------------------------------------------------


@pytest.fixture(scope="module")
def snapshot(example_catalog: CatalogSpec) -> CatalogSnapshot:
    return snapshot_of(example_catalog)


def record(customer_id: str, *, history: tuple[PastContact, ...] = ()) -> CustomerRecord:
    profile = CustomerProfile(
        id=customer_id,
        health_class="A",
        usage_index=0.8,
        customer_since=None,
        time_zone="Europe/Berlin",
        language="en",
        attributes={},
    )
    return CustomerRecord(profile, frozenset({"web_portal", "app_inbox", "email"}), history)


def customer_id() -> str:
    i = 0
    while in_holdout(f"c{i}", salt="upsell", share=0.10):
        i += 1
    return f"c{i}"


def plan(snapshot: CatalogSnapshot, state: CustomerRecord, **fields: Any) -> Any:
    ask_fields: dict[str, Any] = {
        "request_id": "r",
        "customer_id": state.profile.id,
        "trigger": "category_binge",
        "channel": "web_portal",
        "slots": 3,
    }
    extra = {k: fields.pop(k) for k in list(fields) if k in ("slots", "exclude_offers")}
    return plan_ranking(
        RankingAsk(**{**ask_fields, **extra}),
        now=NOW,
        state=state,
        snapshot=snapshot,
        policy_for=lambda frame: BanditPolicy(frame.spec.policy_spec(), name=frame.key),
        combinations=lambda f, lang, hc: frame_combinations(snapshot, f, lang, hc),
        ranking_id=uuid.UUID(int=7),
        **fields,
    )


def test_a_push_contact_in_the_history_does_not_empty_the_portal(
    snapshot: CatalogSnapshot,
) -> None:
    contacted = (PastContact("upsell", "email", NOW - timedelta(days=1)),)
    result = plan(snapshot, record(customer_id(), history=contacted))
    assert result.answer.reason == "policy"
    assert len(result.answer.slots) == 3


def test_impression_limits_take_an_offer_out_of_the_page(snapshot: CatalogSnapshot) -> None:
    upsell = next(f for f in snapshot.frames if f.key == "upsell")
    limits = {"web_portal": ImpressionLimit(same_offer=2)}
    policy = upsell.spec.contact_policy.model_copy(update={"impression_limits": limits})
    limited = upsell.spec.model_copy(update={"contact_policy": policy})
    frames = tuple(replace(f, spec=limited) if f.key == "upsell" else f for f in snapshot.frames)
    capped = replace(snapshot, frames=frames)
    result = plan(capped, record(customer_id()), slots=4, impressions={"family_plan": 2})
    offers = [s.offer.key for s in result.answer.slots]
    assert "family_plan" not in offers
    assert len(offers) == 3
    assert "impression limit reached: 2 of 2" in result.answer.excluded["offer:family_plan"]


def test_a_mirrored_offer_is_logged_as_a_forced_first_slot(snapshot: CatalogSnapshot) -> None:
    base = plan(snapshot, record(customer_id()))
    last = base.write.entry.slots[-1]
    first_shown = base.write.entry.slots[0]
    channels = ("web_portal", "app_inbox")

    def mirror(offer: str, text: str, since: datetime) -> Mirrored:
        until = since + timedelta(days=14)
        return Mirrored(uuid.uuid4(), "upsell", offer, text, channels, since, until)

    active = mirror(last.offer, last.text, NOW - timedelta(days=1))
    expired = mirror(first_shown.offer, first_shown.text, NOW - timedelta(days=20))
    result = plan(snapshot, record(customer_id()), mirrored=[active, expired])
    first = result.write.entry.slots[0]
    assert (first.action_id, first.probability, first.forced) == (last.action_id, 1.0, True)
    assert result.answer.slots[0].forced is True
    assert sum(s.forced for s in result.write.entry.slots) == 1
    assert len({s.offer for s in result.write.entry.slots}) == 3


def test_slot_is_a_feature_crossed_with_the_offer_only_for_rankings() -> None:
    context = {"health_class": "A", "trigger": "category_binge", "hour": 9, "weekday": 0}
    assert "slot" not in shared_line(context)
    assert "|t category_binge slot2 " in shared_line({**context, "slot": 2})


def test_impression_limits_are_for_pull_channels_of_the_frame(
    example_catalog: CatalogSpec,
) -> None:
    frames = []
    for frame in example_catalog.frames:
        if frame.key == "upsell":
            limits = {"email": ImpressionLimit(same_offer=1), "sms": ImpressionLimit(same_offer=1)}
            policy = frame.contact_policy.model_copy(update={"impression_limits": limits})
            frame = frame.model_copy(update={"contact_policy": policy})
        frames.append(frame)
    problems = dict(cross_check(example_catalog.model_copy(update={"frames": frames})))
    messages = {loc[-1]: message for loc, message in problems.items()}
    assert "push channel 'email'" in messages["email"]
    assert "not a frame channel" in messages["sms"]


def test_loosening_an_impression_limit_is_a_widening(example_catalog: CatalogSpec) -> None:
    frame = next(f for f in example_catalog.frames if f.key == "upsell")

    def with_limit(limit: ImpressionLimit | None) -> Any:
        limits = {} if limit is None else {"web_portal": limit}
        policy = frame.contact_policy.model_copy(update={"impression_limits": limits})
        return frame.model_copy(update={"contact_policy": policy})

    two = with_limit(ImpressionLimit(same_offer=2))
    assert frame_widenings(two, with_limit(ImpressionLimit(same_offer=1))) == []
    assert frame_widenings(two, with_limit(ImpressionLimit(same_offer=3)))
    assert frame_widenings(two, with_limit(None))


def test_mirrors_are_active_from_the_send_time_for_the_frames_days(
    snapshot: CatalogSnapshot,
) -> None:
    from optimizer.ports.rankings import PushedOffer
    from optimizer.ranking import active_mirrors, mirrored_combination

    sent = NOW + timedelta(hours=2)
    text = "upgrade_trial_short_friendly_en"
    pushed = [
        PushedOffer(uuid.UUID(int=1), "upsell", "upgrade_trial", text, "app_push", sent),
        PushedOffer(uuid.UUID(int=2), "churn_prevention", "free_month", "x", "email", sent),
    ]
    assert active_mirrors(pushed, snapshot, now=NOW) == []
    (mirror,) = active_mirrors(pushed, snapshot, now=sent)  # churn_prevention mirrors nothing
    assert mirror.until == sent + timedelta(days=14)
    assert active_mirrors(pushed, snapshot, now=mirror.until) == []
    shown = mirrored_combination(snapshot, mirror, channel="web_portal", language="en")
    assert shown is not None
    assert shown.offer == "upgrade_trial"
    assert shown.channel == "web_portal"
    assert "web_portal" in snapshot.texts[shown.text].channels  # a text that fits the portal
    assert mirrored_combination(snapshot, mirror, channel="email", language="en") is None


def test_a_mirror_into_a_push_channel_or_a_foreign_channel_is_refused(
    example_catalog: CatalogSpec,
) -> None:
    from optimizer.core.catalog import MirrorSpec

    frames = [
        f.model_copy(update={"mirror": MirrorSpec(channels=["email", "letter"], days=3)})
        if f.key == "upsell"
        else f
        for f in example_catalog.frames
    ]
    problems = [m for _, m in cross_check(example_catalog.model_copy(update={"frames": frames}))]
    assert any("'email' is a push channel" in m for m in problems)
    assert any("'letter' is not a channel of the frame" in m for m in problems)
