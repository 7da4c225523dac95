"""`mmcourse grade`: grade learners' exercise notebooks without trusting them.

For each submission:

1. **rebuild** it from the reference exercise: only the code cells tagged with a question id are
  taken from the
   learner (one per question; a missing, duplicated or retyped cell makes that question `missing`);
   every other cell, the kernelspec included, comes from the reference;
2. for each question, draw its hidden cases in this (trusted) process from a grading seed, and run
  the learner's
   answer on the visible and hidden cases as its own sandboxed `python -I` process
   (`mmcourse.grading.sandbox`): the reference cells before the answer, then the library's reference
   implementation replaced by a stub that raises, then the answer. Inputs go in as plain data,
   outputs come back as plain data; nothing is unpickled;
3. judge the outputs here, with the question's oracle and comparison: `passed`, `failed`, `error`,
  `timeout`,
   `crashed` or `missing`, with points and feedback that names the case and what kind of value was
   expected, never the hidden answer.

Results are written by this process only: `OUT/<name>-<hash>.json` per submission (the sanitized
file name and a hash of its content: two students' `ex03.ipynb` never collide, and a rerun skips
what is graded), the per-student feedback `OUT/<name>-<hash>.feedback.md`, and `OUT/grades.csv` (one
row per submission, a column per question), all written atomically, CSV cells escaped against
formula injection.
"""

from __future__ import annotations

import ast
import csv
import hashlib
import io
import json
import os
import random
import re
from collections.abc import Iterable, Sequence
from dataclasses import asdict, dataclass, field
from pathlib import Path

import nbformat

from ..course.release import BEGIN
from . import question_bank, sandbox
from .judging import Question
from .question_bank import QuestionBank

__all__ = [
    "FORMULA_START",
    "MAX_NOTEBOOK_BYTES",
    "STATUSES",
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
    "read_submission",
    "reference_setup",
    "result_path",
    "safe_name",
    "shard",
    "uses_reference",
    "write_csv",
    "write_result",
]

STATUSES = ("passed", "failed", "error", "timeout", "crashed", "missing")
MAX_NOTEBOOK_BYTES = 20_000_000
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
    problem: str = ""  # the whole notebook could not be read
    sandboxed: bool = True

    @property
    def total(self) -> float:
        return sum(q.points for q in self.questions)

    @property
    def max_total(self) -> int:
        return sum(q.max_points for q in self.questions)


# --- reading a submission
# ----------------------------------------------------------------------------------


def exercise_of(path: Path) -> str | None:
    """The exercise a submission belongs to: "ex03" from its file name ("ex03_contrastive.ipynb",
    "ex03.ipynb")."""
    match = re.match(r"(ex\d\d)", path.name)
    return match.group(1) if match else None


def read_submission(data: bytes) -> tuple[nbformat.NotebookNode | None, str]:
    """A learner's notebook, or None and the reason it cannot be read (empty, not JSON, nbformat 3,
    huge)."""
    if not data.strip():
        return None, "the file is empty"
    if len(data) > MAX_NOTEBOOK_BYTES:
        return (
            None,
            f"the file is {len(data)} bytes, more than the {MAX_NOTEBOOK_BYTES} a notebook may "
            "have",
        )
    try:
        raw = json.loads(data)
    except (json.JSONDecodeError, UnicodeDecodeError) as error:
        return None, f"the file is not notebook JSON ({error.__class__.__name__})"
    if not isinstance(raw, dict) or raw.get("nbformat") != 4:
        return (
            None,
            "not an nbformat 4 notebook (nbformat "
            f"{raw.get('nbformat') if isinstance(raw, dict) else '?'}); save it from JupyterLab",
        )
    try:
        notebook = nbformat.reads(data.decode("utf-8"), as_version=4)
    except Exception as error:
        return None, f"the notebook is damaged ({error.__class__.__name__})"
    return notebook, ""


def answer_cells(notebook: nbformat.NotebookNode, qids: Iterable[str]) -> dict[str, str | None]:
    """The learner's source for each question: its one code cell tagged with the id, else None
    (missing)."""
    found: dict[str, list[str]] = {qid: [] for qid in qids}
    for cell in notebook.get("cells", []):
        tags = cell.get("metadata", {}).get("tags", [])
        if not isinstance(tags, list):
            continue
        for qid in found:
            if (
                qid in tags
                and cell.get("cell_type") == "code"
                and isinstance(cell.get("source"), str)
            ):
                found[qid].append(cell["source"])
    return {qid: sources[0] if len(sources) == 1 else None for qid, sources in found.items()}


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
    """A static finding when the answer's code names a reference implementation (import or
    attribute), else ""."""
    try:
        tree = ast.parse(answer)
    except SyntaxError:
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
            f"the answer's process sent back something that is not a result ({done.reason}); "
            "does the answer write to files or descriptors it did not open?",
        )
    if done.status != "ok":
        return grade("crashed", f"the answer's process ended abnormally: {done.reason}")
    result = done.result if isinstance(done.result, dict) else {}
    for key in ("setup_error", "answer_error"):
        if isinstance(result.get(key), str):
            where = "the answer cell" if key == "answer_error" else "the exercise's own cells"
            return grade("error", f"running {where} raised {result[key]}")
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
                f"({str(output['unplain'])[:200]}); return tensors, arrays, numbers or strings",
            )
        if "error" in output:
            message = str(output["error"])[:300]
            return grade("error", f"{label} ({described}): {question.name} raised {message}")
        verdict = question.judge(index, case, output["value"])
        if verdict.status != "passed":
            hint = f" Hint: {verdict.hint}" if verdict.hint else ""
            return grade("failed", f"{label} ({described}): {verdict.reason}.{hint}")
    return grade(
        "passed",
        f"all {len(cases)} cases passed ({visible} visible, {len(cases) - visible} hidden)",
    )


