"""Benchmark of the exchange service on a real JupyterHub: hand-ins at once, and the classroom loop.

1. **hand-ins at once**: `--learners` learners (default 30), each with their own hub API token,
   hand in the solution notebook of `--load-exercise` (ex03) through the hub's proxy, with the
   client the hand-in cell uses, at the same moment, `--rounds` times (a barrier releases them
   together each round). Prints p50 / p99 / max latency and throughput, the first round apart
   (the service asks the hub about each token once, then caches it), and checks that **nothing
   is lost**: every receipt is in its owner's list, its bytes fetched back with the owner's token
   hash to the receipt's sha256 and equal what was sent, and no list holds a hand-in nobody made.
2. **collect, grade, release** for a fresh class of `--learners`: each learner hands in
   `--exercise` (ex00; every third with a plausible bug from tests/test_grading.py's MUTATIONS,
   which costs that question's points; every fifth hands in the untouched exercise first, then
   their work); the instructor collects the latest on-time hand-in per learner (`mmcourse
   collect`'s code), grades them with the sandboxed grader (`--workers`, default 2: this
   machine's cores) and releases each result (`mmcourse return-feedback`'s code); then every
   learner fetches their own feedback at once, which must name them, the sha256 of their latest
   hand-in and the total it deserves. Prints each phase's wall time and the exchange's cost per
   hand-in (collect + release) against grading alone.

The hub (JupyterHub, configurable-http-proxy and the exchange, with the test authenticator; no
learner servers are needed) runs on loopback in a temporary folder, from tests/hub_harness.py.
CPU columns are the whole machine's busy time during each phase (exact when nothing else runs:
the first line printed says how busy the machine was just before); take the numbers on an idle
machine.

Run: `.venv/bin/python benchmarks/exchange.py [--learners 30] [--rounds 5]
[--load-exercise ex03] [--figure-kb 0] [--exercise ex00] [--workers 2] [--hidden 10]
[--skip-loop]` (needs
configurable-http-proxy and bubblewrap; a few minutes on 2 cores).
"""

from __future__ import annotations

import argparse
import base64
import contextlib
import hashlib
import math
import os
import shutil
import sys
import tempfile
import threading
import time
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import nbformat

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT / "tests"))  # the hub harness, and the plausible bugs of test_grading

from hub_harness import running_hub  # noqa: E402
from test_grading import MUTATIONS  # noqa: E402

from mmcourse.exchange import instructor  # noqa: E402
from mmcourse.exchange.client import ExchangeClient, ExchangeError  # noqa: E402
from mmcourse.grading import class_grader as grade  # noqa: E402
from mmcourse.grading import question_bank, sandbox  # noqa: E402

INSTRUCTOR = "carol"
CLOCK_TICKS = os.sysconf("SC_CLK_TCK")


def machine_cpu_seconds() -> float:
    """Busy CPU seconds of the whole machine since boot, all cores (/proc/stat: everything but
    idle and iowait). Per-process accounting would miss the grading: a process that bubblewrap's
    PID namespace reaps never reaches the grader's RUSAGE_CHILDREN (measured: 0 s for a 0.25 s
    child). So the table's CPU is the machine's, exact when nothing else runs; the line above the
    tables says how busy the machine was just before."""
    fields = [int(v) for v in Path("/proc/stat").read_text().split("\n", 1)[0].split()[1:]]
    return (sum(fields[:8]) - fields[3] - fields[4]) / CLOCK_TICKS


def machine_busy_before(seconds: float = 3) -> str:
    start, used = time.perf_counter(), machine_cpu_seconds()
    time.sleep(seconds)
    busy = (machine_cpu_seconds() - used) / (time.perf_counter() - start) / os.cpu_count()
    load = " ".join(Path("/proc/loadavg").read_text().split()[:3])
    return f"{busy:.0%} of {os.cpu_count()} cores busy over {seconds:.0f} s, load average {load}"


def percentile(values: list[float], q: float) -> float:
    """The nearest-rank percentile (p99 of 150 values is the 149th smallest)."""
    ordered = sorted(values)
    return ordered[max(0, math.ceil(q / 100 * len(ordered)) - 1)]


