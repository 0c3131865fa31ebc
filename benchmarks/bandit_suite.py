"""Our policy against open-source peers on synthetic contextual-bandit environments.

Every (environment, seed) job builds one `benchmarks.environments.Environment` and plays every
learner on it in turn, so all learners see the same contexts and the same pre-drawn uniforms. A
learner chooses one action per round; the reward of round t becomes learnable at round t + D
(`delay` variant, D = 500; rewards maturing after the horizon are never learned) or right after
the choice (otherwise), and learners learn in arrival order.

Learners:
- `ours`: `BanditPolicy(PolicySpec(name="suite", **--spec))` with the service's default frame
  floor share (its `max_epsilon` while the policy's drift test says it is drifting), on VW text
  lines `shared |c f0:.. f4:..` and `|o a<id> g0:.. g4:..`; `--variant NAME=JSON` adds more of
  our specs as rows `ours:NAME`.
- `vw-defaults`: VW's own squarecb defaults plus the one interaction (`-q co`) without which no
  context can matter, sampled from its pmf with a seeded generator.
- `linucb`, `lints`: MABWiser, disjoint per arm on the context vector (arms = action ids), fitted
  on the first batch of rewards and then `partial_fit`. They update every round at K <= 9; at
  larger K every K // 10 rounds (partial_fit costs about 0.1 ms per arm), scoring the rounds of a
  block with the model fitted at its start.
- `uniform`: uniform random (observed rewards); `oracle`: max_a mu(x_t, a) (expected).

    python -m benchmarks.bandit_suite [--quick] [--seeds 5] [--rounds 5000] [--envs 'linear-*']
        [--learners ours,linucb] [--spec '{"learning_rate":0.5}']
        [--variant lr1='{"learning_rate":1}']
        [--jobs 2] [--out benchmarks/results/bandit_suite.json]
"""

from __future__ import annotations

import argparse
import fnmatch
import json
import multiprocessing as mp
import time
import uuid
import zlib
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Protocol

import numpy as np
from mabwiser.mab import MAB, LearningPolicy

from benchmarks.environments import DEFAULT_DELAY, Environment, FloatArray, Kind, Variant
from optimizer.core.policy_spec import ExplorationSpec, PolicySpec
from optimizer.policy import BanditPolicy, reward_to_cost
from optimizer.vw import CBModel

VW_DEFAULT_ARGS = ("--cb_explore_adf", "--squarecb", "--quiet", "-q", "co")
PEERS = ("vw-defaults", "linucb", "lints")
LEARNERS = ("ours", *PEERS, "uniform", "oracle")
LABELS = {
    "ours": "ours (BanditPolicy, default spec)",
    "vw-defaults": "VW squarecb defaults (-q co)",
    "linucb": "MABWiser LinUCB",
    "lints": "MABWiser LinTS",
    "uniform": "uniform random",
    "oracle": "oracle (expected)",
}
LAST_SHARE = 0.2
MIN_PEER_LIFT = 0.01
"""Environments where the best peer lifts less than this over uniform are left out of the
lift ratio (a ratio over a near-zero lift says nothing)."""


@dataclass(frozen=True)
class EnvSpec:
    kind: Kind
    k: int
    variant: Variant = "stationary"

    @property
    def name(self) -> str:
        suffix = "" if self.variant == "stationary" else f"-{self.variant}"
        return f"{self.kind}-K{self.k}{suffix}"


DEFAULT_GRID: tuple[EnvSpec, ...] = (
    *(EnvSpec(kind, 5) for kind in ("linear", "kernel", "neighbour", "mlp")),
    *(EnvSpec(kind, 50) for kind in ("linear", "kernel", "neighbour", "mlp")),
    EnvSpec("linear", 500),
    EnvSpec("kernel", 500),
    EnvSpec("linear", 5, "delay"),
    EnvSpec("mlp", 5, "delay"),
    EnvSpec("linear", 5, "drift"),
    EnvSpec("mlp", 5, "drift"),
)
QUICK_GRID: tuple[EnvSpec, ...] = (
    EnvSpec("linear", 5),
    EnvSpec("mlp", 5),
    EnvSpec("kernel", 50),
    EnvSpec("linear", 5, "delay"),
    EnvSpec("linear", 5, "drift"),
)


