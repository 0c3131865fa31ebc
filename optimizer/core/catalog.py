"""The catalog file format: building blocks and decision frames as validated data.

A marketer writes YAML; these models say what is valid. Field checks live here, checks across
blocks (references, costs against frames, texts against channels) in `cross_check`. Both report
a `loc` path such as `("frames", 1, "max_offer_cost")`, which `campaign_db.catalog` turns into a
file name and line.
"""

from __future__ import annotations

import re
import zoneinfo
from collections.abc import Iterable
from dataclasses import dataclass, field
from datetime import date, datetime
from functools import cache, cached_property
from typing import Annotated, Any, Literal, Self

import pycountry
from pydantic import (
    AfterValidator,
    BaseModel,
    BeforeValidator,
    ConfigDict,
    Field,
    field_serializer,
    model_validator,
)

from optimizer.core.policy_spec import ExplorationSpec, PolicySpec
from optimizer.core.values import (
    ChannelKind,
    HealthClass,
    OfferKind,
    RewardDefinition,
    SendTimeKind,
)

Loc = tuple[str | int, ...]

KEY_PATTERN = r"^[a-z][a-z0-9_]{0,63}$"
Key = Annotated[str, Field(pattern=KEY_PATTERN)]


def _sexagesimal_to_clock(value: Any) -> Any:
    """YAML 1.1 reads an unquoted `21:30` as the integer 1290; turn it back into `"21:30"`."""
    if isinstance(value, int) and not isinstance(value, bool) and 0 <= value < 24 * 60:
        return f"{value // 60:02d}:{value % 60:02d}"
    return value


def _check_clock(value: str) -> str:
    match = re.fullmatch(r"(\d{1,2}):(\d{2})", value)
    if not match or int(match.group(1)) > 24 or int(match.group(2)) > 59:
        raise ValueError(f"{value!r} is not a time of day HH:MM")
    hours, minutes = int(match.group(1)), int(match.group(2))
    if hours == 24 and minutes:
        raise ValueError(f"{value!r} is not a time of day HH:MM")
    return f"{hours:02d}:{minutes:02d}"


def _check_month_day(value: str) -> str:
    match = re.fullmatch(r"(\d{2})-(\d{2})", value)
    if not match:
        raise ValueError(f"{value!r} is not a month and day MM-DD")
    try:
        date(2024, int(match.group(1)), int(match.group(2)))
    except ValueError:
        raise ValueError(f"{value!r} is not a day of the year") from None
    return value


Clock = Annotated[str, BeforeValidator(_sexagesimal_to_clock), AfterValidator(_check_clock)]
MonthDay = Annotated[str, AfterValidator(_check_month_day)]
Share = Annotated[float, Field(ge=0.0, le=1.0)]


@cache
def _time_zones() -> frozenset[str]:
    return frozenset(zoneinfo.available_timezones())


def time_zones() -> frozenset[str]:
    """The IANA names `check_time_zone` accepts."""
    return _time_zones()


@cache
def languages() -> list[str]:
    """The ISO 639-1 codes `check_language` accepts (it also takes them in capitals)."""
    return sorted(lang.alpha_2 for lang in pycountry.languages if hasattr(lang, "alpha_2"))


def check_time_zone(value: str) -> str:
    if value not in _time_zones():
        raise ValueError(f"unknown time zone {value!r} (use an IANA name such as Europe/Berlin)")
    return value


def check_language(value: str) -> str:
    if len(value) != 2 or pycountry.languages.get(alpha_2=value.lower()) is None:
        raise ValueError(f"unknown language {value!r} (use an ISO 639-1 code such as de or en)")
    return value.lower()


def check_currency(value: str) -> str:
    if pycountry.currencies.get(alpha_3=value.upper()) is None:
        raise ValueError(f"unknown currency {value!r} (use an ISO 4217 code such as EUR)")
    return value.upper()


TimeZone = Annotated[str, AfterValidator(check_time_zone)]
Language = Annotated[str, AfterValidator(check_language)]
Currency = Annotated[str, AfterValidator(check_currency)]


class _Spec(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)


# --- building blocks -------------------------------------------------------------------------