def notebook_bytes(
    book: nbformat.NotebookNode, learner: str, note: str, figure_kb: int = 0
) -> bytes:
    """One learner's saved notebook: the same work, their own metadata (so no two are equal), and
    optionally a saved figure of `figure_kb` KB (random, incompressible PNG-sized bytes) as the
    output of its first code cell, as a notebook saved after running its plots would carry."""
    copy = nbformat.from_dict(book)
    copy.metadata["mmcourse_benchmark"] = {"learner": learner, "note": note}
    if figure_kb:
        figure = base64.b64encode(os.urandom(figure_kb * 1024)).decode()
        cell = next(c for c in copy.cells if c.cell_type == "code")
        cell.outputs = [
            nbformat.v4.new_output(
                "display_data", data={"image/png": figure, "text/plain": "<Figure>"}
            )
        ]
    return nbformat.writes(copy).encode()


def solution_of(exercise: str) -> nbformat.NotebookNode:
    (path,) = (ROOT / "solutions").glob(f"{exercise}_*.ipynb")
    return nbformat.read(path, as_version=4)


def at_once(clients: dict[str, ExchangeClient], call) -> tuple[dict, dict, float]:
    """`call(name, client)` for every learner in its own thread, all released together by a
    barrier; returns ({name: result or ExchangeError}, {name: seconds}, wall seconds from the
    release to the last answer)."""
    names = list(clients)
    if not names:
        return {}, {}, 0.0
    released: list[float] = []
    barrier = threading.Barrier(len(names), action=lambda: released.append(time.perf_counter()))

    def one(name: str):
        barrier.wait()
        start = time.perf_counter()
        try:
            value = call(name, clients[name])
        except ExchangeError as error:
            value = error
        return name, value, time.perf_counter() - start

    with ThreadPoolExecutor(max_workers=len(names)) as pool:
        done = list(pool.map(one, names))
    finished = time.perf_counter()
    return (
        {name: value for name, value, _ in done},
        {name: seconds for name, _, seconds in done},
        finished - released[0],
    )


def hand_ins_at_once(
    clients: dict[str, ExchangeClient], exercise: str, rounds: int, figure_kb: int = 0
) -> None:
    solution = solution_of(exercise)
    sent: dict[str, bytes] = {}  # receipt id -> the bytes sent
    receipts: dict[str, list[dict]] = {name: [] for name in clients}
    latencies: list[list[float]] = []
    walls: list[float] = []
    cpus: list[float] = []
    failed = []
    for round_ in range(1, rounds + 1):
        data = {
            name: notebook_bytes(solution, name, f"round {round_}", figure_kb) for name in clients
        }
        used = machine_cpu_seconds()
        results, seconds, wall = at_once(
            clients, lambda name, client: client.submit(exercise, data[name])
        )
        cpus.append(machine_cpu_seconds() - used)
        for name, value in results.items():
            if isinstance(value, ExchangeError):
                failed.append((name, round_, str(value)))
                continue
            receipts[name].append(value)
            sent[value["id"]] = data[name]
        latencies.append(list(seconds.values()))
        walls.append(wall)

    # nothing lost: every receipt is in its owner's list, and its bytes come back unchanged
    unlisted = sha_mismatches = byte_mismatches = 0
    for name, client in clients.items():
        listed = {r["id"]: r for r in client.submissions(exercise=exercise)}
        for receipt in receipts[name]:
            if receipt["id"] not in listed or listed[receipt["id"]]["sha256"] != receipt["sha256"]:
                unlisted += 1
                continue
            back = client.download(receipt["id"])
            sha_mismatches += hashlib.sha256(back).hexdigest() != receipt["sha256"]
            byte_mismatches += back != sent[receipt["id"]]
        unlisted += len(listed) - len(receipts[name])  # a hand-in nobody made

    n, size = len(clients), len(next(iter(sent.values()), b""))
    figure = f" with a {figure_kb} KB figure" if figure_kb else ""
    print(
        f"\n1. {n} learners hand in at once, {rounds} rounds ({exercise} solution notebooks"
        f"{figure}, {size} bytes each),\n   through the hub's proxy, each with their own hub token"
    )
    print(
        f"{'rounds':<14} {'hand-ins':>8} {'wall s':>7} {'hand-ins/s':>10} "
        f"{'p50 ms':>7} {'p99 ms':>7} {'max ms':>7} {'CPU ms/hand-in':>15}"
    )
    rows = [("1 (cold)", [0])]
    if rounds > 1:
        later = "2" if rounds == 2 else f"2-{rounds}"
        rows += [(later, list(range(1, rounds))), ("all", list(range(rounds)))]
    for label, which in rows:
        values = [v for i in which for v in latencies[i]]
        wall = sum(walls[i] for i in which)
        print(
            f"{label:<14} {len(values):>8} {wall:>7.2f} {len(values) / wall:>10.1f} "
            f"{percentile(values, 50) * 1000:>7.0f} {percentile(values, 99) * 1000:>7.0f} "
            f"{max(values) * 1000:>7.0f} "
            f"{sum(cpus[i] for i in which) / len(values) * 1000:>15.1f}"
        )
    total = n * rounds
    print(
        f"nothing lost: {total - len(failed)}/{total} receipts, not listed or extra {unlisted}, "
        f"sha256 mismatches {sha_mismatches}, byte mismatches {byte_mismatches}"
    )
    print(
        "(cold: the exchange asks the hub about each token once, then caches it for 60 s; CPU: "
        "the machine's, all cores: clients, proxy, hub and exchange together)"
    )
    for name, round_, reason in failed[:5]:
        print(f"  FAILED {name} round {round_}: {reason}")
    if failed or unlisted or sha_mismatches or byte_mismatches:
        sys.exit("hand-ins were lost or changed (above)")


