"""`mmcourse grade`: grade learners' exercise notebooks without trusting them.

For each submission:

1. **rebuild** it from the reference exercise: only the code cells tagged with a question id are
   taken from the learner (one per question; a missing, duplicated or retyped cell makes that
   question `missing`); every other cell, the kernelspec included, comes from the reference;
2. for each question, draw its hidden cases in this (trusted) process from a grading seed, and run
   the learner's answer on the visible and hidden cases as its own sandboxed `python -I` process
   (`mmcourse.grading.sandbox`): the reference cells before the answer, then the library's
   reference implementation replaced by a stub that raises, then the answer. Inputs go in as plain
   data, outputs come back as plain data; nothing is unpickled;
3. judge the outputs here, with the question's oracle and comparison: `passed`, `failed`, `error`,
   `timeout`, `crashed` or `missing`, with points and feedback that names the case and what kind
   of value was expected, never the hidden answer.

The grading run survives attacks on itself, not only on one question:

- **collection** (`handins`) takes only regular files of the submission: a hand-in is opened
  without following a link (`O_NOFOLLOW`) or blocking (`O_NONBLOCK`), and `fstat` on what was
  opened must say a regular file with one name; a symbolic link, hard link, named pipe, device,
  socket or folder named `*.ipynb` is `refused`, named in the gradebook with the reason, and never
  read;
- **any bytes** give that hand-in a status (`graded`, `unreadable`, `refused`, `unknown exercise`,
  `ungraded`) and never stop the others: every failure of this process on one hand-in, or on one of
  its questions, is caught there and recorded (`ungraded`, 0 points, the error named for the
  instructor);
- whatever the child's output puts into feedback is **echoed bounded**: one line, at most a few
  hundred characters, no control characters or lone surrogates.

Results are written by this process only: `OUT/<name>-<hash>.json` per submission (the sanitized
file name and a hash of its content: two students' `ex03.ipynb` never collide, and a rerun skips
what is graded), the per-student feedback `OUT/<name>-<hash>.feedback.md`, and `OUT/grades.csv` (one
row per submission, a column per question), all written atomically, CSV cells escaped against
formula injection.
"""

from __future__ import annotations

import ast
import csv
import io
import json
import os
import random
import re
from collections.abc import Mapping, Sequence
from dataclasses import asdict, dataclass, field
from pathlib import Path

import nbformat

from ..course.release import BEGIN
from . import question_bank, sandbox
from .handins import (
    MAX_NOTEBOOK_BYTES,
    HandIn,
    answer_cells,
    collect,
    digest,
    exercise_of,
    read_hand_in,
    read_submission,
    safe_name,
)
from .judging import Question
from .question_bank import QuestionBank

__all__ = [
    "FORMULA_START",
    "MAX_ANSWER_CHARS",
    "MAX_NOTEBOOK_BYTES",
    "STATUSES",
    "SUBMISSION_STATUSES",
    "HandIn",
    "QuestionGrade",
    "Settings",
    "SubmissionGrade",
    "answer_cells",
    "class_seed",
    "collect",
    "default_references",
    "digest",
    "exercise_of",
    "feedback_text",
    "grade_all",
    "grade_question",
    "grade_submission",
    "read_hand_in",
    "read_submission",
    "reference_setup",
    "result_path",
    "safe_name",
    "shard",
    "uses_reference",
    "write_csv",
    "write_result",
]

#: a question's status; "ungraded": this process failed on the answer (0 points, for an instructor)
STATUSES = ("passed", "failed", "error", "timeout", "crashed", "missing", "ungraded")
#: a hand-in's status as a whole
SUBMISSION_STATUSES = ("graded", "unreadable", "refused", "unknown exercise", "ungraded")
#: the longest answer cell graded (a longer one is an error, never parsed or run)
MAX_ANSWER_CHARS = 1_000_000
#: the most characters of the child's own words (an error message, a reason) put into feedback
ECHO_CHARS = 300
FORMULA_START = ("=", "+", "-", "@", "\t", "\r")


@dataclass(frozen=True)
class QuestionGrade:
    qid: str
    status: str
    points: float
    max_points: int
    feedback: str = ""
    flagged: str = ""  # the static check's finding, e.g. "uses mmcourse.vlm.visual_qa"


@dataclass(frozen=True)
class SubmissionGrade:
    name: str  # the sanitized file name
    digest: str  # sha256 of the submitted bytes (first 16 hex digits)
    exercise: str
    questions: list[QuestionGrade] = field(default_factory=list)
    problem: str = ""  # why the hand-in (or part of it) was not graded
    sandboxed: bool = True
    status: str = "graded"  # one of SUBMISSION_STATUSES

    @property
    def total(self) -> float:
        return sum(q.points for q in self.questions)

    @property
    def max_total(self) -> int:
        return sum(q.max_points for q in self.questions)