def mab_batch(k: int) -> int:
    """Rounds between MABWiser updates: every round at small K, K // 10 beyond."""
    return max(1, k // 10)


class Learner(Protocol):
    def choose(self, t: int, x: FloatArray) -> tuple[int, float]:
        """The action for round t and the probability it was chosen with."""
        ...

    def learn(self, t: int, x: FloatArray, action: int, reward: float, probability: float) -> None:
        """Learn the reward of round t, now that it has arrived."""
        ...


def shared_line(x: FloatArray) -> str:
    return "shared |c " + " ".join(f"f{i}:{v:.5f}" for i, v in enumerate(x))


def action_lines(z: FloatArray) -> list[str]:
    return [
        f"|o a{a} " + " ".join(f"g{i}:{v:.5f}" for i, v in enumerate(row))
        for a, row in enumerate(z)
    ]


def decision_id(env: Environment, t: int) -> uuid.UUID:
    """Deterministic per (environment, seed, round), so a run is repeatable."""
    tag = zlib.crc32(env.name.encode())
    return uuid.UUID(int=(tag << 96) | ((env.seed & 0xFFFFFFFF) << 64) | t)


class OursLearner:
    def __init__(self, spec: PolicySpec, env: Environment, *, name: str) -> None:
        self.env = env
        self.policy = BanditPolicy(spec, name=name)
        self.bounds = ExplorationSpec()
        self.actions = action_lines(env.action_features)

    def choose(self, t: int, x: FloatArray) -> tuple[int, float]:
        choice = self.policy.choose(
            shared_line(x),
            self.actions,
            decision_id=decision_id(self.env, t),
            floor_share=self.policy.floor_share(self.bounds),
        )
        return choice.index, choice.probability

    def learn(self, t: int, x: FloatArray, action: int, reward: float, probability: float) -> None:
        self.policy.learn(
            shared_line(x), self.actions, chosen=action, reward=reward, probability=probability
        )


class VWDefaultsLearner:
    def __init__(self, env: Environment) -> None:
        self.model = CBModel(list(VW_DEFAULT_ARGS))
        self.rng = np.random.default_rng([env.seed, 101])
        self.actions = action_lines(env.action_features)

    def choose(self, t: int, x: FloatArray) -> tuple[int, float]:
        pmf = self.model.predict(shared_line(x), self.actions)
        pmf = pmf / pmf.sum()
        index = min(
            int(np.searchsorted(np.cumsum(pmf), self.rng.random(), side="right")), len(pmf) - 1
        )
        return index, float(pmf[index])

    def learn(self, t: int, x: FloatArray, action: int, reward: float, probability: float) -> None:
        self.model.learn(
            shared_line(x),
            self.actions,
            chosen=action,
            cost=reward_to_cost(reward),
            probability=probability,
        )


class MabwiserLearner:
    """Greedy on MABWiser's expectations; uniform until the first update."""

    def __init__(self, kind: str, env: Environment, *, alpha: float, batch: int) -> None:
        policy = (
            LearningPolicy.LinUCB(alpha=alpha)
            if kind == "linucb"
            else LearningPolicy.LinTS(alpha=alpha)
        )
        self.k = env.k
        self.mab = MAB(arms=list(range(env.k)), learning_policy=policy, seed=env.seed)
        self.rng = np.random.default_rng([env.seed, 102])
        self.contexts = env.contexts
        self.batch = batch
        self.fitted = False
        self.pending: list[tuple[int, float, FloatArray]] = []
        self.block_start = 0
        self.block_end = 0
        self.scores: FloatArray | None = None

    def _update(self) -> None:
        if not self.pending:
            return
        actions = [a for a, _, _ in self.pending]
        rewards = [r for _, r, _ in self.pending]
        contexts = np.vstack([x for _, _, x in self.pending])
        if self.fitted:
            self.mab.partial_fit(actions, rewards, contexts)
        else:
            self.mab.fit(actions, rewards, contexts)
            self.fitted = True
        self.pending = []

    def choose(self, t: int, x: FloatArray) -> tuple[int, float]:
        if t >= self.block_end:
            self._update()
            self.block_start, self.block_end = t, t + self.batch
            self.scores = None
            if self.fitted:
                block = self.contexts[t : self.block_end]
                expectations = self.mab.predict_expectations(block)
                if isinstance(expectations, dict):
                    expectations = [expectations]
                self.scores = np.array([[e[a] for a in range(self.k)] for e in expectations])
        if self.scores is None:
            return int(self.rng.integers(self.k)), 1.0 / self.k
        return int(np.argmax(self.scores[t - self.block_start])), 1.0

    def learn(self, t: int, x: FloatArray, action: int, reward: float, probability: float) -> None:
        self.pending.append((action, reward, x))


class UniformLearner:
    def __init__(self, env: Environment) -> None:
        self.k = env.k
        self.rng = np.random.default_rng([env.seed, 103])

    def choose(self, t: int, x: FloatArray) -> tuple[int, float]:
        return int(self.rng.integers(self.k)), 1.0 / self.k

    def learn(self, t: int, x: FloatArray, action: int, reward: float, probability: float) -> None:
        return None


@dataclass(frozen=True)
class Job:
    env: EnvSpec
    seed: int
    rounds: int
    learners: tuple[str, ...]
    specs: Mapping[str, Mapping[str, Any]] = field(default_factory=dict)
    """Our specs by learner key (`ours`, `ours:NAME`): PolicySpec fields."""
    linucb_alpha: float = 1.0
    lints_alpha: float = 1.0
    delay: int = DEFAULT_DELAY


def build_learner(key: str, job: Job, env: Environment) -> Learner:
    if key.startswith("ours"):
        spec = PolicySpec(name="suite", **job.specs.get(key, {}))
        return OursLearner(spec, env, name="suite" if key == "ours" else f"suite-{key[5:]}")
    if key == "vw-defaults":
        return VWDefaultsLearner(env)
    if key in ("linucb", "lints"):
        alpha = job.linucb_alpha if key == "linucb" else job.lints_alpha
        return MabwiserLearner(key, env, alpha=alpha, batch=mab_batch(env.k))
    if key == "uniform":
        return UniformLearner(env)
    raise ValueError(f"learner: one of {', '.join(LEARNERS)} or ours:NAME, not {key!r}")


def play(learner: Learner, env: Environment) -> tuple[np.ndarray[Any, Any], FloatArray]:
    """Chosen actions and observed rewards of every round."""
    schedule = env.schedule()
    actions = np.zeros(env.rounds, dtype=np.int64)
    probabilities = np.zeros(env.rounds)
    rewards = np.zeros(env.rounds)
    for t in range(env.rounds):
        action, probability = learner.choose(t, env.context(t))
        actions[t], probabilities[t] = action, probability
        rewards[t] = env.reward(t, action)
        for s in schedule[t]:
            learner.learn(
                s, env.context(s), int(actions[s]), float(rewards[s]), float(probabilities[s])
            )
    return actions, rewards


def figures(observed: FloatArray, expected: FloatArray) -> dict[str, float]:
    last = max(1, round(len(observed) * LAST_SHARE))
    return {
        "mean": float(observed.mean()),
        "last": float(observed[-last:].mean()),
        "expected_mean": float(expected.mean()),
        "expected_last": float(expected[-last:].mean()),
    }


def run_job(job: Job) -> dict[str, Any]:
    """Every learner of the job on one environment and seed: figures per learner."""
    spec = job.env
    env = Environment(
        spec.kind, spec.k, job.seed, rounds=job.rounds, variant=spec.variant, delay=job.delay
    )
    results: dict[str, dict[str, float]] = {}
    for key in job.learners:
        started = time.perf_counter()
        if key == "oracle":
            oracle = env.oracle_rewards()
            results[key] = figures(oracle, oracle)
        else:
            actions, rewards = play(build_learner(key, job, env), env)
            expected = env.mu_table[np.arange(env.rounds), actions]
            results[key] = figures(rewards, expected)
        results[key]["seconds"] = time.perf_counter() - started
    uniform = env.uniform_rewards()
    return {
        "env": spec.name,
        "seed": job.seed,
        "uniform_expected": figures(uniform, uniform),
        "oracle_expected": figures(env.oracle_rewards(), env.oracle_rewards()),
        "learners": results,
    }


def _mean_std(values: Sequence[float]) -> dict[str, float]:
    return {"mean": float(np.mean(values)), "std": float(np.std(values))}


def aggregate(runs: Sequence[Mapping[str, Any]], learners: Sequence[str]) -> dict[str, Any]:
    """Per environment: mean and std over seeds of every figure of every learner."""
    by_env: dict[str, list[Mapping[str, Any]]] = {}
    for run in runs:
        by_env.setdefault(run["env"], []).append(run)
    out: dict[str, Any] = {}
    for name, env_runs in by_env.items():
        entry: dict[str, Any] = {"seeds": sorted(r["seed"] for r in env_runs)}
        for ref in ("uniform_expected", "oracle_expected"):
            entry[ref] = {f: _mean_std([r[ref][f] for r in env_runs]) for f in ("mean", "last")}
        entry["learners"] = {
            key: {
                f: _mean_std([r["learners"][key][f] for r in env_runs])
                for f in ("mean", "last", "expected_mean", "expected_last", "seconds")
            }
            for key in learners
        }
        out[name] = entry
    return out


def summarise(per_env: Mapping[str, Any], learners: Sequence[str]) -> dict[str, Any]:
    """Lift over uniform (expected) divided by the best peer's lift, averaged over
    environments, and on how many environments a learner reaches the best peer."""
    peers = [p for p in PEERS if p in learners]
    summary: dict[str, Any] = {"peers": peers, "learners": {}}
    if not peers:
        return summary
    for window in ("mean", "last"):
        ratios: dict[str, list[float]] = {key: [] for key in learners}
        lifts: dict[str, float] = dict.fromkeys(learners, 0.0)
        best_lifts = 0.0
        wins: dict[str, int] = dict.fromkeys(learners, 0)
        left_out: list[str] = []
        for name, entry in per_env.items():
            uniform = entry["uniform_expected"][window]["mean"]
            value = {key: entry["learners"][key][window]["mean"] for key in learners}
            best = max(value[p] for p in peers)
            best_lifts += best - uniform
            for key in learners:
                wins[key] += int(value[key] >= best)
                lifts[key] += value[key] - uniform
            if best - uniform < MIN_PEER_LIFT:
                left_out.append(name)
                continue
            for key in learners:
                ratios[key].append((value[key] - uniform) / (best - uniform))
        for key in learners:
            row = summary["learners"].setdefault(key, {})
            row[f"lift_ratio_{window}"] = float(np.mean(ratios[key])) if ratios[key] else None
            row[f"pooled_ratio_{window}"] = lifts[key] / best_lifts if best_lifts > 0 else None
            row[f"wins_{window}"] = wins[key]
        summary[f"left_out_{window}"] = left_out
    summary["environments"] = len(per_env)
    return summary


def label(key: str) -> str:
    return LABELS.get(key, f"ours, variant {key[5:]}")


def markdown(
    per_env: Mapping[str, Any], summary: Mapping[str, Any], learners: Sequence[str]
) -> str:
    lines: list[str] = []
    for window, title in (("mean", "all rounds"), ("last", "last 20 % of rounds")):
        lines += [f"Mean reward over {title} (mean ± std over seeds)", ""]
        head = ["environment", "uniform E", *(label(k) for k in learners)]
        lines += ["| " + " | ".join(head) + " |", "|" + "---|" * len(head)]
        for name, entry in per_env.items():
            cells = [name, f"{entry['uniform_expected'][window]['mean']:.3f}"]
            for key in learners:
                fig = entry["learners"][key][window]
                cells.append(f"{fig['mean']:.3f} ± {fig['std']:.3f}")
            lines.append("| " + " | ".join(cells) + " |")
        lines.append("")
    if summary.get("peers"):
        n = summary["environments"]
        lines += [
            "Lift over uniform ÷ best peer's lift (mean over environments; best peer = the best "
            f"of {', '.join(summary['peers'])} per environment)",
            "",
            "| learner | lift ratio, all rounds | lift ratio, last 20 % | pooled, all | "
            "pooled, last 20 % | ≥ best peer, all | ≥ best peer, last 20 % |",
            "|---|---|---|---|---|---|---|",
        ]
        for key, row in summary["learners"].items():
            ratio = [
                "—" if row[f"{r}_{w}"] is None else f"{row[f'{r}_{w}']:.3f}"
                for r in ("lift_ratio", "pooled_ratio")
                for w in ("mean", "last")
            ]
            lines.append(
                f"| {label(key)} | {' | '.join(ratio)} | {row['wins_mean']}/{n} | "
                f"{row['wins_last']}/{n} |"
            )
        lines.append(
            "\nPooled: the sum of a learner's lifts over the sum of the best peer's lifts."
        )
        for w in ("mean", "last"):
            if summary[f"left_out_{w}"]:
                lines.append(
                    f"\nLeft out of the {w} lift ratio (best peer lift < {MIN_PEER_LIFT}): "
                    + ", ".join(summary[f"left_out_{w}"])
                )
    return "\n".join(lines)


def notes(args: argparse.Namespace, envs: Sequence[EnvSpec]) -> list[str]:
    ks = sorted({e.k for e in envs})
    return [
        f"VW defaults: {' '.join(VW_DEFAULT_ARGS)} (squarecb's own defaults; -q co is the one "
        "interaction without which the context cannot matter), sampled from its pmf.",
        f"MABWiser LinUCB alpha={args.linucb_alpha:g}, LinTS alpha={args.lints_alpha:g}, "
        "disjoint per arm on the 5 context features; greedy on predict_expectations; updates "
        + ", ".join(f"every {mab_batch(k)} round(s) at K={k}" for k in ks)
        + ".",
        f"ours: PolicySpec(name='suite', **{json.dumps(args.spec)}), floor share "
        f"{PolicySpec(name='suite', **args.spec).floor_share(ExplorationSpec()):g}.",
        f"delay variant: rewards learnable at t + {args.delay}; those maturing after the "
        "horizon are never learned. drift: parameters redrawn at the halfway round.",
        "Rewards are observed Bernoulli draws shared by all learners; uniform E and the lift "
        "ratio's uniform are the expected uniform reward.",
    ]


def parse_variant(text: str) -> tuple[str, dict[str, Any]]:
    name, sep, body = text.partition("=")
    if not sep or not name:
        raise argparse.ArgumentTypeError(f"--variant {text!r}: use NAME=JSON")
    fields = json.loads(body)
    if not isinstance(fields, dict):
        raise argparse.ArgumentTypeError(f"--variant {name}: the JSON must be an object")
    PolicySpec(name="suite", **fields)
    return name, fields


def parse_spec(text: str) -> dict[str, Any]:
    fields = json.loads(text)
    if not isinstance(fields, dict):
        raise argparse.ArgumentTypeError("--spec: the JSON must be an object")
    PolicySpec(name="suite", **fields)
    return fields


def select_envs(grid: Sequence[EnvSpec], patterns: str | None) -> list[EnvSpec]:
    if not patterns:
        return list(grid)
    wanted = [p.strip() for p in patterns.split(",") if p.strip()]
    candidates = {e.name: e for e in (*DEFAULT_GRID, *grid)}
    chosen = [e for name, e in candidates.items() if any(fnmatch.fnmatch(name, p) for p in wanted)]
    for p in wanted:  # a name outside both grids: parse it, e.g. neighbour-K500-drift
        if not any(fnmatch.fnmatch(n, p) for n in candidates) and not any(c in p for c in "*?["):
            chosen.append(parse_env_name(p))
    return chosen


def parse_env_name(name: str) -> EnvSpec:
    parts = name.split("-")
    if len(parts) not in (2, 3) or not parts[1].startswith("K"):
        raise argparse.ArgumentTypeError(f"environment {name!r}: use KIND-K<k>[-delay|-drift]")
    variant = parts[2] if len(parts) == 3 else "stationary"
    return EnvSpec(parts[0], int(parts[1][1:]), variant)  # type: ignore[arg-type]


def run_suite(
    envs: Sequence[EnvSpec],
    *,
    seeds: int,
    rounds: int,
    learners: Sequence[str],
    specs: Mapping[str, Mapping[str, Any]],
    jobs: int = 2,
    linucb_alpha: float = 1.0,
    lints_alpha: float = 1.0,
    delay: int = DEFAULT_DELAY,
) -> dict[str, Any]:
    """All (environment, seed) jobs, largest first, then the per-environment figures and the
    summary."""
    work = [
        Job(e, seed, rounds, tuple(learners), specs, linucb_alpha, lints_alpha, delay)
        for e in envs
        for seed in range(seeds)
    ]
    work.sort(key=lambda j: -j.env.k)
    if jobs <= 1:
        runs = [run_job(j) for j in work]
    else:
        with mp.get_context("fork").Pool(jobs) as pool:
            runs = list(pool.imap_unordered(run_job, work))
    order = {e.name: i for i, e in enumerate(envs)}
    runs.sort(key=lambda r: (order[r["env"]], r["seed"]))
    per_env = aggregate(runs, learners)
    per_env = {e.name: per_env[e.name] for e in envs}
    return {"runs": runs, "environments": per_env, "summary": summarise(per_env, learners)}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--quick", action="store_true", help="2 seeds, 2,000 rounds, 5 envs")
    parser.add_argument("--seeds", type=int, default=None, help="default 5 (quick: 2)")
    parser.add_argument("--rounds", type=int, default=None, help="default 5000 (quick: 2000)")
    parser.add_argument("--envs", default=None, help="comma-separated names or globs")
    parser.add_argument("--learners", default=None, help=f"comma-separated of {','.join(LEARNERS)}")
    parser.add_argument("--spec", type=parse_spec, default={}, help="PolicySpec fields (JSON)")
    parser.add_argument(
        "--variant", type=parse_variant, action="append", default=[], help="NAME=JSON, repeatable"
    )
    parser.add_argument("--linucb-alpha", type=float, default=1.0)
    parser.add_argument("--lints-alpha", type=float, default=1.0)
    parser.add_argument("--delay", type=int, default=DEFAULT_DELAY)
    parser.add_argument("--jobs", type=int, default=2)
    parser.add_argument("--out", type=Path, default=Path("benchmarks/results/bandit_suite.json"))
    args = parser.parse_args()

    seeds = args.seeds or (2 if args.quick else 5)
    rounds = args.rounds or (2_000 if args.quick else 5_000)
    envs = select_envs(QUICK_GRID if args.quick else DEFAULT_GRID, args.envs)
    learners = list(LEARNERS) if args.learners is None else args.learners.split(",")
    variants = dict(args.variant)
    if "ours" in learners:
        learners[learners.index("ours") + 1 : learners.index("ours") + 1] = [
            f"ours:{name}" for name in variants
        ]
    else:
        learners += [f"ours:{name}" for name in variants]
    specs = {"ours": args.spec, **{f"ours:{n}": f for n, f in variants.items()}}

    started = time.perf_counter()
    result = run_suite(
        envs,
        seeds=seeds,
        rounds=rounds,
        learners=learners,
        specs=specs,
        jobs=args.jobs,
        linucb_alpha=args.linucb_alpha,
        lints_alpha=args.lints_alpha,
        delay=args.delay,
    )
    wall = time.perf_counter() - started

    print(f"{len(envs)} environments x {seeds} seeds x {rounds} rounds, {args.jobs} jobs\n")
    for note in notes(args, envs):
        print(f"- {note}")
    print()
    print(markdown(result["environments"], result["summary"], learners))
    seconds = {
        key: sum(e["learners"][key]["seconds"]["mean"] for e in result["environments"].values())
        * seeds
        for key in learners
    }
    print("\nlearner seconds (all jobs): " + ", ".join(f"{k} {v:.0f}" for k, v in seconds.items()))
    print(f"wall time {wall:.0f} s")

    args.out.parent.mkdir(parents=True, exist_ok=True)
    config = {
        "seeds": seeds,
        "rounds": rounds,
        "envs": [e.name for e in envs],
        "learners": learners,
        "specs": specs,
        "vw_default_args": list(VW_DEFAULT_ARGS),
        "linucb_alpha": args.linucb_alpha,
        "lints_alpha": args.lints_alpha,
        "delay": args.delay,
        "jobs": args.jobs,
    }
    payload = {"config": config, "notes": notes(args, envs), "wall_seconds": wall, **result}
    args.out.write_text(json.dumps(payload, indent=2))
    print(f"figures: {args.out}")


if __name__ == "__main__":
    main()
