"""Eligibility and candidate generation: pure functions over plain values.

From the request (trigger, deliverable channels, now), the customer's state and contact history,
and the catalog snapshot, produce the feasible combinations of the one frame that serves this
decision, and for every block that was excluded the rule that excluded it (the eligibility trace).

Contact limits are checked conservatively in a symmetric window around the candidate's send time:
a new contact at `t` is allowed only if fewer than `max` contacts lie within `days` of `t` on
either side. Then no window of `days` length, wherever it starts, ever holds more than `max`.
"""

from __future__ import annotations

import hashlib
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from datetime import UTC, date, datetime, time, timedelta
from functools import cache
from typing import Any, NamedTuple
from zoneinfo import ZoneInfo

import numpy as np

from optimizer.core.catalog import (
    NO_CONTACT,
    CatalogSnapshot,
    ContactPolicySpec,
    FrameVersion,
    OfferSpec,
    QuietHours,
    SendTimeSpec,
    action_signature,
)
from optimizer.core.decision import CustomerState, PastContact
from optimizer.core.values import ChannelKind, SendTimeKind
from optimizer.features import NO_CONTACT_LINE, action_line

FloatArray = np.ndarray[Any, np.dtype[np.float64]]

HORIZON_DAYS = 7
"""How far ahead a send time may be scheduled."""


class Combination(NamedTuple):
    """One (offer, text, channel, send time) a frame can propose, with its interned action id."""

    action_id: int
    offer: str
    text: str
    channel: str
    send_time: str
    timing_key: tuple[str, str]
    line: str
    """The VW features of this action (`optimizer.features.action_line`)."""


class Candidate(NamedTuple):
    """One feasible combination with its send time.

    A named tuple rather than a frozen dataclass: a request builds up to a thousand of these, and
    a tuple is several times cheaper to create.
    """

    action_id: int
    offer: str
    text: str
    channel: str
    send_time: str
    send_at: datetime

    @property
    def signature(self) -> str:
        return action_signature(self.offer, self.text, self.channel, self.send_time)


class NoContactCandidate(NamedTuple):
    """The `no_contact` action, where the frame allows it."""

    action_id: int

    @property
    def signature(self) -> str:
        return NO_CONTACT


@dataclass(frozen=True)
class CandidateSet:
    """The feasible combinations (and `no_contact` where allowed), kept as the precomputed
    combinations plus their send times: a request rarely needs more than ids and VW lines, and
    building a thousand objects would cost more than the policy's predict."""

    frame: FrameVersion | None
    combinations: tuple[Combination, ...] = ()
    send_times: dict[tuple[str, str], datetime] = field(default_factory=dict)
    no_contact_id: int | None = None
    trace: dict[str, str] = field(default_factory=dict)

    def __len__(self) -> int:
        return len(self.combinations) + (self.no_contact_id is not None)

    @property
    def has_contact(self) -> bool:
        return bool(self.combinations)

    @property
    def action_ids(self) -> list[int]:
        ids = [c.action_id for c in self.combinations]
        if self.no_contact_id is not None:
            ids.append(self.no_contact_id)
        return ids

    @property
    def lines(self) -> list[str]:
        lines = [c.line for c in self.combinations]
        if self.no_contact_id is not None:
            lines.append(NO_CONTACT_LINE)
        return lines

    def offer_costs(self, offers: Mapping[str, OfferSpec]) -> FloatArray:
        """Each candidate's offer cost, in `lines` order (no contact costs nothing)."""
        cost = {key: offer.cost for key, offer in offers.items()}
        costs = np.zeros(len(self))
        costs[: len(self.combinations)] = np.fromiter(
            (cost[c.offer] for c in self.combinations), np.float64, len(self.combinations)
        )
        return costs

    @property
    def budget_pairs(self) -> list[tuple[str, str] | None]:
        """Each candidate's (offer, channel) in `lines` order, None for no contact: what
        decides which budgets it spends (`optimizer.budgets`)."""
        pairs: list[tuple[str, str] | None] = [(c.offer, c.channel) for c in self.combinations]
        if self.no_contact_id is not None:
            pairs.append(None)
        return pairs

    def candidate(self, index: int) -> Candidate | NoContactCandidate:
        """The candidate at `index` in `lines` order: the combinations, then `no_contact`."""
        if index == len(self.combinations) and self.no_contact_id is not None:
            return NoContactCandidate(self.no_contact_id)
        c = self.combinations[index]
        return Candidate(
            c.action_id, c.offer, c.text, c.channel, c.send_time, self.send_times[c.timing_key]
        )

    @property
    def candidates(self) -> tuple[Candidate | NoContactCandidate, ...]:
        return tuple(self.candidate(i) for i in range(len(self)))

    @property
    def contacts(self) -> tuple[Candidate, ...]:
        return tuple(
            Candidate(
                c.action_id, c.offer, c.text, c.channel, c.send_time, self.send_times[c.timing_key]
            )
            for c in self.combinations
        )


