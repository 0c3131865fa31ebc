"""Does the ranking learn? Clicks of the learned rankings against the oracle's and uniform's.

The pull catalog of `benchmarks.ranking_latency` (one portal placement, 25 offers x 4 texts),
customers of four health classes, and position-based clicks: slot k showing offer o to a
customer of class h is clicked with probability examine[k] * attract[h, o]. Rankings are
planned by the serving code (`optimizer.ranking.plan_ranking`, three slots) and every slot's
click or no-click is learned as the online learner learns it (slot in the context, the
candidates left for the slot, the logged conditional probability). Every `--every` rankings the
expected clicks per ranking of the rankings served are compared: the lift over uniform rankings
as a share of the oracle's (the three most attractive offers, best first).

    python -m benchmarks.slate_learning [--rankings 20000] [--every 2000] [--seed 14]
"""

from __future__ import annotations

import argparse
import tempfile
import uuid
from datetime import UTC, datetime, timedelta
from pathlib import Path

import numpy as np
from rich.console import Console
from rich.table import Table

from benchmarks.ranking_latency import pull_catalog
from campaign_db import migrate
from campaign_db.catalog import SqlCatalogReader, load_catalog
from campaign_db.engine import create_engine_from_url, session_scope
from optimizer.core.catalog import CatalogSpec
from optimizer.core.decision import CustomerProfile, CustomerRecord
from optimizer.features import shared_line
from optimizer.policy import BanditPolicy
from optimizer.ranking import RankingAsk, plan_ranking
from optimizer.serving import CatalogCache

NOW = datetime(2026, 11, 23, 12, 0, tzinfo=UTC)
SLOTS = 3
OFFERS = 25
EXAMINE = np.array([1.0, 0.6, 0.4])


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--rankings", type=int, default=20_000)
    parser.add_argument("--every", type=int, default=2_000)
    parser.add_argument("--seed", type=int, default=14)
    args = parser.parse_args()
    rng = np.random.default_rng(args.seed)
    # each class likes a few offers: attraction 0.02-0.10, five of them 0.25-0.45
    attract = rng.uniform(0.02, 0.10, size=(4, OFFERS))
    for h in range(4):
        attract[h, rng.choice(OFFERS, size=5, replace=False)] = rng.uniform(0.25, 0.45, size=5)
    top = np.sort(attract, axis=1)[:, ::-1][:, :SLOTS]
    oracle = float((top * EXAMINE).sum(axis=1).mean())
    uniform = float(attract.mean(axis=1).mean() * EXAMINE.sum())

    with tempfile.TemporaryDirectory() as tmp:
        engine = create_engine_from_url(f"sqlite:///{Path(tmp) / 'bench.db'}")
        migrate.upgrade(engine)
        with session_scope(engine, write=True) as session:
            load_catalog(
                session,
                catalog=CatalogSpec.model_validate(pull_catalog()),
                source="bench",
                actor="bench",
            )
        cache = CatalogCache(SqlCatalogReader(engine), check_every_seconds=3600)
        snapshot, _ = cache.current()
        engine.dispose()
    frame = snapshot.frames[0]
    policy = BanditPolicy(frame.spec.policy_spec(), name=frame.key, version="bench")
    offer_index = {f"offer_{i}": i for i in range(OFFERS)}

    rows = []
    served: list[float] = []
    for i in range(args.rankings):
        h = int(rng.integers(4))
        profile = CustomerProfile(
            id=f"c{i}",
            health_class="ABCD"[h],
            usage_index=float(rng.random()),
            customer_since=None,
            time_zone="Europe/Berlin",
            language="en",
            attributes={},
        )
        now = NOW + timedelta(minutes=i)
        plan = plan_ranking(
            RankingAsk(f"r{i}", profile.id, "page_view", "portal", SLOTS),
            now=now,
            state=CustomerRecord(profile, frozenset({"portal"}), ()),
            snapshot=snapshot,
            policy_for=lambda _frame: policy,
            combinations=cache.combinations,
            ranking_id=uuid.UUID(int=int(rng.integers(2**63))),
        )
        entry = plan.write.entry
        expected = 0.0
        for pick in entry.slots:
            p_click = EXAMINE[pick.slot - 1] * attract[h, offer_index[pick.offer]]
            expected += p_click
            clicked = float(rng.random() < p_click)
            lines = [cache.current()[1][a] for a in pick.candidate_action_ids]
            policy.learn(
                shared_line({**entry.context, "slot": pick.slot}),
                lines,
                chosen=pick.candidate_action_ids.index(pick.action_id),
                reward=clicked,
                probability=pick.probability,
            )
        served.append(expected)
        if (i + 1) % args.every == 0:
            window = float(np.mean(served[-args.every :]))
            rows.append((i + 1, window, (window - uniform) / (oracle - uniform)))

    table = Table(
        title=f"learned rankings ({SLOTS} slots, {OFFERS} offers x 4 texts): expected clicks per "
        f"ranking; uniform {uniform:.4f}, oracle {oracle:.4f}"
    )
    for column in ("rankings learned", "clicks per ranking (last window)", "share of oracle lift"):
        table.add_column(column)
    for n, clicks, share in rows:
        table.add_row(f"{n:,}", f"{clicks:.4f}", f"{share:.1%}")
    Console().print(table)


if __name__ == "__main__":
    main()