class TriggerSpec(_Spec):
    key: Key
    name: str = Field(min_length=1, max_length=200)
    description: str = ""
    health_from: HealthClass | None = None
    health_to: HealthClass | None = None

    @model_validator(mode="after")
    def _health_change_worsens(self) -> Self:
        if (self.health_from is None) != (self.health_to is None):
            raise ValueError("health_from and health_to go together")
        if self.health_from and self.health_to and self.health_to.rank <= self.health_from.rank:
            raise ValueError("a health trigger must go to a worse class (A best … D worst)")
        return self


class ChannelSpec(_Spec):
    key: Key
    name: str = Field(min_length=1, max_length=200)
    kind: ChannelKind
    max_length: int | None = Field(default=None, gt=0)
    supports_subject: bool = False
    supports_image: bool = False


class SendTimeSpec(_Spec):
    """`immediate` (as soon as allowed), a weekly `slot`, or an `occasion` in the year."""

    key: Key
    name: str = Field(min_length=1, max_length=200)
    kind: SendTimeKind
    weekdays: list[Annotated[int, Field(ge=0, le=6)]] | None = None
    start: Clock | None = None
    end: Clock | None = None
    occasion_start: MonthDay | None = None
    occasion_end: MonthDay | None = None

    @model_validator(mode="after")
    def _fields_fit_kind(self) -> Self:
        if self.kind is SendTimeKind.immediate:
            if any((self.weekdays, self.start, self.end, self.occasion_start)):
                raise ValueError("an immediate send time takes no window")
            return self
        if self.start is None or self.end is None:
            raise ValueError(f"a {self.kind.value} send time needs start and end (HH:MM)")
        if self.start >= self.end:
            raise ValueError(f"start {self.start} must be before end {self.end}")
        if self.kind is SendTimeKind.slot:
            if not self.weekdays:
                raise ValueError("a slot needs weekdays (0 = Monday … 6 = Sunday)")
            if self.occasion_start or self.occasion_end:
                raise ValueError("a slot takes no occasion dates; use kind: occasion")
        if self.kind is SendTimeKind.occasion and not (self.occasion_start and self.occasion_end):
            raise ValueError("an occasion needs occasion_start and occasion_end (MM-DD)")
        return self


class OfferSpec(_Spec):
    key: Key
    name: str = Field(min_length=1, max_length=200)
    description: str = ""
    kind: OfferKind
    cost: float = Field(default=0.0, ge=0.0, allow_inf_nan=False)
    value: float = Field(default=0.0, ge=0.0, allow_inf_nan=False)
    currency: Currency = "EUR"
    valid_from: date | None = None
    valid_until: date | None = None
    attributes: dict[str, str | int | float | bool] = Field(default_factory=dict)

    @model_validator(mode="after")
    def _validity_ordered(self) -> Self:
        if self.valid_from and self.valid_until and self.valid_until < self.valid_from:
            raise ValueError("valid_until is before valid_from")
        return self


class TextSpec(_Spec):
    key: Key
    offer: Key
    language: Language
    channels: list[Key] = Field(min_length=1)
    tone: str = Field(default="neutral", max_length=32)
    subject: str | None = None
    body: str = Field(min_length=1)
    image_url: str | None = None

    @model_validator(mode="after")
    def _channels_unique(self) -> Self:
        if len(set(self.channels)) != len(self.channels):
            raise ValueError("a channel is listed twice")
        return self


# --- decision frames -------------------------------------------------------------------------


class Limit(_Spec):
    max: int = Field(ge=1)
    days: int = Field(ge=1, le=366)


class QuietHours(_Spec):
    """No push contact between `start` and `end` local time; the window may wrap midnight."""

    start: Clock
    end: Clock


class ImpressionLimit(_Spec):
    """On a pull channel: the same offer shown to a customer at most `same_offer` times within
    `days`. An impression is not a contact: it counts against no push cap."""

    same_offer: int = Field(ge=1)
    days: int = Field(default=1, ge=1, le=366)