def local_now(now: datetime, time_zone: str) -> datetime:
    if now.tzinfo is None:
        raise ValueError("now: a time zone is required")
    return now.astimezone(ZoneInfo(time_zone))


# --- frames and holdout ----------------------------------------------------------------------


def frame_is_valid_on(frame: FrameVersion, day: date) -> bool:
    spec = frame.spec
    return spec.valid_from <= day and (spec.valid_until is None or day <= spec.valid_until)


def choose_frame(
    snapshot: CatalogSnapshot, *, trigger: str, customer: CustomerState, now: datetime
) -> tuple[FrameVersion | None, dict[str, str]]:
    """The highest-priority active frame for the trigger that serves this customer today."""
    trace: dict[str, str] = {}
    frames = snapshot.frames_for_trigger(trigger)
    if not frames:
        trace["trigger"] = f"no active frame for trigger {trigger!r}"
    for frame in frames:
        today = local_now(now, frame.spec.time_zone).date()
        if customer.health_class not in frame.spec.health_classes:
            served = "".join(frame.spec.health_classes)
            trace[f"frame:{frame.key}"] = (
                f"serves health classes {served}, customer is {customer.health_class}"
            )
        elif not frame_is_valid_on(frame, today):
            trace[f"frame:{frame.key}"] = f"not valid on {today.isoformat()}"
        else:
            return frame, trace
    return None, trace


def holdout_bucket(customer_id: str, salt: str) -> float:
    """A stable number in [0, 1) per customer and salt; the frame key is the salt."""
    digest = hashlib.sha256(f"{salt}:{customer_id}".encode()).digest()
    return int.from_bytes(digest[:8], "big") / 2**64


def in_holdout(customer_id: str, *, salt: str, share: float) -> bool:
    return holdout_bucket(customer_id, salt) < share


# --- send times ------------------------------------------------------------------------------


@cache
def _clock(value: str) -> time:
    hours, minutes = (int(part) for part in value.split(":"))
    return time.max if hours == 24 else time(hours, minutes)


def is_quiet(moment: datetime, quiet: QuietHours | None) -> bool:
    """Is the local time `moment` inside quiet hours (which may wrap midnight)?"""
    if quiet is None:
        return False
    start, end, now = _clock(quiet.start), _clock(quiet.end), moment.time()
    if start <= end:
        return start <= now < end
    return now >= start or now < end


def _quiet_end_after(moment: datetime, quiet: QuietHours) -> datetime:
    end = _clock(quiet.end)
    candidate = datetime.combine(moment.date(), end, tzinfo=moment.tzinfo)
    if candidate <= moment:
        candidate += timedelta(days=1)
    return candidate


def _in_occasion(day: date, slot: SendTimeSpec) -> bool:
    if not (slot.occasion_start and slot.occasion_end):
        return False
    key = day.strftime("%m-%d")
    start, end = slot.occasion_start, slot.occasion_end
    if start <= end:
        return start <= key <= end
    return key >= start or key <= end