def class_hand_ins(exercise: str, learners: list[str]) -> tuple[dict, dict, dict]:
    """What each learner hands in: the solution, every third one with one plausible bug (that
    question's points lost), every fifth one first hands in the untouched exercise and then
    their work. Returns ({learner: [bytes, ...]}, {learner: expected total}, {learner: note})."""
    solution = solution_of(exercise)
    points = {q.qid: q.points for q in question_bank.for_exercise(exercise)}
    bugs = [(qid, edit) for qid, edit, _ in MUTATIONS if qid in points]
    (stub_path,) = (ROOT / "exercises").glob(f"{exercise}_*.ipynb")
    stub = nbformat.read(stub_path, as_version=4)
    hand_ins, expected, notes = {}, {}, {}
    for index, name in enumerate(learners):
        book, total, note = nbformat.from_dict(solution), sum(points.values()), "solution"
        if index % 3 == 2:
            qid, (old, new) = bugs[(index // 3) % len(bugs)]
            (cell,) = [c for c in book.cells if qid in c.metadata.get("tags", [])]
            assert old in cell.source, (qid, old)
            cell.source = cell.source.replace(old, new)
            total, note = total - points[qid], f"bug in {qid}"
        hand_ins[name] = [notebook_bytes(book, name, note)]
        if index % 5 == 4:
            hand_ins[name].insert(0, notebook_bytes(stub, name, "the untouched exercise"))
        expected[name], notes[name] = total, note
    return hand_ins, expected, notes


def classroom_loop(
    clients: dict[str, ExchangeClient],
    teacher: ExchangeClient,
    exercise: str,
    workers: int,
    hidden: int,
    folder: Path,
) -> None:
    learners = list(clients)
    hand_ins, expected, _ = class_hand_ins(exercise, learners)
    phases: dict[str, tuple[float, float]] = {}  # phase -> (wall s, CPU s)

    @contextlib.contextmanager
    def phase(name: str):
        wall, used = time.perf_counter(), machine_cpu_seconds()
        yield
        phases[name] = (time.perf_counter() - wall, machine_cpu_seconds() - used)

    last_sha = {}
    with phase("hand in (all at once)"):
        for attempt in range(2):  # who hands in twice: the first one in the first pass
            who = {n: c for n, c in clients.items() if len(hand_ins[n]) > attempt}
            results, _, _ = at_once(
                who, lambda name, client: client.submit(exercise, hand_ins[name][attempt])
            )
            for name, value in results.items():
                if isinstance(value, ExchangeError):
                    sys.exit(f"{name}'s hand-in failed: {value}")
                last_sha[name] = value["sha256"]
    twice = sum(len(v) > 1 for v in hand_ins.values())

    collected, results_dir = folder / "collected", folder / "results"
    with phase("collect (instructor)"):
        manifest = instructor.collect(exercise, collected, client=teacher)
    taken = {e["user"]: e["sha256"] for e in manifest["submissions"]}
    if taken != last_sha:
        wrong = sorted(n for n in taken.keys() | last_sha.keys() if taken.get(n) != last_sha.get(n))
        sys.exit(f"collect did not take exactly each learner's latest hand-in: {wrong}")

    settings = grade.Settings(limits=sandbox.Limits(), hidden=hidden, seed=2026)
    grading = f"grade (sandboxed, {workers} workers)"
    with phase(grading):
        written = grade.grade_all(
            grade.collect([collected]),
            results_dir,
            settings,
            grade.default_references(ROOT),
            workers=workers,
            progress=False,
        )
    assert len(written) == len(learners)

    with phase("release feedback (instructor)"):
        rows = instructor.return_feedback(exercise, collected, results_dir, client=teacher)
    assert all(r["status"].startswith("released") for r in rows), rows

    with phase("learners fetch feedback (at once)"):
        fetched, _, _ = at_once(clients, lambda name, client: client.feedback(exercise))
    right = sum(
        not isinstance(record, ExchangeError)
        and record["user"] == name
        and record["feedback"]["sha256"] == last_sha[name]
        and record["feedback"]["result"]["total"] == expected[name]
        for name, record in fetched.items()
    )

    n = len(learners)
    questions = len(question_bank.for_exercise(exercise))
    print(
        f"\n2. a class of {n}: {exercise} ({questions} questions, {hidden} hidden cases each), "
        f"learners who hand in twice: {twice},\n   graded with {workers} workers"
    )
    print(
        f"{'phase':<36} {'wall s':>7} {'CPU s':>7} {'wall ms/hand-in':>16} {'CPU ms/hand-in':>15}"
    )
    for name, (wall, used) in phases.items():
        print(
            f"{name:<36} {wall:>7.2f} {used:>7.2f} {wall / n * 1000:>16.1f} "
            f"{used / n * 1000:>15.1f}"
        )
    collect, release, alone = (
        phases["collect (instructor)"],
        phases["release feedback (instructor)"],
        phases[grading],
    )
    wall, used = collect[0] + release[0], collect[1] + release[1]
    print(
        f"the exchange's cost per hand-in (collect + release): {wall / n * 1000:.1f} ms wall = "
        f"{wall / alone[0]:.2%} of grading's {alone[0] / n * 1000:.0f} ms; "
        f"{used / n * 1000:.1f} ms CPU = {used / alone[1]:.2%} of grading's "
        f"{alone[1] / n * 1000:.0f} ms"
    )
    print(
        f"(CPU: the machine's, all {os.cpu_count()} cores; grading kept them "
        f"{alone[1] / alone[0] / os.cpu_count():.0%} busy)"
    )
    full = sum(q.points for q in question_bank.for_exercise(exercise))
    lost = sum(total < full for total in expected.values())
    print(
        f"feedback right (own record, the latest hand-in's sha256, the deserved total): "
        f"{right}/{n} ({n - lost} with full marks, {lost} with one question's bug)"
    )
    if right != n:
        sys.exit("some learner got wrong feedback (above)")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--learners", type=int, default=30)
    parser.add_argument("--rounds", type=int, default=5, help="hand-ins at once, per learner")
    parser.add_argument(
        "--load-exercise", default="ex03", help="the exercise handed in at once in part 1"
    )
    parser.add_argument(
        "--exercise", default="ex00", help="the exercise collected and graded in part 2"
    )
    parser.add_argument("--workers", type=int, default=2, help="grading workers")
    parser.add_argument("--hidden", type=int, default=10, help="hidden cases per question")
    parser.add_argument(
        "--figure-kb", type=int, default=0, help="part 1: a saved figure of this size in each"
    )
    parser.add_argument("--skip-loop", action="store_true", help="only part 1")
    args = parser.parse_args()
    if args.exercise == args.load_exercise and not args.skip_loop:
        # collect takes every learner's hand-in of the exercise: part 1's would join the class
        parser.error("--exercise and --load-exercise must differ")
    if shutil.which("configurable-http-proxy") is None:
        sys.exit("needs configurable-http-proxy: npm install -g configurable-http-proxy@5.3.0")
    if sandbox.bubblewrap() is None and not args.skip_loop:
        sys.exit("the grading part needs bubblewrap (apt-get install bubblewrap)")
    learners = [f"learner{i:02d}" for i in range(args.learners)]
    with tempfile.TemporaryDirectory() as tmp, running_hub(Path(tmp) / "hub") as hub:
        hub.add_user(INSTRUCTOR, groups=["instructors"])
        for name in learners:
            hub.add_user(name, groups=["learners"])
        clients = {name: ExchangeClient(hub.exchange_url, hub.token(name)) for name in learners}
        teacher = ExchangeClient(hub.exchange_url, hub.token(INSTRUCTOR), timeout=300)
        print(f"before the run: {machine_busy_before()}")
        hand_ins_at_once(clients, args.load_exercise, args.rounds, args.figure_kb)
        if not args.skip_loop:
            # the loop's exercise gets a class of its own: fresh learners, no earlier hand-ins
            fresh = [f"class{i:02d}" for i in range(args.learners)]
            for name in fresh:
                hub.add_user(name, groups=["learners"])
            fresh_clients = {n: ExchangeClient(hub.exchange_url, hub.token(n)) for n in fresh}
            classroom_loop(
                fresh_clients, teacher, args.exercise, args.workers, args.hidden, Path(tmp)
            )


if __name__ == "__main__":
    main()