class ContactPolicySpec(_Spec):
    once_per_customer_days: int = Field(default=30, ge=1, le=3660)
    channel_limits: dict[Key, Limit] = Field(default_factory=dict)
    fatigue_cap: Limit = Limit(max=4, days=30)
    min_gap_hours: float = Field(default=24.0, ge=0.0, le=24 * 90)
    quiet_hours: QuietHours | None = QuietHours(start="21:00", end="08:00")
    impression_limits: dict[Key, ImpressionLimit] = Field(default_factory=dict)
    """Per pull channel (a channel block of kind `pull`), how often one offer may be shown."""


class GuardrailSpec(_Spec):
    max_unsubscribe_rate: Share = 0.02
    max_complaint_rate: Share = 0.005
    max_offer_cost_per_decision: float = Field(default=10.0, ge=0.0)
    max_conversion_drop: Share = 0.2
    min_decisions: int = Field(default=500, ge=1)
    max_harm_per_decision: float | None = Field(default=None, ge=0.0, allow_inf_nan=False)
    """The most harm (`attribution.harm`) a promoted policy may cost per decision; None
    reports the estimate without a limit."""


HarmCost = Annotated[float, Field(ge=0.0, le=1000.0, allow_inf_nan=False)]


class HarmSpec(_Spec):
    """What a contact's harm costs, in the reward's own units (a conversion is 1 in a `binary`
    frame), subtracted from its reward when the window closes.

    An unsubscribe or complaint within the window loses a channel or goodwill that later
    campaigns would have used; `contact` prices contact pressure: every contact sent costs it,
    so the policy contacts only where it expects to earn more than the pressure costs.
    """

    unsubscribe: HarmCost = 0.0
    complaint: HarmCost = 0.0
    contact: HarmCost = 0.0

    @property
    def most(self) -> float:
        """The largest harm one decision can carry: all three at once."""
        return self.unsubscribe + self.complaint + self.contact

    def of(self, *, contacted: bool, unsubscribed: bool, complained: bool) -> float:
        """The harm one decision's outcome carries (0 for a decision without a contact)."""
        if not contacted:
            return 0.0
        return (
            self.contact
            + (self.unsubscribe if unsubscribed else 0.0)
            + (self.complaint if complained else 0.0)
        )


class AttributionSpec(_Spec):
    """How conversions become rewards: within `window_days` after sending, last touch wins.

    `binary` rewards are 0 or 1; `value_minus_cost` rewards are the conversion value minus the
    offer cost, bounded by `max_value` so that one odd value cannot swamp the learner. `harm`
    subtracts the frame's price for unsubscribes, complaints and contact pressure from either.
    """

    window_days: int = Field(default=14, ge=1, le=90)
    reward: RewardDefinition = RewardDefinition.binary
    rule: Literal["last_touch"] = "last_touch"
    max_value: float = Field(default=1000.0, gt=0.0, allow_inf_nan=False)
    harm: HarmSpec = HarmSpec()

    def reward_range(self, max_offer_cost: float) -> tuple[float, float]:
        if self.reward is RewardDefinition.binary:
            return (-self.harm.most, 1.0)
        return (-max_offer_cost - self.harm.most, self.max_value)


class ApprovalSpec(_Spec):
    approved_by: str = Field(min_length=1, max_length=200)
    approved_at: datetime

    @model_validator(mode="after")
    def _aware(self) -> Self:
        if self.approved_at.tzinfo is None:
            raise ValueError("approved_at needs a time zone, e.g. 2026-11-01T09:00:00Z")
        return self


class SafeDefaultSpec(_Spec):
    """What the frame falls back to when its guardrails trip: one combination, or no contact."""

    offer: Key | None = None
    channel: Key | None = None
    send_time: Key | None = None


class MirrorSpec(_Spec):
    """A push contact's offer shown in these pull channels for `days` after it is sent."""

    channels: list[Key] = Field(min_length=1)
    days: int = Field(ge=1, le=90)