def digest(data: bytes) -> str:
    return hashlib.sha256(data).hexdigest()[:16]


def safe_name(path: Path) -> str:
    """ "alice__ex03_contrastive" for alice/ex03_contrastive.ipynb: the folder names the student, so
    two students'
    identical files (both handed in the untouched exercise) stay two rows."""
    parts = [
        re.sub(r"[^A-Za-z0-9_.-]+", "_", part).strip("._")[:40]
        for part in (path.resolve().parent.name, path.stem)
    ]
    return "__".join(part for part in parts if part) or "submission"


def grade_submission(
    path: Path, settings: Settings, references: dict[str, Path]
) -> SubmissionGrade:
    """Grade every question of the exercise `path` belongs to."""
    data = path.read_bytes()
    name, hashed = safe_name(path), digest(data)
    exercise = exercise_of(path)
    if exercise is None or exercise not in references:
        return SubmissionGrade(
            name,
            hashed,
            exercise or "?",
            [],
            f"cannot tell which exercise {path.name} is: its name "
            "must start with the exercise (e.g. ex03_contrastive.ipynb)",
        )
    reference = nbformat.read(references[exercise], as_version=4)
    asked = settings.questions.for_exercise(exercise)
    notebook, problem = read_submission(data)
    if notebook is None:
        graded = [
            QuestionGrade(q.qid, "missing", 0, q.points, f"the notebook cannot be read: {problem}")
            for q in asked
        ]
        return SubmissionGrade(name, hashed, exercise, graded, problem)
    answers = answer_cells(notebook, [q.qid for q in asked])
    graded, sandboxed = [], True
    for question in asked:
        grade, was_sandboxed = grade_question(question, reference, answers[question.qid], settings)
        graded.append(grade)
        sandboxed &= was_sandboxed
    return SubmissionGrade(name, hashed, exercise, graded, sandboxed=sandboxed)


# --- the gradebook
# --------------------------------------------------------------------------------------------


def _atomic_write(path: Path, text: str) -> None:
    tmp = path.with_name(f".{path.name}.{os.getpid()}.tmp")
    tmp.write_text(text, encoding="utf-8")
    os.replace(tmp, path)


def result_path(out: Path, path: Path) -> Path:
    return out / f"{safe_name(path)}-{digest(path.read_bytes())}.json"


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
    if grade.problem:
        lines += [f"The notebook could not be read: {html.escape(grade.problem)}.", ""]
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
            records.append(json.loads(path.read_text(encoding="utf-8")))
        except (OSError, json.JSONDecodeError):
            continue
    qids = sorted({q["qid"] for r in records for q in r.get("questions", [])})
    buffer = io.StringIO()
    writer = csv.writer(buffer)
    writer.writerow(
        ["submission", "sha256", "exercise", *qids, "total", "max", "sandboxed", "problem"]
    )
    for r in records:
        points = {q["qid"]: q["points"] for q in r.get("questions", [])}
        writer.writerow(
            [
                _cell(c)
                for c in (
                    r["name"],
                    r["digest"],
                    r["exercise"],
                    *[points.get(q, "") for q in qids],
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


def collect(paths: Iterable[Path]) -> list[Path]:
    """Every .ipynb given or inside the folders given, sorted, each once."""
    found = set()
    for path in paths:
        path = Path(path)
        found |= set(path.rglob("*.ipynb")) if path.is_dir() else {path}
    return sorted(found)


def shard(paths: list[Path], spec: str | None) -> list[Path]:
    """The submissions of shard "i/n" (1-based): a stable split by content hash, so every machine
    agrees."""
    if not spec:
        return paths
    match = re.fullmatch(r"(\d+)/(\d+)", spec)
    if not match or not 1 <= int(match.group(1)) <= int(match.group(2)):
        raise ValueError(f"--shard must look like 2/5 (shard 2 of 5), got {spec!r}")
    i, n = int(match.group(1)), int(match.group(2))
    return [p for p in paths if int(digest(p.read_bytes()), 16) % n == i - 1]


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
) -> list[Path]:
    """Grade what is not graded yet (by content hash) into `out`; returns the result files
    written."""
    from concurrent.futures import ThreadPoolExecutor

    from tqdm.auto import tqdm

    out.mkdir(parents=True, exist_ok=True)
    todo = [p for p in paths if not result_path(out, p).exists()]
    written: list[Path] = []
    with ThreadPoolExecutor(max_workers=max(1, workers)) as pool:
        for grade in tqdm(
            pool.map(lambda p: grade_submission(p, settings, references), todo),
            total=len(todo),
            desc="grading",
            disable=not progress,
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