# --- reading a submission
# ----------------------------------------------------------------------------------


def echo(text: object, limit: int = ECHO_CHARS) -> str:
    """Text that came from a learner's process, fit for feedback: one line (control characters and
    line breaks become spaces, so it cannot forge lines of the feedback), lone surrogates replaced
    (so it can always be written as UTF-8), at most `limit` characters."""
    try:
        text = str(text)
    except Exception:  # any object whose __str__ fails
        text = "?"
    text = text[: limit * 4].encode("utf-8", "replace").decode("utf-8")
    text = re.sub(r"[\x00-\x1f\x7f-\x9f\u2028\u2029]+", " ", text).strip()
    return text if len(text) <= limit else text[: limit - 3] + "..."


def reference_setup(reference: nbformat.NotebookNode, qid: str) -> str:
    """The reference's code cells before `qid`'s answer cell, without other answers and checks."""
    setup = []
    for cell in reference.cells:
        if cell.cell_type != "code":
            continue
        if qid in cell.metadata.get("tags", []):
            return "\n".join(setup)
        if cell.metadata.get("tags") or "check(" in cell.source or BEGIN in cell.source:
            continue
        setup.append(cell.source)
    raise ValueError(f"the reference exercise has no answer cell tagged {qid}")


def uses_reference(answer: str, names: Sequence[str]) -> str:
    """A static finding when the answer's code names a reference implementation, else "".

    It catches the name written out: an import, an attribute, a bare name, or a string constant that
    is the name (`getattr(module, "zero_shot_predict")`). It does not catch a name built at run time
    (`getattr(m, "zero_" + "shot_predict")`, `importlib`, `globals()`), a reload of the library, or
    the library's code copied into the answer; the sandbox's stub catches calls through the
    library's own names. Neither is a security boundary: the library is public.
    """
    try:
        tree = ast.parse(answer)
    except Exception:  # null bytes, lone surrogates, nesting too deep: the child says
        return ""
    leaves = {name.rsplit(".", 1)[-1] for name in names}
    for node in ast.walk(tree):
        named = None
        if isinstance(node, ast.Attribute) and node.attr in leaves:
            named = node.attr
        elif isinstance(node, ast.Name) and node.id in leaves:
            named = node.id
        elif isinstance(node, ast.alias) and node.name.rsplit(".", 1)[-1] in leaves:
            named = node.name
        elif (
            isinstance(node, ast.Constant)
            and isinstance(node.value, str)
            and node.value.rsplit(".", 1)[-1] in leaves
        ):
            named = node.value
        if named:
            full = next(n for n in names if n.rsplit(".", 1)[-1] == named.rsplit(".", 1)[-1])
            return f"the answer uses {full}, the reference implementation"
    return ""


# --- grading
# --------------------------------------------------------------------------------------------------


@dataclass(frozen=True)
class Settings:
    limits: sandbox.Limits = sandbox.Limits()
    hidden: int = 10  # hidden cases per question, on top of the visible ones
    seed: int = 0  # the hidden cases' seed: keep it private, pick a new one per class
    unsafe: bool = False
    #: the questions of this grading run: the built-ins, or with an instructor's private variants
    bank: QuestionBank | None = None

    @property
    def questions(self) -> QuestionBank:
        return self.bank if self.bank is not None else question_bank.builtin()


def grade_question(
    question: Question, reference: nbformat.NotebookNode, answer: str | None, settings: Settings
) -> tuple[QuestionGrade, bool]:
    """Grade one answer; returns the grade and whether it ran in the sandbox."""
    if answer is None:
        return QuestionGrade(
            question.qid,
            "missing",
            0,
            question.points,
            f"no code cell tagged {question.qid}: restore the answer cell of the exercise "
            "(its tag names the question) and put your answer in it",
        ), True
    if len(answer) > MAX_ANSWER_CHARS:
        return QuestionGrade(
            question.qid,
            "error",
            0,
            question.points,
            f"the answer cell has {len(answer)} characters, more than the {MAX_ANSWER_CHARS} a "
            "graded answer may have",
        ), True
    flagged = uses_reference(answer, question.reference_names)
    seed = random.Random(f"{settings.seed}:{question.qid}").randrange(2**63)
    cases = [*question.visible, *question.hidden_cases(seed, settings.hidden)]
    job = {
        "setup": reference_setup(reference, question.qid),
        "answer": answer,
        "name": question.name,
        "prepare": question.prepare_name,
        "stub": list(question.reference_names),
        "cases": cases,
    }
    done = sandbox.run(job, settings.limits, unsafe=settings.unsafe)
    grade = _judge(question, cases, done)
    if flagged:
        grade = QuestionGrade(
            grade.qid,
            "failed" if grade.status == "passed" else grade.status,
            0,
            question.points,
            f"{flagged}: write it yourself. {grade.feedback}".strip(),
            flagged,
        )
    return grade, done.sandboxed