class BudgetSpec(_Spec):
    """A limit across customers: at most `limit` contacts (`measure: count`) or `limit` of offer
    cost (`measure: cost`) per `period` (`day`, `week` from Monday, calendar `month`, in the
    frame's time zone). `offer` and `channel` narrow what counts; without either, every contact
    of the frame counts. A contact counts in the period in which it is decided, because that is
    when it is reserved and the spend committed."""

    key: Key
    measure: Literal["count", "cost"] = "count"
    limit: float = Field(gt=0.0, allow_inf_nan=False)
    period: Literal["day", "week", "month"]
    offer: Key | None = None
    channel: Key | None = None
    traffic: list[Annotated[float, Field(ge=0.0, allow_inf_nan=False)]] | None = None
    """24 weights, one per local hour (00-01 … 23-24): the plan spends the budget as the traffic
    comes, the same profile every day of the period. Without it the plan is linear in time."""

    @model_validator(mode="after")
    def _whole_count(self) -> Self:
        if self.measure == "count" and self.limit != int(self.limit):
            raise ValueError(f"limit: a count budget takes a whole number, got {self.limit:g}")
        if self.traffic is not None and (len(self.traffic) != 24 or sum(self.traffic) <= 0):
            raise ValueError("traffic: 24 hourly weights (00-01 … 23-24), not all 0")
        return self

    @property
    def scope(self) -> str:
        parts = [f"offer {self.offer}"] if self.offer else []
        parts += [f"channel {self.channel}"] if self.channel else []
        return ", ".join(parts) or "the frame"

    def covers(self, offer: str, channel: str) -> bool:
        """Whether a contact with this offer on this channel counts against the budget."""
        return (self.offer is None or self.offer == offer) and (
            self.channel is None or self.channel == channel
        )

    def charge(self, offer_cost: float) -> float:
        """What one contact that counts spends of the budget."""
        return 1.0 if self.measure == "count" else offer_cost


class FrameSpec(_Spec):
    """One campaign's approved envelope.

    `time_zone` is where the validity dates are read, and the zone assumed for a customer whose
    own time zone is unknown.
    """

    key: Key
    name: str = Field(min_length=1, max_length=200)
    description: str = ""
    triggers: list[Key] = Field(min_length=1)
    priority: int = 0
    health_classes: list[HealthClass] = Field(min_length=1)
    offers: list[Key] | dict[HealthClass, list[Key]]
    channels: list[Key] = Field(min_length=1)
    send_times: list[Key] = Field(min_length=1)
    allow_no_contact: bool = True
    max_offer_cost: float = Field(ge=0.0, allow_inf_nan=False)
    valid_from: date
    valid_until: date | None = None
    time_zone: TimeZone = "Europe/Berlin"
    contact_policy: ContactPolicySpec = ContactPolicySpec()
    exploration: ExplorationSpec = ExplorationSpec()
    guardrails: GuardrailSpec = GuardrailSpec()
    holdout_share: float = Field(default=0.05, ge=0.0, le=0.5)
    attribution: AttributionSpec = AttributionSpec()
    safe_default: SafeDefaultSpec | None = None
    mirror: MirrorSpec | None = None
    """Where and how long a push contact of this frame is mirrored into pull channels."""
    budgets: list[BudgetSpec] = Field(default_factory=list)
    """Limits across customers (`BudgetSpec`), enforced on every decision and paced."""
    policy: PolicySpec | None = None
    """The frame's own policy settings; unnamed settings take the frame's key as the name."""
    approval: ApprovalSpec | None = None

    @model_validator(mode="after")
    def _consistent(self) -> Self:
        if self.valid_until and self.valid_until < self.valid_from:
            raise ValueError("valid_until is before valid_from")
        if isinstance(self.offers, dict):
            extra = set(self.offers) - set(self.health_classes)
            if extra:
                names = ", ".join(sorted(extra))
                raise ValueError(f"offers for health classes the frame does not serve: {names}")
            missing = set(self.health_classes) - set(self.offers)
            if missing:
                raise ValueError(f"no offers for health classes {', '.join(sorted(missing))}")
        if self.guardrails.max_harm_per_decision is not None and self.attribution.harm.most == 0:
            raise ValueError(
                "guardrails.max_harm_per_decision limits the harm that attribution.harm prices: "
                "set attribution.harm costs, or drop the limit"
            )
        keys = [budget.key for budget in self.budgets]
        twice = sorted({key for key in keys if keys.count(key) > 1})
        if twice:
            raise ValueError(f"budgets: key {', '.join(twice)} is used twice")
        return self

    @field_serializer("policy")
    def _policy_as_written(self, policy: PolicySpec | None) -> dict[str, Any] | None:
        """Store only the settings the catalog names, so a frame's content (and its version)
        does not change when a default does."""
        return None if policy is None else policy.model_dump(mode="json", exclude_unset=True)

    def policy_spec(self) -> PolicySpec:
        """The policy this frame serves: its settings, named after the frame unless named."""
        if self.policy is None:
            return PolicySpec(name=self.key)
        if "name" in self.policy.model_fields_set:
            return self.policy
        return self.policy.model_copy(update={"name": self.key})

    def offers_by_health_class(self) -> dict[str, list[str]]:
        if isinstance(self.offers, dict):
            return {hc.value: list(keys) for hc, keys in sorted(self.offers.items())}
        return {hc.value: list(self.offers) for hc in sorted(self.health_classes)}

    def offer_locations(self) -> list[tuple[str, Loc]]:
        """Every offer key the frame names, with where it stands in the frame."""
        if isinstance(self.offers, dict):
            return [
                (key, ("offers", hc.value, i))
                for hc, keys in self.offers.items()
                for i, key in enumerate(keys)
            ]
        return [(key, ("offers", i)) for i, key in enumerate(self.offers)]


