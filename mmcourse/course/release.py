"""`mmcourse release` and `mmcourse start`: exercises generated from solutions, copied for a
learner.

`solutions/exNN_*.ipynb` is the one source of truth. In it, the learner's part of an answer cell
sits between nbgrader's markers `### BEGIN SOLUTION` and `### END SOLUTION`, and the answer cell
carries a tag naming its question (e.g. `ex00_caption`). `release` writes `exercises/` from it: each
marked block becomes `raise NotImplementedError(...)` naming the question, outputs and execution
counts are cleared, tags and metadata are kept. `release --check` only compares, and names every
stale file.

`start exNN` copies an exercise into the learner's `workspace/` (ignored by git) and never
overwrites a copy that is already there, so updating the course never touches a learner's work.
"""

from __future__ import annotations

import json
import os
import re
from dataclasses import dataclass
from pathlib import Path

import nbformat

from ..grading import question_bank

__all__ = [
    "ANSWER_PLACEHOLDER",
    "WORKSPACE_ENV",
    "ReleaseError",
    "ReleasePlan",
    "copy_if_absent",
    "course_root",
    "exercise_names",
    "plan",
    "read_notebook",
    "release",
    "release_notebook",
    "start",
    "workspace_dir",
]

BEGIN, END = "### BEGIN SOLUTION", "### END SOLUTION"
ANSWER_PLACEHOLDER = "YOUR ANSWER HERE"
WORKSPACE_ENV = "MMCOURSE_WORKSPACE"


class ReleaseError(ValueError):
    """A solution notebook that cannot be released; the message names the file, the cell and the
    fix."""


def course_root() -> Path:
    """The folder that holds `solutions/` and `exercises/`: the clone the course was installed
    from."""
    root = Path(__file__).resolve().parents[2]
    if not (root / "solutions").is_dir():
        raise ReleaseError(
            "cannot find the course's solutions/ folder next to the mmcourse package; release and "
            "start work "
            "in a clone of the course installed with `pip install -e .` (see README.md)."
        )
    return root


def read_notebook(path: Path) -> nbformat.NotebookNode:
    """Read and validate a notebook; a corrupt file is one clear error naming it."""
    try:
        notebook = nbformat.read(path, as_version=4)
        nbformat.validate(notebook)
    except (json.JSONDecodeError, nbformat.reader.NotJSONError) as error:
        raise ReleaseError(
            f"{path} is not valid notebook JSON ({error}); restore it from git."
        ) from error
    except nbformat.ValidationError as error:
        raise ReleaseError(
            f"{path} is not a valid notebook: {error.message}; restore it from git."
        ) from error
    except (
        KeyError,
        TypeError,
        AttributeError,
        ValueError,
    ) as error:  # JSON, but not a notebook's structure
        raise ReleaseError(
            f"{path} is not a valid notebook ({type(error).__name__}: {error}); restore it from "
            "git."
        ) from error
    return notebook


def _stub_source(source: str, qid: str, where: str, markdown: bool) -> str:
    lines = source.split("\n")
    out: list[str] = []
    inside = False
    for number, line in enumerate(lines, 1):
        marker = line.strip()
        if marker == BEGIN:
            if inside:
                raise ReleaseError(f"{where}: line {number} opens a second {BEGIN} before {END}.")
            inside = True
            indent = line[: len(line) - len(line.lstrip())]
            if markdown:
                out.append(ANSWER_PLACEHOLDER)
            else:
                out.append(f"{indent}# YOUR CODE HERE")
                out.append(f'{indent}raise NotImplementedError("{qid}: write this part")')
        elif marker == END:
            if not inside:
                raise ReleaseError(f"{where}: line {number} has {END} without a {BEGIN} before it.")
            inside = False
        elif not inside:
            out.append(line)
    if inside:
        raise ReleaseError(f"{where}: {BEGIN} is never closed; add {END}.")
    return "\n".join(out)