def send_at(
    slot: SendTimeSpec,
    *,
    now_local: datetime,
    quiet: QuietHours | None,
    horizon_days: int = HORIZON_DAYS,
) -> datetime | None:
    """The earliest moment at or after `now_local` inside the slot and outside quiet hours."""
    if slot.kind is SendTimeKind.immediate:
        return None if is_quiet(now_local, quiet) else now_local
    if slot.start is None or slot.end is None:
        raise ValueError(f"send time {slot.key}: a window needs start and end")
    start, end = _clock(slot.start), _clock(slot.end)
    for offset in range(horizon_days + 1):
        day = now_local.date() + timedelta(days=offset)
        if slot.kind is SendTimeKind.slot and day.weekday() not in (slot.weekdays or []):
            continue
        if slot.kind is SendTimeKind.occasion and not _in_occasion(day, slot):
            continue
        window_start = datetime.combine(day, start, tzinfo=now_local.tzinfo)
        window_end = datetime.combine(day, end, tzinfo=now_local.tzinfo)
        moment = max(now_local, window_start)
        if moment >= window_end:
            continue
        if quiet is not None and is_quiet(moment, quiet):
            moment = _quiet_end_after(moment, quiet)
            if moment >= window_end:
                continue
        return moment
    return None


# --- contact policy --------------------------------------------------------------------------


def contact_policy_violation(
    policy: ContactPolicySpec,
    *,
    frame_key: str,
    channel: str,
    moment: datetime,
    history: Sequence[PastContact],
) -> str | None:
    """The first contact-policy rule a contact at `moment` would break, or None."""

    def near(contact: PastContact, days: float) -> bool:
        return abs(contact.send_at - moment) < timedelta(days=days)

    if any(c.frame_key == frame_key and near(c, policy.once_per_customer_days) for c in history):
        return (
            f"campaign already contacted this customer within {policy.once_per_customer_days} days"
        )
    gap = timedelta(hours=policy.min_gap_hours)
    if gap and any(abs(c.send_at - moment) < gap for c in history):
        return f"another contact within {policy.min_gap_hours:g} hours"
    limit = policy.channel_limits.get(channel)
    if limit is not None:
        count = sum(1 for c in history if c.channel == channel and near(c, limit.days))
        if count >= limit.max:
            return f"channel cap reached: {count} of {limit.max} contacts within {limit.days} days"
    cap = policy.fatigue_cap
    count = sum(1 for c in history if near(c, cap.days))
    if count >= cap.max:
        return f"fatigue cap reached: {count} of {cap.max} contacts within {cap.days} days"
    return None


def history_lookback(policy: ContactPolicySpec) -> timedelta:
    """How far back contact history matters for this policy, plus the scheduling horizon."""
    days = max(
        [policy.once_per_customer_days, policy.fatigue_cap.days]
        + [limit.days for limit in policy.channel_limits.values()]
    )
    return timedelta(days=days + HORIZON_DAYS, hours=policy.min_gap_hours)


def max_lookback(snapshot: CatalogSnapshot) -> timedelta:
    """The longest history any active frame's contact policy looks at."""
    return max(
        (history_lookback(f.spec.contact_policy) for f in snapshot.frames),
        default=timedelta(days=HORIZON_DAYS),
    )


# --- candidates ------------------------------------------------------------------------------


def frame_combinations(
    snapshot: CatalogSnapshot, frame: FrameVersion, language: str, health_class: str
) -> tuple[Combination, ...]:
    """Every combination of the frame for one language and health class.

    It depends only on the catalog, so a serving process computes it once per frame version,
    language and class; a request then only filters it by time, consent and contact policy.
    """
    spec = frame.spec
    channels = set(spec.channels)
    offers = spec.offers_by_health_class().get(health_class, [])
    combos = []
    for offer in offers:
        for text in snapshot.texts_for(offer, language):
            for channel in text.channels:
                if channel not in channels:
                    continue
                for slot in spec.send_times:
                    action_id = snapshot.actions.get(
                        action_signature(offer, text.key, channel, slot)
                    )
                    if action_id is not None:
                        line = action_line(
                            snapshot, offer=offer, text=text.key, channel=channel, send_time=slot
                        )
                        combos.append(
                            Combination(
                                action_id, offer, text.key, channel, slot, (channel, slot), line
                            )
                        )
    return tuple(combos)