class CatalogSpec(_Spec):
    triggers: list[TriggerSpec] = Field(default_factory=list)
    channels: list[ChannelSpec] = Field(default_factory=list)
    send_times: list[SendTimeSpec] = Field(default_factory=list)
    offers: list[OfferSpec] = Field(default_factory=list)
    texts: list[TextSpec] = Field(default_factory=list)
    frames: list[FrameSpec] = Field(default_factory=list)


SECTIONS: tuple[str, ...] = tuple(CatalogSpec.model_fields)


def cross_check(catalog: CatalogSpec) -> list[tuple[Loc, str]]:
    """Checks across blocks: unique keys, references, costs and texts that fit their channels."""
    problems: list[tuple[Loc, str]] = []
    index: dict[str, dict[str, Any]] = {}
    for section in SECTIONS:
        seen: dict[str, int] = {}
        for i, block in enumerate(getattr(catalog, section)):
            if block.key in seen:
                problems.append(
                    (
                        (section, i, "key"),
                        f"duplicate key {block.key!r} (first at index {seen[block.key]})",
                    )
                )
            else:
                seen[block.key] = i
        index[section] = {block.key: block for block in getattr(catalog, section)}

    def ref(loc: Loc, section: str, key: str, what: str) -> Any:
        block = index[section].get(key)
        if block is None:
            problems.append((loc, f"unknown {what} {key!r}"))
        return block

    for i, text in enumerate(catalog.texts):
        ref(("texts", i, "offer"), "offers", text.offer, "offer")
        for j, channel_key in enumerate(text.channels):
            channel = ref(("texts", i, "channels", j), "channels", channel_key, "channel")
            if channel is None:
                continue
            if channel.max_length is not None and len(text.body) > channel.max_length:
                problems.append(
                    (
                        ("texts", i, "channels", j),
                        f"text does not fit channel {channel_key!r}: body has {len(text.body)} "
                        f"characters, the channel allows {channel.max_length}",
                    )
                )
            if text.subject and not channel.supports_subject:
                problems.append(
                    (
                        ("texts", i, "channels", j),
                        f"text does not fit channel {channel_key!r}: it has a subject, "
                        "the channel has none",
                    )
                )
            if text.image_url and not channel.supports_image:
                problems.append(
                    (
                        ("texts", i, "channels", j),
                        f"text does not fit channel {channel_key!r}: it has an image, "
                        "the channel shows none",
                    )
                )

    for i, frame in enumerate(catalog.frames):
        for j, trigger in enumerate(frame.triggers):
            ref(("frames", i, "triggers", j), "triggers", trigger, "trigger")
        for offer_key, loc in frame.offer_locations():
            offer = ref(("frames", i, *loc), "offers", offer_key, "offer")
            if offer is not None and offer.cost > frame.max_offer_cost:
                problems.append(
                    (
                        ("frames", i, *loc),
                        f"offer {offer_key!r} costs {offer.cost:g}, above the frame's "
                        f"max_offer_cost {frame.max_offer_cost:g}",
                    )
                )
        for j, channel_key in enumerate(frame.channels):
            ref(("frames", i, "channels", j), "channels", channel_key, "channel")
        for j, send_time in enumerate(frame.send_times):
            ref(("frames", i, "send_times", j), "send_times", send_time, "send time")
        for channel_key in frame.contact_policy.impression_limits:
            loc = ("frames", i, "contact_policy", "impression_limits", channel_key)
            block = index["channels"].get(channel_key)
            if channel_key not in frame.channels:
                problems.append(
                    (
                        loc,
                        f"impression limit for channel {channel_key!r}, not a frame channel",
                    )
                )
            elif block is not None and block.kind is not ChannelKind.pull:
                problems.append(
                    (
                        loc,
                        f"impression limit for push channel {channel_key!r} (use channel_limits)",
                    )
                )
        for j, channel_key in enumerate(frame.mirror.channels if frame.mirror else []):
            block = index["channels"].get(channel_key)
            if channel_key not in frame.channels:
                problems.append(
                    (
                        ("frames", i, "mirror", "channels", j),
                        f"mirror channel {channel_key!r} is not a channel of the frame",
                    )
                )
            elif block is not None and block.kind is not ChannelKind.pull:
                problems.append(
                    (
                        ("frames", i, "mirror", "channels", j),
                        f"mirror channel {channel_key!r} is a push channel (mirror into pull)",
                    )
                )
        for channel_key in frame.contact_policy.channel_limits:
            if channel_key not in frame.channels:
                problems.append(
                    (
                        ("frames", i, "contact_policy", "channel_limits", channel_key),
                        f"limit for channel {channel_key!r}, which the frame does not use",
                    )
                )
        frame_offers = {key for key, _ in frame.offer_locations()}
        for j, budget in enumerate(frame.budgets):
            if budget.offer is not None and budget.offer not in frame_offers:
                problems.append(
                    (
                        ("frames", i, "budgets", j, "offer"),
                        f"budget {budget.key!r} counts offer {budget.offer!r}, "
                        "which the frame does not offer",
                    )
                )
            if budget.channel is not None and budget.channel not in frame.channels:
                problems.append(
                    (
                        ("frames", i, "budgets", j, "channel"),
                        f"budget {budget.key!r} counts channel {budget.channel!r}, "
                        "which the frame does not use",
                    )
                )
            if budget.measure == "cost" and budget.offer is not None:
                offer = index["offers"].get(budget.offer)
                if offer is not None and offer.cost <= 0:
                    problems.append(
                        (
                            ("frames", i, "budgets", j, "measure"),
                            f"cost budget {budget.key!r} on offer {budget.offer!r}, which costs "
                            "nothing: it would never be spent (use measure: count)",
                        )
                    )
        default = frame.safe_default
        if default is not None:
            allowed_offers = {key for key, _ in frame.offer_locations()}
            for field, allowed in (
                ("offer", allowed_offers),
                ("channel", set(frame.channels)),
                ("send_time", set(frame.send_times)),
            ):
                value = getattr(default, field)
                if value is not None and value not in allowed:
                    problems.append(
                        (
                            ("frames", i, "safe_default", field),
                            f"safe default {field} {value!r} is not allowed by the frame",
                        )
                    )
    return problems