def _judge(question: Question, cases: list[dict], done: sandbox.Run) -> QuestionGrade:
    def grade(status: str, feedback: str) -> QuestionGrade:
        return QuestionGrade(
            question.qid,
            status,
            question.points if status == "passed" else 0,
            question.points,
            feedback,
        )

    if done.status == "timeout":
        return grade(
            "timeout",
            f"{question.name} did not finish within {done.reason.split()[-2]} s on "
            f"{len(cases)} cases; look for an endless loop, or make it faster",
        )
    if done.status == "bad result":
        return grade(
            "crashed",
            f"the answer's process sent back something that is not a result ({echo(done.reason)});"
            " does the answer write to files or descriptors it did not open?",
        )
    if done.status != "ok":
        return grade("crashed", f"the answer's process ended abnormally: {echo(done.reason)}")
    result = done.result if isinstance(done.result, dict) else {}
    for key in ("setup_error", "answer_error"):
        if isinstance(result.get(key), str):
            where = "the answer cell" if key == "answer_error" else "the exercise's own cells"
            return grade("error", f"running {where} raised {echo(result[key])}")
    outputs = result.get("outputs")
    if not isinstance(outputs, list) or len(outputs) != len(cases):
        return grade("crashed", "the answer's process did not return one output per case")
    visible = len(question.visible)
    for index, (case, output) in enumerate(zip(cases, outputs)):
        label = (
            f"visible case {index + 1}" if index < visible else f"hidden case {index - visible + 1}"
        )
        described = question.describe(case)
        if (
            not isinstance(output, dict)
            or len(output) != 1
            or not {"value", "error", "unplain"} & set(output)
        ):
            return grade("crashed", f"{label}: the answer's process returned something malformed")
        if "unplain" in output:
            return grade(
                "failed",
                f"{label} ({described}): {question.name} returned a value that is not plain data "
                f"({echo(output['unplain'], 200)}); return tensors, arrays, numbers or strings",
            )
        if "error" in output:
            message = echo(output["error"])
            return grade("error", f"{label} ({described}): {question.name} raised {message}")
        verdict = question.judge(index, case, output["value"])
        if verdict.status != "passed":
            hint = f" Hint: {verdict.hint}" if verdict.hint else ""
            return grade("failed", f"{label} ({described}): {verdict.reason}.{hint}")
    return grade(
        "passed",
        f"all {len(cases)} cases passed ({visible} visible, {len(cases) - visible} hidden)",
    )


def _unasked(asked, reason: str) -> list[QuestionGrade]:
    return [QuestionGrade(q.qid, "missing", 0, q.points, reason) for q in asked]


def grade_submission(
    path: Path,
    settings: Settings,
    references: dict[str, Path],
    *,
    name: str | None = None,
    exercise: str | None = None,
) -> SubmissionGrade:
    """Grade every question of the exercise `path` belongs to; never raises for what the hand-in
    holds.

    `name` (e.g. the hub user name) replaces the folder in the gradebook's name for it;
    `exercise` overrides the exercise read from the file name.
    """
    path = Path(path)
    hand_in = read_hand_in(path)
    named = safe_name(path, name)
    exercise = exercise or exercise_of(path)
    try:
        return _grade(path, hand_in, named, exercise, settings, references)
    except sandbox.SandboxError:  # the machine cannot isolate: that stops the run, loudly
        raise
    except Exception as error:  # a failure here must cost this hand-in, not the class
        return SubmissionGrade(
            named,
            hand_in.digest,
            exercise or "?",
            [],
            f"the grader failed on this hand-in ({type(error).__name__}: {echo(error)}); it was "
            "not graded and the others were",
            status="ungraded",
        )


