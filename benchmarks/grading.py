"""Benchmark of `mmcourse grade`: throughput on a class, and what the sandbox costs per question.

1. **sandbox overhead per question** (median of 3): each question's visible + hidden cases run (a)
  in this process,
   as `check` does, (b) in a child process without bubblewrap (`--unsafe`), (c) in the bubblewrap
   sandbox, as graded. (c) - (a) is what isolation costs: a fresh interpreter importing torch and
   the library, the reference cells, and bubblewrap's namespaces; (c) - (b) is bubblewrap alone.
2. **throughput**: a class of `--copies` students (default 50), each handing in every solution
  notebook (one
   folder per student, as `collect` expects), graded with `--workers` (default 2) into a fresh
   gradebook; prints submissions per minute and checks every submission got full marks.

Run: `.venv/bin/python benchmarks/grading.py [--copies 50] [--workers 2] [--hidden 10]` (needs
bubblewrap).
"""

from __future__ import annotations

import argparse
import contextlib
import csv
import io
import random
import statistics
import sys
import tempfile
import time
from pathlib import Path

import nbformat
from timing import median_time

from mmcourse.grading import class_grader as grade
from mmcourse.grading import question_bank, sandbox
from mmcourse.grading.judging import Question

ROOT = Path(__file__).resolve().parents[1]


def in_process(
    question: Question, reference: nbformat.NotebookNode, answer: str, cases: list[dict]
) -> None:
    namespace = {"__name__": "__main__"}
    # the exercise's own cells print; the child's output is kept too
    with contextlib.redirect_stdout(io.StringIO()):
        exec(compile(grade.reference_setup(reference, question.qid), "<setup>", "exec"), namespace)
        exec(compile(answer, "<answer>", "exec"), namespace)
    for index, case in enumerate(cases):
        assert question.run_case(index, case, namespace[question.name]).status == "passed", (
            question.qid
        )


def overhead_table(settings: grade.Settings, references: dict[str, Path]) -> None:
    print("\n1. one question's cases, seconds (median of 3)")
    print(
        f"{'question':<24} {'cases':>5} {'in process':>11} {'child, no sandbox':>18} "
        f"{'sandboxed':>10} {'overhead':>9}"
    )
    rows = []
    for exercise, path in sorted(references.items()):
        (solution,) = (ROOT / "solutions").glob(f"{exercise}_*.ipynb")
        answers = grade.answer_cells(
            nbformat.read(solution, as_version=4),
            [q.qid for q in question_bank.for_exercise(exercise)],
        )
        reference = nbformat.read(path, as_version=4)
        for question in question_bank.for_exercise(exercise):
            seed = random.Random(f"{settings.seed}:{question.qid}").randrange(2**63)
            cases = [*question.visible, *question.hidden_cases(seed, settings.hidden)]
            answer = answers[question.qid]
            local = median_time(lambda: in_process(question, reference, answer, cases), repeats=3)

            def graded(unsafe: bool) -> None:
                result, _ = grade.grade_question(
                    question,
                    reference,
                    answer,
                    grade.Settings(
                        limits=settings.limits,
                        hidden=settings.hidden,
                        seed=settings.seed,
                        unsafe=unsafe,
                    ),
                )
                assert result.status == "passed", (question.qid, result.feedback)

            child, boxed = (
                median_time(lambda: graded(True), repeats=3),
                median_time(lambda: graded(False), repeats=3),
            )
            rows.append((local, child, boxed))
            print(
                f"{question.qid:<24} {len(cases):>5} {local:>11.2f} {child:>18.2f} {boxed:>10.2f} "
                f"{boxed - local:>9.2f}"
            )
    local, child, boxed = (statistics.median(column) for column in zip(*rows))
    print(
        f"{'median':<24} {'':>5} {local:>11.2f} {child:>18.2f} {boxed:>10.2f} {boxed - local:>9.2f}"
    )
    print(
        f"bubblewrap alone (sandboxed - child, median over questions): "
        f"{statistics.median(b - c for _, c, b in rows):.2f} s"
    )


def make_class(folder: Path, copies: int) -> list[Path]:
    """`copies` students, each with every solution notebook; each copy differs (its metadata names
    the student)."""
    paths = []
    for student in range(copies):
        for solution in sorted((ROOT / "solutions").glob("ex*.ipynb")):
            book = nbformat.read(solution, as_version=4)
            book.metadata["student"] = f"student{student:03d}"
            target = folder / f"student{student:03d}" / solution.name
            target.parent.mkdir(parents=True, exist_ok=True)
            nbformat.write(book, target)
            paths.append(target)
    return paths


def throughput(
    settings: grade.Settings, references: dict[str, Path], copies: int, workers: int
) -> None:
    with tempfile.TemporaryDirectory() as tmp:
        paths = make_class(Path(tmp) / "class", copies)
        n_questions = sum(len(question_bank.for_exercise(grade.exercise_of(p))) for p in paths)
        start = time.perf_counter()
        written = grade.grade_all(
            paths, Path(tmp) / "gradebook", settings, references, workers=workers
        )
        seconds = time.perf_counter() - start
        with open(Path(tmp) / "gradebook" / "grades.csv", newline="") as book:
            rows = list(csv.DictReader(book))
        full = sum(float(r["total"]) == float(r["max"]) for r in rows)
    print(
        f"\n2. a class of {copies} students x {len(paths) // copies} notebooks = {len(paths)} "
        "submissions, "
        f"{n_questions} sandboxed questions, {workers} workers"
    )
    print(
        f"{'wall s':>8} {'submissions/min':>16} {'questions/min':>14} "
        f"{'s per question per worker':>26} {'full marks':>11}"
    )
    print(
        f"{seconds:>8.0f} {len(written) / seconds * 60:>16.1f} {n_questions / seconds * 60:>14.1f} "
        f"{seconds * workers / n_questions:>26.2f} {f'{full}/{len(rows)}':>11}"
    )


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument(
        "--copies",
        type=int,
        default=50,
        help="students in the class (each hands in every exercise)",
    )
    parser.add_argument("--workers", type=int, default=2)
    parser.add_argument(
        "--hidden", type=int, default=10, help="hidden cases per question (the grader's default)"
    )
    parser.add_argument("--skip-overhead", action="store_true")
    args = parser.parse_args()
    if sandbox.bubblewrap() is None:
        sys.exit("benchmarks/grading.py needs bubblewrap (apt-get install bubblewrap)")
    settings = grade.Settings(limits=sandbox.Limits(), hidden=args.hidden, seed=2026)
    references = grade.default_references(ROOT)
    if not args.skip_overhead:
        overhead_table(settings, references)
    throughput(settings, references, args.copies, args.workers)


if __name__ == "__main__":
    main()