def _clock_minutes(value: str) -> int:
    hours, minutes = (int(p) for p in value.split(":"))
    return hours * 60 + minutes


def _quiet_minutes(quiet: QuietHours | None) -> int:
    if quiet is None:
        return 0
    start, end = _clock_minutes(quiet.start), _clock_minutes(quiet.end)
    return (end - start) % (24 * 60)


def frame_widenings(old: FrameSpec, new: FrameSpec) -> list[str]:
    """How `new` lets the optimizer do more than `old` did; empty if it only narrows.

    Widening needs a manager's approval; narrowing may take effect at once. Changes to what is
    rewarded (attribution, reward definition) or to the safe default count as widening too.
    """
    out: list[str] = []

    def more(label: str, before: object, after: object) -> None:
        out.append(f"{label}: {before} -> {after}")

    added = set(new.health_classes) - set(old.health_classes)
    if added:
        more("health classes", "+", ", ".join(sorted(added)))
    for trigger in sorted(set(new.triggers) - set(old.triggers)):
        more("triggers", "+", trigger)
    old_offers, new_offers = old.offers_by_health_class(), new.offers_by_health_class()
    for hc, offers in sorted(new_offers.items()):
        extra = set(offers) - set(old_offers.get(hc, []))
        if extra:
            more(f"offers for class {hc}", "+", ", ".join(sorted(extra)))
    for name, label in (("channels", "channels"), ("send_times", "send times")):
        extra = set(getattr(new, name)) - set(getattr(old, name))
        if extra:
            more(label, "+", ", ".join(sorted(extra)))
    if new.max_offer_cost > old.max_offer_cost:
        more("max_offer_cost", old.max_offer_cost, new.max_offer_cost)
    if new.allow_no_contact is False and old.allow_no_contact is True:
        more("allow_no_contact", True, False)
    if new.holdout_share < old.holdout_share:
        more("holdout_share", old.holdout_share, new.holdout_share)
    if new.valid_from < old.valid_from:
        more("valid_from", old.valid_from, new.valid_from)
    if old.valid_until is not None and (
        new.valid_until is None or new.valid_until > old.valid_until
    ):
        more("valid_until", old.valid_until, new.valid_until)

    a, b = old.contact_policy, new.contact_policy
    if b.once_per_customer_days < a.once_per_customer_days:
        more("once_per_customer_days", a.once_per_customer_days, b.once_per_customer_days)
    if b.min_gap_hours < a.min_gap_hours:
        more("min_gap_hours", a.min_gap_hours, b.min_gap_hours)
    if _quiet_minutes(b.quiet_hours) < _quiet_minutes(a.quiet_hours):
        more("quiet hours (minutes)", _quiet_minutes(a.quiet_hours), _quiet_minutes(b.quiet_hours))
    for label, old_limit, new_limit in [("fatigue_cap", a.fatigue_cap, b.fatigue_cap)] + [
        (f"channel_limits.{ch}", limit, b.channel_limits.get(ch))
        for ch, limit in sorted(a.channel_limits.items())
    ]:
        if new_limit is None:
            more(label, f"{old_limit.max}/{old_limit.days}d", "no limit")
        elif new_limit.max / new_limit.days > old_limit.max / old_limit.days or (
            new_limit.max > old_limit.max
        ):
            more(label, f"{old_limit.max}/{old_limit.days}d", f"{new_limit.max}/{new_limit.days}d")

    for channel, old_cap in sorted(a.impression_limits.items()):
        new_cap = b.impression_limits.get(channel)
        label = f"impression_limits.{channel}"
        if new_cap is None:
            more(label, f"{old_cap.same_offer}/{old_cap.days}d", "no limit")
        elif new_cap.same_offer > old_cap.same_offer or (
            new_cap.same_offer / new_cap.days > old_cap.same_offer / old_cap.days
        ):
            more(
                label,
                f"{old_cap.same_offer}/{old_cap.days}d",
                f"{new_cap.same_offer}/{new_cap.days}d",
            )

    e, f = old.exploration, new.exploration
    if f.max_epsilon > e.max_epsilon:
        more("exploration.max_epsilon", e.max_epsilon, f.max_epsilon)
    if f.min_probability_share > e.min_probability_share:
        more("exploration.min_probability_share", e.min_probability_share, f.min_probability_share)
    extra_algorithms = set(f.algorithms) - set(e.algorithms)
    if extra_algorithms:
        more("exploration.algorithms", "+", ", ".join(sorted(extra_algorithms)))

    g, h = old.guardrails, new.guardrails
    for name in (
        "max_unsubscribe_rate",
        "max_complaint_rate",
        "max_offer_cost_per_decision",
        "max_conversion_drop",
        "min_decisions",
    ):
        if getattr(h, name) > getattr(g, name):
            more(f"guardrails.{name}", getattr(g, name), getattr(h, name))
    if g.max_harm_per_decision is not None and (
        h.max_harm_per_decision is None or h.max_harm_per_decision > g.max_harm_per_decision
    ):
        more("guardrails.max_harm_per_decision", g.max_harm_per_decision, h.max_harm_per_decision)
    if new.attribution != old.attribution:
        more(
            "attribution",
            old.attribution.model_dump(mode="json"),
            new.attribution.model_dump(mode="json"),
        )
    if new.mirror is not None and (
        old.mirror is None
        or new.mirror.days > old.mirror.days
        or set(new.mirror.channels) - set(old.mirror.channels)
    ):
        more("mirror", old.mirror, new.mirror)
    if new.safe_default != old.safe_default:
        more("safe_default", old.safe_default, new.safe_default)
    out += _budget_widenings(old.budgets, new.budgets)
    return out