def _grade(
    path: Path,
    hand_in: HandIn,
    name: str,
    exercise: str | None,
    settings: Settings,
    references: dict[str, Path],
) -> SubmissionGrade:
    if exercise is None or exercise not in references:
        return SubmissionGrade(
            name,
            hand_in.digest,
            exercise or "?",
            [],
            hand_in.problem
            or f"cannot tell which exercise {echo(path.name)} is: its name "
            "must start with the exercise (e.g. ex03_contrastive.ipynb)",
            status=hand_in.status or "unknown exercise",
        )
    asked = settings.questions.for_exercise(exercise)
    if hand_in.data is None:
        reason = f"the hand-in was {hand_in.status}: {hand_in.problem}"
        return SubmissionGrade(
            name,
            hand_in.digest,
            exercise,
            _unasked(asked, reason),
            hand_in.problem,
            status=hand_in.status,
        )
    reference = nbformat.read(references[exercise], as_version=4)
    notebook, problem = read_submission(hand_in.data)
    if notebook is None:
        return SubmissionGrade(
            name,
            hand_in.digest,
            exercise,
            _unasked(asked, f"the notebook cannot be read: {problem}"),
            problem,
            status="unreadable",
        )
    answers = answer_cells(notebook, [q.qid for q in asked])
    graded, sandboxed = [], True
    for question in asked:
        try:
            grade, was_sandboxed = grade_question(
                question, reference, answers[question.qid], settings
            )
        except sandbox.SandboxError:
            raise
        except Exception as error:  # this question only: the others are graded
            grade, was_sandboxed = (
                QuestionGrade(
                    question.qid,
                    "ungraded",
                    0,
                    question.points,
                    f"the grader failed on this answer ({type(error).__name__}: {echo(error)}); "
                    "an instructor must look at it",
                ),
                True,
            )
        graded.append(grade)
        sandboxed &= was_sandboxed
    failed = [q.qid for q in graded if q.status == "ungraded"]
    return SubmissionGrade(
        name,
        hand_in.digest,
        exercise,
        graded,
        f"the grader failed on {', '.join(failed)}" if failed else "",
        sandboxed=sandboxed,
        status="ungraded" if failed else "graded",
    )


# --- the gradebook
# --------------------------------------------------------------------------------------------


def _atomic_write(path: Path, text: str) -> None:
    tmp = path.with_name(f".{path.name}.{os.getpid()}.tmp")
    # a lone surrogate must not make a result unwritable
    tmp.write_text(text, encoding="utf-8", errors="backslashreplace")
    os.replace(tmp, path)


def result_path(out: Path, path: Path, name: str | None = None) -> Path:
    """Where the result of the hand-in `path` is (or will be): its gradebook name and content hash,
    read as grading reads it (a link or pipe is never followed). `name` as in `grade_submission`."""
    return out / f"{safe_name(Path(path), name)}-{read_hand_in(Path(path)).digest}.json"


def write_result(out: Path, grade: SubmissionGrade) -> Path:
    target = out / f"{grade.name}-{grade.digest}.json"
    record = {**asdict(grade), "total": grade.total, "max_total": grade.max_total}
    _atomic_write(target, json.dumps(record, indent=1) + "\n")
    _atomic_write(target.with_suffix(".feedback.md"), feedback_text(grade))
    return target


def feedback_text(grade: SubmissionGrade) -> str:
    """What an instructor hands back: one line per question, status, points and advice (Markdown,
    HTML-escaped)."""
    import html

    lines = [
        f"# Feedback: {html.escape(grade.exercise)} ({html.escape(grade.name)})",
        "",
        f"**Total: {grade.total:g} / {grade.max_total}**",
        "",
    ]
    if not grade.sandboxed:
        lines += ["**Graded without a sandbox (--unsafe).**", ""]
    status = getattr(grade, "status", "graded")
    if grade.problem:
        opening = {
            "refused": "This hand-in was refused",
            "unreadable": "The notebook could not be read",
            "ungraded": "Part of this hand-in could not be graded",
        }.get(status, "This hand-in was not graded")
        lines += [f"{opening}: {html.escape(echo(grade.problem, 500))}.", ""]
    for q in grade.questions:
        lines.append(
            f"- `{q.qid}`: **{q.status}**, {q.points:g} / {q.max_points}. {html.escape(q.feedback)}"
        )
    return "\n".join(lines) + "\n"


def _cell(value) -> str:
    text = str(value)
    return "'" + text if text.startswith(FORMULA_START) else text