def release_notebook(notebook: nbformat.NotebookNode, name: str) -> nbformat.NotebookNode:
    """The exercise version of a solution notebook (a new object; the input is not changed)."""
    exercise = nbformat.from_dict(json.loads(json.dumps(notebook)))
    known = question_bank.declared_ids()  # read from the definitions' source: no torch to import
    answered: set[str] = set()
    for index, cell in enumerate(exercise.cells):
        where = f"{name}, cell {index}"
        tags = cell.get("metadata", {}).get("tags", [])
        qids = [t for t in tags if t in known]
        if BEGIN in cell.source or END in cell.source:
            if len(qids) != 1:
                raise ReleaseError(
                    f"{where} has solution markers but {'no' if not qids else 'more than one'} "
                    "question tag; "
                    f"tag it with exactly one of: {', '.join(known)}."
                )
            cell.source = _stub_source(cell.source, qids[0], where, cell.cell_type == "markdown")
            answered.add(qids[0])
        if cell.cell_type == "code":
            cell.outputs = []
            cell.execution_count = None
    prefix = name.split("_", 1)[0]
    missing = [qid for qid in question_bank.declared_ids(prefix) if qid not in answered]
    if missing:
        raise ReleaseError(
            f"{name} has no answer cell (solution markers + tag) for {', '.join(missing)}."
        )
    return exercise


def _serialize(notebook: nbformat.NotebookNode) -> str:
    return nbformat.writes(notebook) + "\n"


@dataclass(frozen=True)
class ReleasePlan:
    """What `release` would write: exercise file name -> content, plus exercise files with no
    solution."""

    files: dict[str, str]
    orphans: tuple[str, ...]

    def stale(self, exercises_dir: Path) -> list[str]:
        out = []
        for name, content in self.files.items():
            path = exercises_dir / name
            if not path.exists():
                out.append(f"{name} (missing)")
            elif path.read_text(encoding="utf-8") != content:
                out.append(f"{name} (out of date)")
        out.extend(f"{name} (no solution notebook; delete it)" for name in self.orphans)
        return out


def plan(root: Path | None = None) -> ReleasePlan:
    root = root or course_root()
    files = {}
    for path in sorted((root / "solutions").glob("ex*.ipynb")):
        files[path.name] = _serialize(release_notebook(read_notebook(path), path.name))
    existing = (
        {p.name for p in (root / "exercises").glob("ex*.ipynb")}
        if (root / "exercises").is_dir()
        else set()
    )
    return ReleasePlan(files, tuple(sorted(existing - set(files))))


def release(root: Path | None = None, check: bool = False) -> list[str]:
    """Write `exercises/` (or, with `check`, only compare); return the stale files found before
    writing."""
    root = root or course_root()
    target = root / "exercises"
    result = plan(root)
    stale = result.stale(target)
    if not check:
        target.mkdir(exist_ok=True)
        for name, content in result.files.items():
            (target / name).write_text(content, encoding="utf-8")
        for name in result.orphans:
            (target / name).unlink()
    return stale


def workspace_dir(root: Path | None = None) -> Path:
    override = os.environ.get(WORKSPACE_ENV)
    return Path(override) if override else (root or course_root()) / "workspace"


def exercise_names(root: Path | None = None) -> list[str]:
    return sorted(p.name for p in ((root or course_root()) / "exercises").glob("ex*.ipynb"))


def start(
    exercise: str, workspace: Path | None = None, root: Path | None = None
) -> tuple[Path, bool]:
    """Copy exercise `exNN` into the workspace; return (path, copied). An existing copy is kept as
    it is."""
    root = root or course_root()
    if not re.fullmatch(r"ex\d\d", exercise):
        match = re.match(r"(ex\d\d)_", exercise)
        exercise = match.group(1) if match else exercise
    found = [n for n in exercise_names(root) if n.startswith(exercise + "_")]
    if not found:
        available = ", ".join(n.split("_", 1)[0] for n in exercise_names(root)) or "none"
        raise ValueError(f"no exercise {exercise!r}; available: {available}.")
    workspace = workspace or workspace_dir(root)
    workspace.mkdir(parents=True, exist_ok=True)
    target = workspace / found[0]
    return target, copy_if_absent(root / "exercises" / found[0], target)


def copy_if_absent(source: Path, target: Path) -> bool:
    """Copy `source` to `target` unless `target` exists; returns whether it copied. A learner's
    file is never overwritten, even one that appears meanwhile ("x" mode fails if it exists)."""
    try:
        with open(target, "xb") as copy:
            copy.write(source.read_bytes())
    except FileExistsError:
        return False
    return True
