"""Summarise a py-spy profile in its raw (collapsed stacks) format: the share of samples in
which each function is on the stack (inclusive) and at its top (self), per thread if asked.

    py-spy record --pid PID --duration 20 --rate 97 --nonblocking --gil --format raw -o gil.txt
    python -m benchmarks.profile_summary gil.txt [--top 40] [--thread DecisionWriter]

With `--gil` the samples are those in which a thread held the GIL, so the shares say where
the interpreter's one core goes; with `--idle` instead they are wall time, waits included.
"""

from __future__ import annotations

import argparse
import re
from collections import Counter
from pathlib import Path

_LINE = re.compile(r":\d+\)$")


def summarise(text: str, *, within: str | None = None) -> tuple[int, Counter[str], Counter[str]]:
    """(samples, inclusive counts, self counts) per function, over the stacks that pass
    through a frame containing `within` (all stacks if None)."""
    total = 0
    inclusive: Counter[str] = Counter()
    own: Counter[str] = Counter()
    for line in text.splitlines():
        stack, _, count = line.rpartition(" ")
        if not stack or not count.isdigit():
            continue
        if within is not None and within not in stack:
            continue
        n = int(count)
        total += n
        frames = [_LINE.sub(")", frame) for frame in stack.split(";")]
        for frame in set(frames):
            inclusive[frame] += n
        own[frames[-1]] += n
    return total, inclusive, own


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("profile", type=Path)
    parser.add_argument("--top", type=int, default=40)
    parser.add_argument("--thread", default=None, help="only stacks through this frame")
    args = parser.parse_args()
    total, inclusive, own = summarise(args.profile.read_text(), within=args.thread)
    if not total:
        raise SystemExit("no samples")
    print(f"{total} samples")
    for title, counts in (("inclusive", inclusive), ("self", own)):
        print(f"--- {title}")
        for frame, n in counts.most_common(args.top):
            print(f"{100 * n / total:5.1f} %  {frame}")


if __name__ == "__main__":
    main()