def write_csv(out: Path) -> Path:
    """`OUT/grades.csv` from every result file in OUT (so shards merge by copying their JSON files
    together)."""
    records = []
    for path in sorted(out.glob("*.json")):
        try:
            record = json.loads(path.read_text(encoding="utf-8"))
        except (OSError, ValueError):
            continue
        needed = ("name", "digest", "exercise", "total", "max_total", "sandboxed")
        if isinstance(record, dict) and all(key in record for key in needed):
            records.append(record)
    qids = sorted({q["qid"] for r in records for q in _questions(r)})
    buffer = io.StringIO()
    writer = csv.writer(buffer)
    writer.writerow(
        [
            "submission",
            "sha256",
            "exercise",
            *qids,
            "status",
            "total",
            "max",
            "sandboxed",
            "problem",
        ]
    )
    for r in records:
        points = {q["qid"]: q.get("points", "") for q in _questions(r)}
        writer.writerow(
            [
                _cell(c)
                for c in (
                    r["name"],
                    r["digest"],
                    r["exercise"],
                    *[points.get(q, "") for q in qids],
                    r.get("status", "graded"),
                    r["total"],
                    r["max_total"],
                    r["sandboxed"],
                    r.get("problem", ""),
                )
            ]
        )
    target = out / "grades.csv"
    _atomic_write(target, buffer.getvalue())
    return target


def _questions(record: dict) -> list[dict]:
    questions = record.get("questions")
    if not isinstance(questions, list):
        return []
    return [q for q in questions if isinstance(q, dict) and isinstance(q.get("qid"), str)]


def shard(paths: list[Path], spec: str | None) -> list[Path]:
    """The submissions of shard "i/n" (1-based): a stable split by content hash, so every machine
    agrees."""
    if not spec:
        return paths
    match = re.fullmatch(r"(\d+)/(\d+)", spec)
    if not match or not 1 <= int(match.group(1)) <= int(match.group(2)):
        raise ValueError(f"--shard must look like 2/5 (shard 2 of 5), got {spec!r}")
    i, n = int(match.group(1)), int(match.group(2))
    return [p for p in paths if int(read_hand_in(Path(p)).digest, 16) % n == i - 1]


def class_seed(out: Path, seed: int | None, sharded: bool = False) -> int:
    """The hidden cases' seed for the gradebook `out`: the one given, else the one saved there, else
    a fresh secret.

    A public seed (the default of a grader everyone can read) would let a learner draw the hidden
    cases in advance, so none is built in. The seed is saved in `out` (which the sandbox never
    sees), so a rerun grades the rest of the class on the same cases; shards on other machines must
    be given the same --seed explicitly.
    """
    import secrets

    saved = out / "grading-seed.txt"
    if saved.exists():
        recorded = int(saved.read_text().strip())
        if seed is not None and seed != recorded:
            raise ValueError(
                f"{out} was graded with another seed ({saved}); grading the rest with --seed "
                f"{seed} "
                "would give the class different hidden cases. Use a new --out folder."
            )
        return recorded
    if seed is None:
        if sharded:
            raise ValueError(
                "--shard needs --seed: every shard must draw the same hidden cases (pick a private "
                "number)."
            )
        seed = secrets.randbelow(2**31)
    out.mkdir(parents=True, exist_ok=True)
    _atomic_write(saved, f"{seed}\n")
    return seed


def grade_all(
    paths: Sequence[Path],
    out: Path,
    settings: Settings,
    references: dict[str, Path],
    workers: int = 1,
    progress: bool = True,
    *,
    names: Mapping[Path, str] | None = None,
    exercise: str | None = None,
) -> list[Path]:
    """Grade what is not graded yet (by content hash) into `out`; returns the result files
    written. Every path gets a result, whatever it holds (see `grade_submission`).

    `names`: path -> the name to key its row by (e.g. the hub user name); `exercise`: the exercise
    of every path, when file names do not say it."""
    from concurrent.futures import ThreadPoolExecutor

    from tqdm.auto import tqdm

    out.mkdir(parents=True, exist_ok=True)
    names = dict(names or {})

    def one(path: Path) -> SubmissionGrade:
        return grade_submission(path, settings, references, name=names.get(path), exercise=exercise)

    todo = [p for p in paths if not result_path(out, p, names.get(p)).exists()]
    written: list[Path] = []
    with ThreadPoolExecutor(max_workers=max(1, workers)) as pool:
        for grade in tqdm(
            pool.map(one, todo), total=len(todo), desc="grading", disable=not progress
        ):
            # each as soon as it is done: an interruption loses nothing
            written.append(write_result(out, grade))
    write_csv(out)
    return written


def default_references(root: Path | None = None) -> dict[str, Path]:
    """The released exercises (exercises/exNN_*.ipynb) by exercise id."""
    from ..course.release import course_root

    folder = (root or course_root()) / "exercises"
    return {exercise_of(p): p for p in sorted(folder.glob("ex*.ipynb")) if exercise_of(p)}
