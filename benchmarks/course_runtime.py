"""Course runtime: executes every lesson and solution notebook and checks the time budget of
DESIGN.md.

Each notebook must run in at most 90 s on 2 CPU cores, the whole course in at most 10 minutes.
Prints one row per notebook (median of `--repeats` runs, kernel start included) and exits 1 if a
budget is exceeded.
Run: `.venv/bin/python benchmarks/course_runtime.py [--repeats 3]`.
"""

from __future__ import annotations

import argparse
import statistics
import sys
import time
from pathlib import Path

import nbformat
from nbclient import NotebookClient

ROOT = Path(__file__).resolve().parent.parent
NOTEBOOK_BUDGET_S = 90
COURSE_BUDGET_S = 600


def run_once(path: Path) -> float:
    book = nbformat.read(path, as_version=4)
    start = time.perf_counter()
    NotebookClient(
        book, timeout=600, kernel_name="python3", resources={"metadata": {"path": str(path.parent)}}
    ).execute()
    return time.perf_counter() - start


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--repeats", type=int, default=3)
    args = parser.parse_args()
    paths = sorted((ROOT / "notebooks").glob("*.ipynb")) + sorted(
        (ROOT / "solutions").glob("*.ipynb")
    )
    print(f"{'notebook':44} {'median s':>9} {'min s':>7} {'budget s':>9}  ok")
    total, ok = 0.0, True
    for path in paths:
        times = [run_once(path) for _ in range(args.repeats)]
        median = statistics.median(times)
        total += median
        fits = median <= NOTEBOOK_BUDGET_S
        ok &= fits
        print(
            f"{path.parent.name + '/' + path.name:44} {median:9.1f} {min(times):7.1f} "
            f"{NOTEBOOK_BUDGET_S:9d}  {'yes' if fits else 'NO'}"
        )
    fits = total <= COURSE_BUDGET_S
    ok &= fits
    print(
        f"{'whole course (sum of medians)':44} {total:9.1f} {'':7} {COURSE_BUDGET_S:9d}  "
        f"{'yes' if fits else 'NO'}"
    )
    return 0 if ok else 1


if __name__ == "__main__":
    sys.exit(main())