def build_candidates(
    snapshot: CatalogSnapshot,
    *,
    frame: FrameVersion,
    customer: CustomerState,
    history: Sequence[PastContact],
    channels: Iterable[str],
    now: datetime,
    combinations: Sequence[Combination] | None = None,
) -> CandidateSet:
    """All combinations of `frame` this customer may receive now, and why others may not.

    `combinations` is `frame_combinations(snapshot, frame, language, health_class)` for the
    customer, passed in by callers that cache it.
    """
    spec = frame.spec
    trace: dict[str, str] = {}
    now_local = local_now(now, customer.time_zone or spec.time_zone)
    today = local_now(now, spec.time_zone).date()
    deliverable = set(channels)
    by_class = spec.offers_by_health_class()

    allowed_offers = by_class.get(customer.health_class, [])
    offers: set[str] = set()
    for key in dict.fromkeys(o for keys in by_class.values() for o in keys):
        offer = snapshot.offers[key]
        if key not in allowed_offers:
            trace[f"offer:{key}"] = f"not allowed for health class {customer.health_class}"
        elif (offer.valid_from and today < offer.valid_from) or (
            offer.valid_until and today > offer.valid_until
        ):
            trace[f"offer:{key}"] = f"not valid on {today.isoformat()}"
        elif offer.cost > spec.max_offer_cost:
            trace[f"offer:{key}"] = f"costs {offer.cost:g}, above max_offer_cost"
        elif not snapshot.texts_for(key, customer.language):
            trace[f"offer:{key}"] = f"no text in language {customer.language!r}"
        else:
            offers.add(key)

    usable_channels: list[str] = []
    for key in spec.channels:
        if key not in deliverable:
            trace[f"channel:{key}"] = "caller cannot deliver on this channel now"
        elif key not in customer.consented_channels:
            trace[f"channel:{key}"] = "no consent"
        else:
            usable_channels.append(key)

    # send time and contact policy per (channel, slot): they depend on nothing else
    timing: dict[tuple[str, str], datetime] = {}
    slot_reasons: dict[str, set[str]] = {}
    channel_reasons: dict[str, set[str]] = {}
    for channel_key in usable_channels:
        push = snapshot.channels[channel_key].kind is ChannelKind.push
        quiet = spec.contact_policy.quiet_hours if push else None
        for slot_key in spec.send_times:
            slot = snapshot.send_times[slot_key]
            moment = send_at(slot, now_local=now_local, quiet=quiet)
            reason: str | None
            if moment is None:
                reason = _no_send_time_reason(slot, now_local=now_local, quiet=quiet)
            else:
                reason = contact_policy_violation(
                    spec.contact_policy,
                    frame_key=frame.key,
                    channel=channel_key,
                    moment=moment,
                    history=history,
                )
            if reason is None and moment is not None:
                timing[(channel_key, slot_key)] = moment.replace(microsecond=0).astimezone(UTC)
            else:
                slot_reasons.setdefault(slot_key, set()).add(str(reason))
                channel_reasons.setdefault(channel_key, set()).add(str(reason))
    for channel_key in usable_channels:
        if not any(c == channel_key for c, _ in timing):
            trace[f"channel:{channel_key}"] = "; ".join(sorted(channel_reasons[channel_key]))
    for slot_key in spec.send_times:
        if usable_channels and not any(s == slot_key for _, s in timing):
            trace.setdefault(
                f"send_time:{slot_key}", "; ".join(sorted(slot_reasons.get(slot_key, set())))
            )

    if combinations is None:
        combinations = frame_combinations(snapshot, frame, customer.language, customer.health_class)
    if all(o in offers for o in allowed_offers):
        selected = tuple([c for c in combinations if c.timing_key in timing])
    else:
        selected = tuple([c for c in combinations if c.timing_key in timing and c.offer in offers])
    no_contact = snapshot.actions.get(NO_CONTACT) if spec.allow_no_contact else None
    return CandidateSet(
        frame=frame,
        combinations=selected,
        send_times=timing,
        no_contact_id=no_contact,
        trace=trace,
    )


def _no_send_time_reason(
    slot: SendTimeSpec, *, now_local: datetime, quiet: QuietHours | None
) -> str:
    if slot.kind is SendTimeKind.immediate:
        return "inside quiet hours"
    if quiet is not None and send_at(slot, now_local=now_local, quiet=None) is not None:
        return f"no time outside quiet hours within {HORIZON_DAYS} days"
    return f"no window within {HORIZON_DAYS} days"
