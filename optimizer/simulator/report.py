"""The demo's report: summary.json, an HTML page and its plots."""

from __future__ import annotations

import json
from collections import Counter, defaultdict
from collections.abc import Sequence
from datetime import timedelta
from pathlib import Path
from typing import Any

import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt
import numpy as np
from jinja2 import Environment, FileSystemLoader, select_autoescape

from optimizer.core.catalog import CatalogSnapshot, split_signature
from optimizer.ports.decision_logs import LoggedContact
from optimizer.simulator import metrics
from optimizer.simulator.reactions import action_costs, cost_limits
from optimizer.simulator.run import SimulationResult

TEMPLATES = Path(__file__).resolve().parent.parent / "templates"

ARM_LABELS = {
    "policy": "learning policy",
    "uniform": "uniform random",
    "best_fixed": "best fixed (A/B winner in hindsight; ignores cost limits)",
    "oracle_within_limits": "oracle within the frames' cost limits",
    "oracle": "oracle, unconstrained (best candidate each time)",
}
"""How the report names each arm of `summary["conversion_rate"]`."""


def summarize(
    result: SimulationResult,
    *,
    contacts: Sequence[LoggedContact],
    snapshot: CatalogSnapshot,
    runtime_seconds: float,
) -> dict[str, Any]:
    stats = result.stats
    n = len(stats.policy)
    rows = metrics.tail(n)
    arms = metrics.arm_values(stats, rows=rows)
    diff, low, high = metrics.uplift(result.contacted_converted, result.holdout_converted)
    policies = {f.key: f.spec.contact_policy for f in snapshot.frames}
    winners = metrics.best_fixed_per_frame(stats)
    over_limit = metrics.over_cost_limit(
        winners, costs=action_costs(snapshot), limits=cost_limits(snapshot)
    )
    return {
        "customers": result.config.customers,
        "days": result.config.days,
        "seed": result.config.seed,
        "decisions": result.decisions,
        "policy_decisions": n,
        "contacts": result.contacts,
        "unsubscribes": result.unsubscribes,
        "conversions": result.conversions,
        "learned": result.learned,
        "conversion_rate": {
            "policy": arms.policy,
            "uniform": arms.uniform,
            "best_fixed": arms.best_fixed,
            "oracle_within_limits": arms.oracle_within_limits,
            "oracle": arms.oracle,
        },
        "realised_conversion_rate": float(np.mean(stats.converted[rows])) if n else float("nan"),
        "expected_conversions": float(np.sum(stats.policy)),
        "expected_unsubscribes": float(np.sum(stats.unsubscribe_risk)),
        "lift_capture": arms.lift_capture,
        "lift_capture_unconstrained": arms.lift_capture_unconstrained,
        "beats_best_fixed": arms.policy > arms.best_fixed,
        "best_fixed_over_cost_limit": over_limit,
        "holdout_uplift": {"value": diff, "ci_low": low, "ci_high": high},
        "holdout_decisions": len(result.holdout_converted),
        "cap_violations": metrics.count_cap_violations(contacts, policies),
        "frames": frame_sections(result, snapshot),
        "published_versions": result.published_versions,
        "runtime_seconds": round(runtime_seconds, 1),
    }


def frame_sections(result: SimulationResult, snapshot: CatalogSnapshot) -> list[dict[str, Any]]:
    """Per frame, what a manager checks: volume, conversions, unsubscribes and spend against
    the frame's guardrails, and the lift its policy captured in its last 20 % of decisions."""
    stats = result.stats
    frames = np.asarray(stats.frame)
    chosen = np.asarray(stats.chosen, dtype=np.int64)
    contacted = np.asarray(stats.contacted, dtype=bool)
    unsubscribed = np.asarray(stats.unsubscribed, dtype=bool)
    converted = np.asarray(stats.converted, dtype=bool)
    cost = action_costs(snapshot)[chosen] if len(chosen) else np.zeros(0)
    out = []
    for frame in snapshot.frames:
        rows = np.flatnonzero(frames == frame.key)
        if not len(rows):
            continue
        limits = frame.spec.guardrails
        contacts = int(contacted[rows].sum())
        unsubscribes = int(unsubscribed[rows].sum())
        spend = float(cost[rows].sum())
        last = rows[metrics.tail(len(rows))]
        capture = metrics.lift_capture(
            float(np.mean(np.asarray(stats.policy)[last])),
            float(np.mean(np.asarray(stats.uniform)[last])),
            float(np.mean(np.asarray(stats.oracle_within_limits)[last])),
        )
        unsubscribe_rate = unsubscribes / contacts if contacts else None
        out.append(
            {
                "key": frame.key,
                "name": frame.spec.name,
                "decisions": len(rows),
                "contacts": contacts,
                "conversions": int(converted[rows].sum()),
                "unsubscribes": unsubscribes,
                "unsubscribe_rate": unsubscribe_rate,
                "max_unsubscribe_rate": limits.max_unsubscribe_rate,
                "unsubscribes_within_limit": unsubscribe_rate is None
                or unsubscribe_rate <= limits.max_unsubscribe_rate,
                "offer_spend": spend,
                "offer_cost_per_decision": spend / len(rows),
                "max_offer_cost_per_decision": limits.max_offer_cost_per_decision,
                "spend_within_limit": spend / len(rows) <= limits.max_offer_cost_per_decision,
                "lift_capture": None if np.isnan(capture) else capture,
            }
        )
    return out