def _budget_widenings(old: list[BudgetSpec], new: list[BudgetSpec]) -> list[str]:
    """A budget removed, raised, or changed in what it counts or how widens the frame; a new
    budget or a lower limit narrows it."""
    out: list[str] = []
    after = {budget.key: budget for budget in new}
    for budget in old:
        now = after.get(budget.key)
        label = f"budgets.{budget.key}"
        if now is None:
            out.append(f"{label}: {budget.limit:g} per {budget.period} -> no budget")
        elif (now.measure, now.period, now.offer, now.channel) != (
            budget.measure,
            budget.period,
            budget.offer,
            budget.channel,
        ):
            out.append(
                f"{label}: {budget.measure} of {budget.scope} per {budget.period} -> "
                f"{now.measure} of {now.scope} per {now.period}"
            )
        elif now.limit > budget.limit:
            out.append(f"{label}: {budget.limit:g} -> {now.limit:g} per {budget.period}")
    return out


# --- combinations ------------------------------------------------------------------------

NO_CONTACT = "no_contact"


def action_signature(
    offer: str | None, text: str | None, channel: str | None, send_time: str | None
) -> str:
    if offer is None:
        return NO_CONTACT
    return f"{offer}|{text}|{channel}|{send_time}"


def split_signature(signature: str) -> tuple[str | None, str | None, str | None, str | None]:
    """The blocks of an action signature; all None for `no_contact`."""
    if signature == NO_CONTACT:
        return (None, None, None, None)
    offer, text, channel, send_time = signature.split("|")
    return (offer, text, channel, send_time)


