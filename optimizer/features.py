"""Featurisation: the one code path from a context and candidates to VW text lines.

Serving, online learning and offline replay all build examples here, so a feature hashes the same
everywhere (VW's text and JSON formats hash differently; mixing them silently breaks a model).
The context snapshot stored in the decision log is exactly what `shared_line` reads.
"""

from __future__ import annotations

import re
from collections.abc import Mapping
from datetime import datetime
from typing import TYPE_CHECKING, Any

from optimizer.core.catalog import CatalogSnapshot, split_signature

if TYPE_CHECKING:
    from optimizer.core.decision import CustomerState

_UNSAFE = re.compile(r"[\s|:]+")
NO_CONTACT_LINE = "|o no_contact"


def token(value: object) -> str:
    """A VW feature name: no whitespace, bar or colon."""
    return _UNSAFE.sub("_", str(value)) or "_"


def context_snapshot(
    *,
    customer: CustomerState,
    trigger: str,
    now_local: datetime,
    attributes: tuple[str, ...],
    extra: Mapping[str, Any] | None = None,
) -> dict[str, Any]:
    """The features a decision was made on, as plain JSON values for the decision log.

    Only whitelisted attributes are kept, from the customer profile or the request's context
    (`extra`, which wins); anything else is neither featurised nor stored.
    """
    merged = {**(customer.attributes or {}), **(extra or {})}
    return {
        "health_class": customer.health_class,
        "usage_index": round(float(customer.usage_index), 4),
        "tenure_days": None if customer.tenure_days is None else round(customer.tenure_days, 1),
        "language": customer.language,
        "trigger": trigger,
        "hour": now_local.hour,
        "weekday": now_local.weekday(),
        "attributes": {k: merged[k] for k in attributes if k in merged},
    }


def shared_line(context: Mapping[str, Any]) -> str:
    """The context's VW line: the health class in `c`, the customer's details (language, usage,
    tenure, whitelisted attributes) in `d`, the trigger in `t`, the request time in `h`.

    The details have a namespace of their own so that a policy can leave them out of its
    interactions: crossed with every offer, text and channel they are many weights to learn,
    and where they do not matter, noise. The self-tuning race decides whether they earn them.
    """
    parts = [
        "shared |c",
        f"hc_{token(context['health_class'])}",
        "|d",
        f"lang_{token(context.get('language', ''))}",
        f"usage:{float(context.get('usage_index') or 0.0):.4f}",
    ]
    tenure = context.get("tenure_days")
    if tenure is not None:
        parts.append(f"tenure:{float(tenure) / 365.0:.4f}")
    for name, value in sorted((context.get("attributes") or {}).items()):
        if isinstance(value, bool):
            if value:
                parts.append(token(name))
        elif isinstance(value, int | float):
            parts.append(f"{token(name)}:{float(value):.6g}")
        elif value is not None:
            parts.append(f"{token(name)}={token(value)}")
    hour, weekday = int(context.get("hour", 0)), int(context.get("weekday", 0))
    trigger = f"|t {token(context['trigger'])}"
    slot = context.get("slot")
    if slot is not None:  # a ranking's slot: crossed with the offer (`to`), learned per slot
        trigger += f" slot{int(slot)}"
    parts += [trigger, f"|h h{hour} wd{weekday} we{int(weekday >= 5)}"]
    return " ".join(parts)


def action_line(
    snapshot: CatalogSnapshot,
    *,
    offer: str | None,
    text: str | None,
    channel: str | None,
    send_time: str | None,
) -> str:
    """Features of one combination; `no_contact` has only its offer namespace."""
    if offer is None:
        return NO_CONTACT_LINE
    block = snapshot.offers.get(offer)
    offer_features = f"|o {token(offer)}"
    if block is not None:
        offer_features += f" kind_{block.kind.value} cost:{block.cost / 10.0:.4f}"
    text_block = snapshot.texts.get(text or "")
    tone = f" tone_{token(text_block.tone)}" if text_block is not None else ""
    channel_block = snapshot.channels.get(channel or "")
    kind = f" {channel_block.kind.value}" if channel_block is not None else ""
    slot_block = snapshot.send_times.get(send_time or "")
    slot_kind = f" {slot_block.kind.value}" if slot_block is not None else ""
    return (
        f"{offer_features} |x {token(text)}{tone} |n {token(channel)}{kind}"
        f" |s {token(send_time)}{slot_kind}"
    )


class ActionLines:
    """Action lines by action id for one catalog snapshot (built once, reused every request)."""

    def __init__(self, snapshot: CatalogSnapshot) -> None:
        self._snapshot = snapshot
        self._blocks = {action_id: sig for sig, action_id in snapshot.actions.items()}
        self._lines: dict[int, str] = {}

    def __getitem__(self, action_id: int) -> str:
        line = self._lines.get(action_id)
        if line is None:
            offer, text, channel, send_time = split_signature(self._blocks[action_id])
            line = action_line(
                self._snapshot, offer=offer, text=text, channel=channel, send_time=send_time
            )
            self._lines[action_id] = line
        return line
