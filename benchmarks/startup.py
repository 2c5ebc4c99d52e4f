"""What starting envoylog costs a process, against a bare import of its libraries, in paired runs.

    python benchmarks/startup.py [--rounds 15] [--other-tree PATH]

Each round runs, one after another: the baseline `python -c "import sqlalchemy, requests"`, then
`python -c "import envoylog.cli"` from this tree (and from `--other-tree`, a checkout of another
revision, when given). It prints the median CPU time (user + system) of each and its ratio to the
baseline of the same rounds, so that the machine's noise falls on both sides alike.
"""

from __future__ import annotations

import argparse
import os
import resource
import statistics
import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
BASELINE = "import sqlalchemy, requests"
CLI = "import envoylog.cli"


def cpu_seconds(code: str, tree: Path | None) -> float:
    """CPU time of one `python -c code` process (with `tree` first on the path, if given)."""
    env = dict(os.environ)
    if tree is not None:
        env["PYTHONPATH"] = str(tree)
    before = resource.getrusage(resource.RUSAGE_CHILDREN)
    subprocess.run([sys.executable, "-c", code], env=env, check=True)  # noqa: S603 - our own code
    after = resource.getrusage(resource.RUSAGE_CHILDREN)
    return (after.ru_utime - before.ru_utime) + (after.ru_stime - before.ru_stime)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--rounds", type=int, default=15)
    parser.add_argument("--other-tree", type=Path, help="a checkout of another revision to compare")
    args = parser.parse_args()
    runs: dict[str, list[float]] = {"baseline": [], "this tree": []}
    if args.other_tree:
        runs["other tree"] = []
    for _ in range(args.rounds):
        runs["baseline"].append(cpu_seconds(BASELINE, None))
        runs["this tree"].append(cpu_seconds(CLI, ROOT))
        if args.other_tree:
            runs["other tree"].append(cpu_seconds(CLI, args.other_tree.resolve()))
    base = statistics.median(runs["baseline"])
    print(f"{args.rounds} paired rounds; median CPU seconds (ratio to the baseline)")
    for name, values in runs.items():
        median = statistics.median(values)
        print(f"  {name:<11} {median * 1000:7.1f} ms  ({median / base:.2f}x)")


if __name__ == "__main__":
    main()