def frame_actions(spec: FrameSpec, texts: Iterable[TextSpec]) -> list[tuple[str, str, str, str]]:
    """Every (offer, text, channel, send time) the frame can ever propose."""
    offers = {key for key, _ in spec.offer_locations()}
    channels = set(spec.channels)
    combos: list[tuple[str, str, str, str]] = []
    for text in texts:
        if text.offer not in offers:
            continue
        for channel in text.channels:
            if channel in channels:
                combos.extend((text.offer, text.key, channel, slot) for slot in spec.send_times)
    return combos


# --- the serving snapshot --------------------------------------------------------------------


@dataclass(frozen=True)
class FrameVersion:
    """A frame as it serves: its validated spec plus identity and lifecycle."""

    id: int
    key: str
    version: int
    status: str
    spec: FrameSpec
    approved_by: str | None
    approved_at: datetime | None


@dataclass(frozen=True)
class CatalogSnapshot:
    """Everything the decision path reads from the catalog, as plain validated values."""

    revision: int | None
    triggers: dict[str, TriggerSpec]
    channels: dict[str, ChannelSpec]
    send_times: dict[str, SendTimeSpec]
    offers: dict[str, OfferSpec]
    texts: dict[str, TextSpec]
    frames: tuple[FrameVersion, ...]
    actions: dict[str, int]
    modes: dict[str, str] = field(default_factory=dict)
    """Frames not in normal mode (the kill switch puts a frame in `safe` mode)."""

    @cached_property
    def _texts_by_offer_language(self) -> dict[tuple[str, str], list[TextSpec]]:
        index: dict[tuple[str, str], list[TextSpec]] = {}
        for text in sorted(self.texts.values(), key=lambda t: t.key):
            index.setdefault((text.offer, text.language), []).append(text)
        return index

    def texts_for(self, offer: str, language: str) -> list[TextSpec]:
        """The texts of an offer in a language, by key."""
        return self._texts_by_offer_language.get((offer, language), [])

    def frames_for_trigger(self, trigger: str) -> list[FrameVersion]:
        """Active frames for a trigger, highest priority first."""
        found = [f for f in self.frames if trigger in f.spec.triggers]
        return sorted(found, key=lambda f: (-f.spec.priority, f.key))