def combination_name(signature: str, snapshot: CatalogSnapshot) -> str:
    """A combination as a marketer reads it: offer, channel and send time by their names, and
    the text's tone and language."""
    offer, text, channel, slot = split_signature(signature)
    if offer is None:
        return "no contact"
    parts = [
        snapshot.offers[offer].name if offer in snapshot.offers else offer,
        snapshot.channels[channel].name if channel in snapshot.channels else str(channel),
        snapshot.send_times[slot].name if slot in snapshot.send_times else str(slot),
    ]
    name = " · ".join(parts)
    if text in snapshot.texts:
        spec = snapshot.texts[text]
        name += f" ({spec.tone}, {spec.language})"
    return name


def winners_by_class(
    result: SimulationResult, snapshot: CatalogSnapshot, *, top: int = 3
) -> dict[str, list[dict[str, Any]]]:
    stats = result.stats
    rows = range(*metrics.tail(len(stats.policy)).indices(len(stats.policy)))
    signature = {action_id: sig for sig, action_id in snapshot.actions.items()}
    counts: dict[str, Counter[int]] = defaultdict(Counter)
    rates: dict[tuple[str, int], list[float]] = defaultdict(list)
    for r in rows:
        hc, chosen = stats.health_class[r], stats.chosen[r]
        counts[hc][chosen] += 1
        rates[(hc, chosen)].append(stats.policy[r])
    out = {}
    for hc in sorted(counts):
        total = sum(counts[hc].values())
        out[hc] = [
            {
                "name": combination_name(signature.get(action, "no_contact"), snapshot),
                "signature": signature.get(action, "?"),
                "share": count / total,
                "rate": float(np.mean(rates[(hc, action)])),
            }
            for action, count in counts[hc].most_common(top)
        ]
    return out


def _plot_over_time(result: SimulationResult, path: Path) -> None:
    stats = result.stats
    n = len(stats.policy)
    window = max(200, n // 40)
    best = metrics.best_fixed_values(stats, metrics.best_fixed_per_frame(stats))
    fig, ax = plt.subplots(figsize=(9, 4.5))
    for label, values, style in (
        ("oracle, unconstrained", stats.oracle, ":"),
        ("oracle within cost limits", stats.oracle_within_limits, (0, (1, 1))),
        ("learning policy", stats.policy, "-"),
        ("best fixed (A/B winner, ignores cost limits)", best, "--"),
        ("uniform random", stats.uniform, "-."),
    ):
        smooth = metrics.rolling(values, window)
        ax.plot(np.arange(len(smooth)) + window, smooth * 100, linestyle=style, label=label)
    ax.axvspan(metrics.tail(n).start, n, color="#d9e2ec", alpha=0.5, label="last 20 %")
    ax.set_xlabel("policy decisions")
    ax.set_ylabel(f"expected conversion rate, % (rolling {window})")
    ax.legend(loc="upper left")
    fig.tight_layout()
    fig.savefig(path, dpi=110)
    plt.close(fig)


def _plot_uplift(result: SimulationResult, path: Path) -> None:
    groups = [("contacted", result.contacted_converted), ("holdout", result.holdout_converted)]
    fig, ax = plt.subplots(figsize=(5, 4))
    for x, (label, outcomes) in enumerate(groups):
        rate = float(np.mean(outcomes)) if outcomes else 0.0
        se = float(np.sqrt(rate * (1 - rate) / max(len(outcomes), 1)))
        ax.bar(x, rate * 100, yerr=1.96 * se * 100, capsize=6, label=f"{label} (n={len(outcomes)})")
    ax.set_xticks([0, 1], [g[0] for g in groups])
    ax.set_ylabel("conversion rate, %")
    ax.legend()
    fig.tight_layout()
    fig.savefig(path, dpi=110)
    plt.close(fig)


def _plot_contacts(contacts: Sequence[LoggedContact], fatigue: int, days: int, path: Path) -> None:
    by_customer: dict[str, list[Any]] = defaultdict(list)
    for customer, _frame, _channel, send_at, _reserved, status in contacts:
        if status not in ("failed", "cancelled"):
            by_customer[customer].append(send_at)
    window = timedelta(days=days)
    busiest = []
    for times in by_customer.values():
        times.sort()
        busiest.append(max(sum(1 for u in times if t <= u < t + window) for t in times))
    fig, ax = plt.subplots(figsize=(6, 4))
    bins = [b + 0.5 for b in range(max([*busiest, fatigue]) + 1)]
    ax.hist(busiest, bins=bins, rwidth=0.8)
    ax.axvline(fatigue + 0.5, color="crimson", linestyle="--", label=f"fatigue cap ({fatigue})")
    ax.set_xlabel(f"most contacts of a customer in any {days} days")
    ax.set_ylabel("customers")
    ax.legend()
    fig.tight_layout()
    fig.savefig(path, dpi=110)
    plt.close(fig)


def write_report(
    result: SimulationResult,
    summary: dict[str, Any],
    *,
    contacts: Sequence[LoggedContact],
    snapshot: CatalogSnapshot,
    out: Path,
) -> Path:
    out.mkdir(parents=True, exist_ok=True)
    (out / "summary.json").write_text(json.dumps(summary, indent=2, default=str))
    _plot_over_time(result, out / "conversion_over_time.png")
    _plot_uplift(result, out / "holdout_uplift.png")
    caps = [f.spec.contact_policy.fatigue_cap for f in snapshot.frames]
    loosest = max(caps, key=lambda c: c.max)
    _plot_contacts(contacts, loosest.max, loosest.days, out / "contacts_per_customer.png")
    environment = Environment(
        loader=FileSystemLoader(TEMPLATES), autoescape=select_autoescape(["html", "j2"])
    )
    html = environment.get_template("demo_report.html.j2").render(
        summary=summary, winners=winners_by_class(result, snapshot), labels=ARM_LABELS
    )
    path = out / "report.html"
    path.write_text(html, encoding="utf-8")
    return path
