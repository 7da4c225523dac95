"""Hostile submissions under `mmcourse grade` and under nbgrader's `autograde`: which cases each
grader survives.

The cases are the ones `tests/test_grade.py` attacks our grader with (`HOSTILE`: each replaces the
body of `my_zero_shot` in solution 03), read from that file so that they stay defined once, plus
four attacks on the channels nbgrader trusts that our grader does not have: a patched `torch.equal`
(nbgrader's tests compare inside the student's kernel), an IPython input transformer that empties
the test cells (nbgrader scores a test cell by the absence of an error in its output), a write into
the course's `gradebook.db` (the kernel runs inside the course folder), and reading the instructor's
notebook with the hidden tests.

Each case is a class of three students graded in one batch: an honest one, the hostile one, an
honest one (in this order, so a case that corrupts what was graded before it, or stops the batch,
shows). Both graders grade exercise 03's three questions: the contrastive loss (3 points, before the
attacked answer), zero-shot (2, attacked) and recall@k (2, after it). nbgrader gets the course an
instructor would write: `source/ex03/ex03.ipynb` with nbgrader's cell metadata, answer cells from
the solution, locked test cells that compare with a reference using `torch.equal`/`assert` on the
same visible cases as ours and on seeded `### BEGIN HIDDEN TESTS`, a cell timeout
(`Execute.timeout`) equal to our sandbox's wall time; `nbgrader generate_assignment`, then `nbgrader
autograde`, then the scores from its gradebook.

A grader *survives* a case when the attacked question gets no more points than the answer deserves
(0, except for "forged result channel", whose answer is correct besides its attack), the student's
other two questions keep their full points, and both classmates keep theirs (7/7).

nbgrader sets no limit on processes, memory or output, and this machine runs everything as root,
where RLIMIT_NPROC does not bind. So every nbgrader command runs confined by this script, and the
confinement is checked before any case runs: its own PID namespace (whatever the student leaves
running dies with nbgrader), an unprivileged user (so RLIMIT_NPROC binds), RLIMIT_NPROC and
RLIMIT_AS caps, `nice`, and a wall-clock limit per batch. The cap changes nothing for the other
cases; for the fork bomb and the memory bomb it is what stands between them and the host, so their
nbgrader verdict is marked as holding only under it (and counted apart in the totals).

Install nbgrader in its own virtual environment (nothing is installed by this script):

    /usr/bin/python3 -m venv runs/nbgrader-venv runs/nbgrader-venv/bin/pip install nbgrader
    torch==2.13.0 numpy ipykernel pillow

(the system's Python, not one under /root such as pyenv's: the unprivileged user must be able to run
it; torch pinned: unpinned it downloads gigabytes; pillow so that `mmcourse`, put on the kernel's
path as a course's grading environment would have it, imports there.) Run, as root (for the
confinement) with bubblewrap installed:

    .venv/bin/python benchmarks/nbgrader_comparison.py [--cases "infinite loop,sys.exit"] [--keep]

A full run takes about 9 minutes on 2 cores. Progress goes to stderr, the Markdown tables to stdout.
"""

from __future__ import annotations

import argparse
import importlib
import json
import os
import re
import shutil
import subprocess
import sys
import tempfile
import time
from dataclasses import dataclass
from pathlib import Path

import nbformat

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT / "tests"))  # test_grade imports conftest from there
T = importlib.import_module("test_grade")  # HOSTILE, HONEST, FULL, SETTINGS, REFERENCES, submission

from mmcourse.grading import class_grader as grade  # noqa: E402

INSTALL = (
    "/usr/bin/python3 -m venv runs/nbgrader-venv && "
    "runs/nbgrader-venv/bin/pip install nbgrader torch==2.13.0 numpy ipykernel pillow"
)
STUDENTS = ("s1_before", "s2_hostile", "s3_after")
ATTACKED = "ex03_zero_shot"
NB_ID = {
    "ex03_contrastive_loss": "contrastive_loss",
    "ex03_zero_shot": "zero_shot",
    "ex03_recall_at_k": "recall_at_k",
}
FULL_TOTAL = sum(T.FULL.values())
# nbgrader's per-cell timeout = our per-question wall time
CELL_TIMEOUT = int(T.SETTINGS.limits.wall_seconds)
UNPRIVILEGED = 65534  # nobody
NPROC = 160  # tasks (threads count): nbgrader and its kernel use under 20 here
ADDRESS_SPACE = 6 << 30  # per process; torch maps about 1 GiB; the memory bomb asks for 8
BATCH_SECONDS = 300  # a whole batch; a timeout here means nbgrader did not come back
CAPPED = {"fork bomb", "memory bomb"}


@dataclass(frozen=True)
class Case:
    name: str
    body: str | None = None  # replaces the body of my_zero_shot, as in tests/test_grade.py
    cell: str | None = None  # or the whole answer cell
    deserved: int = 0  # points the answer earns if its attack does nothing
    origin: str = "tests"


def find_upwards(*parts: str) -> str:
    """Answer code that sets `path` to `parts` in the kernel's working directory or a folder above
    it (or None)."""
    joined = ", ".join(map(repr, parts))
    return (
        "import os\nhere = os.getcwd()\n"
        f"path = next((p for p in (os.path.join(here, *[os.pardir] * up, {joined}) for up in "
        "range(6))\n"
        "             if os.path.exists(p)), None)\n"
    )


ZEROS = "return torch.zeros(len(image_embeddings), dtype=torch.long)"
MINE = (
    "SELECT sn.id FROM submitted_notebook sn JOIN submitted_assignment sa ON sn.assignment_id = "
    "sa.id "
    "WHERE sa.student_id = ?"
)
NBGRADER_CHANNELS = [
    # at the cell's top level: inside the function it would come too late, `torch.equal` in the
    # test's `assert torch.equal(my_zero_shot(...), expected)` is looked up before my_zero_shot runs
    Case(
        "patched torch.equal",
        origin="nbgrader",
        cell=(
            "torch.equal = lambda *a, **k: True\n\n\ndef my_zero_shot(image_embeddings, "
            "class_embeddings):\n    " + ZEROS
        ),
    ),
    Case(
        "IPython input transformer",
        origin="nbgrader",
        cell=(
            "def my_zero_shot(image_embeddings, class_embeddings):\n    " + ZEROS + "\n\n\n"
            "try:  # in a Jupyter kernel: every later cell that mentions my_zero_shot runs as "
            "`pass`\n"
            "    get_ipython().input_transformers_post.append(\n"
            "        lambda lines: ['pass\\n'] if any('my_zero_shot' in line for line in lines) "
            "else lines)\n"
            "except NameError:\n    pass\n"
        ),
    ),
    Case(
        "gradebook.db write",
        origin="nbgrader",
        body=(
            find_upwards("gradebook.db")
            + "if path:  # full marks for me, zero for everyone graded before me\n"
            "    student = os.path.basename(os.path.dirname(here))\n"
            "    import sqlite3\n"
            "    with sqlite3.connect(path) as db:\n"
            f"        db.execute('UPDATE grade SET manual_score = 2 WHERE notebook_id IN ({MINE}) "
            "AND cell_id IN "
            "(SELECT id FROM base_cell WHERE name = \\'test_zero_shot\\')', (student,))\n"
            "        db.execute('UPDATE grade SET manual_score = 0 WHERE notebook_id NOT IN "
            f"({MINE})', (student,))\n" + ZEROS
        ),
    ),
    Case(
        "reading the hidden tests",
        origin="nbgrader",
        body=(
            find_upwards("source", "ex03", "ex03.ipynb")
            + "assert 'BEGIN HIDDEN TESTS' in open(path).read()\n"
            + T.HONEST
        ),
    ),
]


def all_cases() -> list[Case]:
    cases = []
    for name, (code, expected) in T.HOSTILE.items():
        statuses = (expected,) if isinstance(expected, str) else expected
        cases.append(
            Case(name, body=code, deserved=T.FULL[ATTACKED] if "passed" in statuses else 0)
        )
    return cases + NBGRADER_CHANNELS


# --- the nbgrader course
# ---------------------------------------------------------------------------------------

SETUP = "import numpy as np\nimport torch\nimport torch.nn.functional as F"
# The instructor's test cells: a reference written out, `assert` on mmcourse's visible cases (same
# seeds and shapes as mmcourse.questions.ex03), then as many seeded hidden cases as our grader draws
# (removed from the released notebook by generate_assignment, put back by autograde)
HIDDEN = (
    f"### BEGIN HIDDEN TESTS\nrng = np.random.default_rng({T.SETTINGS.seed})\nfor _ in "
    f"range({T.SETTINGS.hidden}):\n"
)
TESTS = {
    "contrastive_loss": (
        "def _loss(img, txt, t):\n"
        "    img, txt = F.normalize(img, dim=-1), F.normalize(txt, dim=-1)\n"
        "    logits, target = img @ txt.T / t, torch.arange(len(img))\n"
        "    return ((F.cross_entropy(logits, target) + F.cross_entropy(logits.T, target)) / "
        "2).item()\n\n"
        "def _check_loss(seed, batch, width, t):\n"
        "    rng = np.random.default_rng(seed)\n"
        "    img, txt = (torch.from_numpy(rng.standard_normal((batch, width)).astype(np.float32)) "
        "for _ in range(2))\n"
        "    got, expected = float(my_contrastive_loss(img.clone(), txt.clone(), t)), _loss(img, "
        "txt, t)\n"
        "    assert abs(got - expected) <= 1e-4 * max(1.0, abs(expected)), f'loss {got:.5f} is "
        "wrong'\n\n"
        "for case in [(0, 4, 8, 0.07), (1, 8, 16, 0.5), (2, 2, 4, 1.0)]:\n    _check_loss(*case)\n"
        + HIDDEN
        + "    _check_loss(int(rng.integers(2**31)), int(rng.integers(2, 17)), int(rng.choice([4, "
        "32])), "
        "float(rng.choice([0.05, 0.07, 0.2, 1.0])))\n### END HIDDEN TESTS"
    ),
    "zero_shot": (
        "def _embeddings(seed, images, classes, width):\n"
        "    rng = np.random.default_rng(seed)\n"
        "    return (torch.from_numpy(rng.standard_normal((images, width)).astype(np.float32)),\n"
        "            torch.from_numpy(rng.standard_normal((classes, "
        "width)).astype(np.float32)))\n\n"
        "def _check_zero_shot(img, cls):\n"
        "    expected = (F.normalize(img, dim=-1) @ F.normalize(cls, dim=-1).T).argmax(dim=1)\n"
        "    assert torch.equal(my_zero_shot(img.clone(), cls.clone()), expected), 'wrong "
        "classes'\n\n"
        "for case in [(0, 5, 3, 8), (1, 7, 10, 16)]:\n    _check_zero_shot(*_embeddings(*case))\n"
        + HIDDEN
        + "    _check_zero_shot(*_embeddings(int(rng.integers(2**31)), int(rng.integers(1, 21)), "
        "int(rng.integers(2, 31)), 16))\n### END HIDDEN TESTS"
    ),
    "recall_at_k": (
        "def _check_recall(seed, queries, candidates, k):\n"
        "    rng = np.random.default_rng(seed)\n"
        "    sim = torch.from_numpy(rng.standard_normal((queries, "
        "candidates)).astype(np.float32))\n"
        "    correct = torch.zeros(queries, candidates, dtype=torch.bool)\n"
        "    correct[torch.arange(queries), torch.from_numpy(rng.integers(0, candidates, "
        "queries))] = True\n"
        "    top = sim.argsort(dim=1, descending=True)[:, :k]\n"
        "    expected = sum(bool(correct[i, top[i]].any()) for i in range(queries)) / queries\n"
        "    assert abs(my_recall_at_k(sim.clone(), correct.clone(), k) - expected) < 1e-6, 'wrong "
        "recall'\n\n"
        "for case in [(0, 6, 5, 1), (1, 20, 10, 3), (2, 10, 10, 5)]:\n    _check_recall(*case)\n"
        + HIDDEN
        + "    candidates = int(rng.integers(2, 31))\n"
        "    _check_recall(int(rng.integers(2**31)), int(rng.integers(1, 41)), candidates, "
        "int(rng.integers(1, min(5, candidates) + 1)))\n### END HIDDEN TESTS"
    ),
}


def nbgrader_cell(
    source: str, grade_id: str, *, solution=False, grade=False, locked=False, points=None
):
    meta = {
        "grade": grade,
        "grade_id": grade_id,
        "locked": locked,
        "schema_version": 3,
        "solution": solution,
        "task": False,
    }
    if points is not None:
        meta["points"] = points
    return nbformat.v4.new_code_cell(source, metadata={"nbgrader": meta})


def answers(notebook: Path, markers: bool = False) -> dict[str, str]:
    """Our notebook's answer cells by nbgrader grade id; without `markers`, the solution markers
    dropped (a
    student's copy has none). Ours are nbgrader's own: `### BEGIN SOLUTION` / `### END SOLUTION`."""
    book = nbformat.read(notebook, as_version=4)
    found = {}
    for cell in book.cells:
        for qid in set(cell.metadata.get("tags", [])) & set(NB_ID):
            lines = cell.source.split("\n")
            found[NB_ID[qid]] = "\n".join(
                line
                for line in lines
                if markers or line.strip() not in ("### BEGIN SOLUTION", "### END SOLUTION")
            )
    return found


def source_notebook(solution: dict[str, str]) -> nbformat.NotebookNode:
    """Exercise 03 as an nbgrader instructor writes it: a locked setup cell, then per question an
    answer cell
    (the solution between nbgrader's markers) and a locked test cell worth the question's points."""
    cells = [
        nbformat.v4.new_markdown_cell("# Exercise 03: contrastive learning"),
        nbgrader_cell(SETUP, "setup", locked=True),
    ]
    for qid, grade_id in NB_ID.items():
        test = nbgrader_cell(
            TESTS[grade_id], "test_" + grade_id, grade=True, locked=True, points=T.FULL[qid]
        )
        cells += [nbgrader_cell(solution[grade_id], grade_id, solution=True), test]
    kernel = {"kernelspec": {"name": "python3", "display_name": "Python 3", "language": "python"}}
    return nbformat.v4.new_notebook(cells=cells, metadata=kernel)


def student_notebook(release: Path, notebook: Path) -> nbformat.NotebookNode:
    """The released notebook with the answer cells of `notebook` (one of ours) filled in."""
    book, filled = nbformat.read(release, as_version=4), answers(notebook)
    for cell in book.cells:
        grade_id = cell.metadata.get("nbgrader", {}).get("grade_id")
        if grade_id in filled:
            cell.source = filled[grade_id]
    return book


# --- running nbgrader confined
# -------------------------------------------------------------------------------


class Confined:
    """Commands of nbgrader's venv in their own PID namespace, as an unprivileged user, under
    rlimits and nice."""

    def __init__(self, venv: Path, home: Path):
        self.venv, self.home = venv, home
        for sub in ("config", "data", "runtime", "ipython", "mpl"):
            (home / sub).mkdir(parents=True, exist_ok=True)
        chown_tree(home)

    def command(self, args: list[str]) -> list[str]:
        # --kill-child: if we kill unshare (batch timeout), its child, the namespace's init, dies
        # and takes every process in the namespace with it, whatever the student forked or left
        # running
        return [
            "unshare",
            "--pid",
            "--fork",
            "--kill-child",
            "--",
            "prlimit",
            f"--nproc={NPROC}",
            f"--as={ADDRESS_SPACE}",
            "--",
            "setpriv",
            f"--reuid={UNPRIVILEGED}",
            f"--regid={UNPRIVILEGED}",
            "--clear-groups",
            "--",
            "nice",
            "-n",
            "10",
            *args,
        ]

    def env(self) -> dict[str, str]:
        h = self.home
        return {
            "PATH": f"{self.venv / 'bin'}{os.pathsep}/usr/bin{os.pathsep}/bin",
            "HOME": str(h),
            "LANG": "C.UTF-8",
            "JUPYTER_CONFIG_DIR": str(h / "config"),
            "JUPYTER_DATA_DIR": str(h / "data"),
            "JUPYTER_RUNTIME_DIR": str(h / "runtime"),
            "IPYTHONDIR": str(h / "ipython"),
            "MPLCONFIGDIR": str(h / "mpl"),
            "JUPYTER_PLATFORM_DIRS": "1",
            "OMP_NUM_THREADS": str(T.SETTINGS.limits.threads),
            # a course's grading environment has the course library installed ("the reference
            # function")
            "PYTHONPATH": str(ROOT),
            "HF_HUB_OFFLINE": "1",
        }

    def run(
        self, args: list[str], cwd: Path, log: Path, timeout: float
    ) -> tuple[int | None, float, float]:
        """(exit code, or None if killed at `timeout`; wall seconds; peak RSS in MB of the largest
        process that
        was waited for: nbgrader itself or its kernel); stdout and stderr go to `log`."""
        start = time.perf_counter()
        with open(log, "wb") as out:
            process = subprocess.Popen(
                self.command(args),
                cwd=cwd,
                env=self.env(),
                stdout=out,
                stderr=subprocess.STDOUT,
                stdin=subprocess.DEVNULL,
            )
            # wait4, not Popen.wait: its rusage has the peak RSS of the whole waited-for tree
            while True:
                pid, status, usage = os.wait4(process.pid, os.WNOHANG)
                if pid:
                    code = os.waitstatus_to_exitcode(status)
                    break
                if time.perf_counter() - start > timeout:
                    process.kill()  # unshare; --kill-child takes the namespace down with it
                    _, _, usage = os.wait4(process.pid, 0)
                    code = None
                    break
                time.sleep(0.2)
            process.returncode = code  # Popen must not wait for it again
        return code, time.perf_counter() - start, usage.ru_maxrss / 1024

    def verify(self, work: Path) -> str:
        """Check the cap from inside, in a child process as nbgrader's kernel is one; raise if any
        part is missing."""
        probe = (
            "import json, os, resource, subprocess, sys\n"
            "child = 'import json, os, resource; print(json.dumps([os.getuid(), os.getpid(), '\\\n"
            "'resource.getrlimit(resource.RLIMIT_NPROC)[0], "
            "resource.getrlimit(resource.RLIMIT_AS)[0], os.nice(0)]))'\n"
            "print(subprocess.run([sys.executable, '-c', child], capture_output=True, "
            "text=True).stdout)\n"
            "print(json.dumps(os.getpid()))"
        )
        log = work / "probe.log"
        code, _, _ = self.run([str(self.venv / "bin" / "python"), "-c", probe], work, log, 60)
        lines = [line for line in log.read_text().splitlines() if line.strip()]
        if code != 0 or len(lines) != 2:
            raise SystemExit(
                "the confinement for nbgrader does not work: it needs root, unshare, prlimit, "
                "setpriv, "
                f"and a venv whose Python user {UNPRIVILEGED} can run (make it with: {INSTALL}):\n"
                f"{log.read_text()[-2000:]}"
            )
        uid, child_pid, nproc, space, niceness = json.loads(lines[0])
        parent_pid = json.loads(lines[1])
        if not (
            uid == UNPRIVILEGED
            and nproc == NPROC
            and space == ADDRESS_SPACE
            and parent_pid == 1
            and niceness >= 10
        ):
            raise SystemExit(f"the confinement for nbgrader is not in force: {lines}")
        return (
            f"uid {uid}, RLIMIT_NPROC {nproc}, RLIMIT_AS {space >> 30} GiB, nice {niceness}, own "
            "PID namespace "
            f"(nbgrader is its PID 1, a child is {child_pid}), {BATCH_SECONDS} s per batch"
        )


def chown_tree(path: Path) -> None:
    for folder, dirs, files in os.walk(path):
        for name in [folder, *(os.path.join(folder, n) for n in dirs + files)]:
            os.lchown(name, UNPRIVILEGED, UNPRIVILEGED)


VERSIONS = (
    "import nbgrader, nbclient, torch\n"
    "print(f'nbgrader {nbgrader.__version__}, nbclient {nbclient.__version__}, torch "
    "{torch.__version__}')"
)
GRADEBOOK = """
import json, sys
from nbgrader.api import Gradebook
scores = {}
with Gradebook("sqlite:///" + sys.argv[1], "mmcourse_bench") as gb:
    for student in gb.students:
        try:
            submission = gb.find_submission_notebook("ex03", "ex03", student.id)
        except Exception:
            continue
        scores[student.id] = {g.name: [g.score, g.auto_score, g.manual_score, g.needs_manual_grade]
                              for g in submission.grades}
print(json.dumps(scores))
"""


def make_template(confined: Confined, work: Path, solution: dict[str, str]) -> Path:
    course = work / "template"
    (course / "source" / "ex03").mkdir(parents=True)
    (course / "nbgrader_config.py").write_text(
        "c = get_config()\n"
        "c.CourseDirectory.course_id = 'mmcourse_bench'\n"
        # Execute: nbgrader's subclass of nbconvert's ExecutePreprocessor, with its own `timeout`
        # (default 30 s)
        f"c.Execute.timeout = {CELL_TIMEOUT}  # seconds per cell: our sandbox's wall time per "
        "question\n"
    )
    nbformat.write(source_notebook(solution), course / "source" / "ex03" / "ex03.ipynb")
    chown_tree(course)
    code, _, _ = confined.run(
        ["nbgrader", "generate_assignment", "ex03"], course, work / "generate.log", 120
    )
    release = course / "release" / "ex03" / "ex03.ipynb"
    if code != 0 or not release.exists():
        raise SystemExit(
            f"nbgrader generate_assignment failed:\n{(work / 'generate.log').read_text()[-3000:]}"
        )
    return course


@dataclass
class Outcome:
    points: dict[str, dict[str, float | None]]  # student -> qid -> points (None: not graded)
    detail: str  # the attacked question's status or error name
    seconds: float
    note: str = ""  # how the batch ended, if not normally
    forged: bool = (
        False  # the hostile student's attacked question has a manual score no grader gave
    )
    peak_mb: float = 0.0  # nbgrader: the largest process's peak RSS


def run_nbgrader(
    confined: Confined, template: Path, folder: Path, notebooks: dict[str, Path]
) -> Outcome:
    course = folder / "course"
    shutil.copytree(template, course)
    release = template / "release" / "ex03" / "ex03.ipynb"
    for student, notebook in notebooks.items():
        target = course / "submitted" / student / "ex03" / "ex03.ipynb"
        target.parent.mkdir(parents=True)
        nbformat.write(student_notebook(release, notebook), target)
    chown_tree(course)
    log = folder / "autograde.log"
    code, seconds, peak = confined.run(
        ["nbgrader", "autograde", "ex03"], course, log, BATCH_SECONDS
    )
    found = subprocess.run(
        [str(confined.venv / "bin" / "python"), "-c", GRADEBOOK, str(course / "gradebook.db")],
        capture_output=True,
        text=True,
        check=True,
    ).stdout
    # student -> grade cell -> [score, auto_score, manual_score, needs_manual_grade]
    scores = json.loads(found)
    points, forged = {}, False
    for student in notebooks:
        points[student] = {}
        for qid, nb_id in NB_ID.items():
            score, auto, manual, _ = scores.get(student, {}).get("test_" + nb_id, [None] * 4)
            # neither an automatic nor a manual score: nbgrader did not grade it (its `score` would
            # say 0.0)
            points[student][qid] = None if auto is None and manual is None else score
            forged |= student == "s2_hostile" and qid == ATTACKED and manual is not None
    text = log.read_text(errors="replace")
    note = (
        ""
        if code == 0
        else (
            f"killed after {BATCH_SECONDS} s: autograde did not return"
            if code is None
            else f"autograde exit {code}"
        )
    )
    failed = failures(text)
    if failed:
        note += "; failed students: " + ", ".join(f"{student} ({why})" for student, why in failed)
    detail = attacked_detail(course / "autograded" / "s2_hostile" / "ex03" / "ex03.ipynb")
    return Outcome(points, detail, seconds, note.strip(), forged, peak)


def failures(log: str) -> list[tuple[str, str]]:
    """The students nbgrader gave up on, each with the exception that ends its traceback in the
    log."""
    starts = list(
        re.finditer(r"There was an error processing assignment: \S*/submitted/([^/\s]+)/", log)
    )
    found = []
    for start, end in zip(starts, [*starts[1:], None]):
        segment = log[start.end() : end.start() if end else None]
        errors = re.findall(r"^\s*(?:[\w.]+\.)?(\w+(?:Error|Exception|Exit)): (.*)$", segment, re.M)
        why = f"{errors[-1][0]}: {errors[-1][1].split('. ')[0][:90].rstrip('.')}" if errors else "?"
        found.append((start.group(1), why))
    return found


def attacked_detail(path: Path) -> str:
    """How the attacked question's test cell ended in the autograded notebook: its error's name, or
    'no error'."""
    if not path.exists():
        return "not graded"
    for cell in nbformat.read(path, as_version=4).cells:
        if cell.metadata.get("nbgrader", {}).get("grade_id") == "test_zero_shot":
            errors = [
                o.get("ename", "")
                for o in cell.get("outputs", [])
                if o.get("output_type") == "error"
            ]
            stderr = any(
                o.get("output_type") == "stream" and o.get("name") == "stderr"
                for o in cell.get("outputs", [])
            )
            return errors[-1] if errors else ("stderr output" if stderr else "no error")
    return "test cell missing"


# --- our grader
# ------------------------------------------------------------------------------------------------


def run_ours(folder: Path, notebooks: dict[str, Path]) -> Outcome:
    out = folder / "ours-out"
    start = time.perf_counter()
    grade.grade_all(list(notebooks.values()), out, T.SETTINGS, T.REFERENCES, progress=False)
    seconds = time.perf_counter() - start
    results = {r["name"]: r for r in (json.loads(p.read_text()) for p in out.glob("*.json"))}
    points, detail = {}, ""
    for student, notebook in notebooks.items():
        record = results.get(grade.safe_name(notebook), {"questions": []})
        points[student] = {q["qid"]: q["points"] for q in record["questions"]}
        if student == "s2_hostile":
            detail = next(
                (q["status"] for q in record["questions"] if q["qid"] == ATTACKED), "not graded"
            )
    return Outcome(points, detail, seconds)


def our_notebook(folder: Path, student: str, case: Case | None) -> Path:
    """Solution 03 as student `student`'s submission; `case` None: the honest rewrite."""
    name = f"ex03_{student}.ipynb"
    if case is None or case.body is not None:
        return T.submission(folder, name, T.HONEST if case is None else case.body)
    path = T.submission(folder, name)
    book = nbformat.read(path, as_version=4)
    for cell in book.cells:
        if ATTACKED in cell.metadata.get("tags", []):
            cell.source = case.cell
    nbformat.write(book, path)
    return path


# --- verdicts
# ------------------------------------------------------------------------------------------------


def verdict(outcome: Outcome, deserved: int) -> tuple[bool, str]:
    """(survived, "<how the attacked test ended> → 0/2, others 5/5, classmates 7 + 7/7")."""

    def total(points: list[float | None]) -> str:
        return "–" if None in points else f"{sum(points):g}"

    hostile = outcome.points["s2_hostile"]
    attacked, others = hostile.get(ATTACKED), [hostile.get(q) for q in T.FULL if q != ATTACKED]
    mates = [[outcome.points[s].get(q) for q in T.FULL] for s in STUDENTS if s != "s2_hostile"]
    survived = (
        (attacked or 0) <= deserved
        and not outcome.forged
        and all(hostile.get(q) == p for q, p in T.FULL.items() if q != ATTACKED)
        and all(None not in m and sum(m) == FULL_TOTAL for m in mates)
    )
    text = (
        f"{outcome.detail} → {'–' if attacked is None else f'{attacked:g}'}/{T.FULL[ATTACKED]}"
        f"{' (a forged manual score)' if outcome.forged else ''}, "
        f"others {total(others)}/{FULL_TOTAL - T.FULL[ATTACKED]}, "
        f"classmates {' + '.join(total(m) for m in mates)}/{FULL_TOTAL}"
    )
    if outcome.note:
        text += f"; {outcome.note}"
    return survived, text


def all_full(outcome: Outcome) -> bool:
    return all(outcome.points[s].get(q) == p for s in STUDENTS for q, p in T.FULL.items())


@dataclass
class Row:
    name: str
    ours: str
    theirs: str
    ours_ok: bool
    theirs_ok: bool  # under this script's cap
    capped: bool = False  # ran under nbgrader only thanks to this script's cap
    # ours, nbgrader's, nbgrader's peak RSS (MB)
    seconds: tuple[float, float, float] = (0.0, 0.0, 0.0)

    def cells(self) -> str:
        theirs = (
            ("only under this script's cap†" if self.theirs_ok else "no†")
            if self.capped
            else yes(self.theirs_ok)
        )
        return f"| {self.name} | {self.ours} | {self.theirs} | {yes(self.ours_ok)} | {theirs} |"


def yes(ok: bool) -> str:
    return "yes" if ok else "**no**"


def compare(case: Case | None, folder: Path, confined: Confined, template: Path) -> tuple[Row, int]:
    """Grade one batch (honest, `case`, honest; `case` None: three honest) with both graders; the
    row and the
    size in bytes of nbgrader's course folder afterwards."""
    name = "*control: all honest*" if case is None else case.name
    if case is not None and case.origin == "nbgrader":
        name += " (nbgrader's channels)"
    notebooks = {
        s: our_notebook(folder / "ours", s, case if s == "s2_hostile" else None) for s in STUDENTS
    }
    print(f"{name}: mmcourse ...", file=sys.stderr, end="", flush=True)
    ours = run_ours(folder, notebooks)
    print(f" {ours.seconds:.1f} s; nbgrader ...", file=sys.stderr, end="", flush=True)
    theirs = run_nbgrader(confined, template, folder, notebooks)
    print(f" {theirs.seconds:.1f} s ({theirs.note or 'returned'})", file=sys.stderr, flush=True)
    size = sum(p.stat().st_size for p in (folder / "course").rglob("*") if p.is_file())
    deserved = T.FULL[ATTACKED] if case is None else case.deserved
    (ours_ok, ours_text), (theirs_ok, theirs_text) = (
        verdict(ours, deserved),
        verdict(theirs, deserved),
    )
    if case is None:  # every honest answer must get full points, or the comparison means nothing
        ours_ok, theirs_ok = all_full(ours), all_full(theirs)
        if not (ours_ok and theirs_ok):
            print(
                f"WARNING: the control batch does not get full points: {ours_text} | {theirs_text}",
                file=sys.stderr,
            )
    return Row(
        name,
        ours_text,
        theirs_text,
        ours_ok,
        theirs_ok,
        case is not None and case.name in CAPPED,
        (ours.seconds, theirs.seconds, theirs.peak_mb),
    ), size


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--nbgrader-venv", type=Path, default=ROOT / "runs" / "nbgrader-venv")
    parser.add_argument("--cases", help="comma-separated case names (default: all); see --list")
    parser.add_argument("--list", action="store_true", help="print the case names and exit")
    parser.add_argument(
        "--keep", action="store_true", help="keep the work folder (courses, notebooks, logs)"
    )
    args = parser.parse_args()
    cases = all_cases()
    if args.list:
        print("\n".join(c.name for c in cases))
        return 0
    if args.cases:
        wanted = [n.strip() for n in args.cases.split(",") if n.strip()]
        unknown = sorted(set(wanted) - {c.name for c in cases})
        if unknown:
            parser.error(f"unknown cases {unknown}; known: {[c.name for c in cases]}")
        cases = [c for c in cases if c.name in wanted]
    venv = args.nbgrader_venv.resolve()
    if not (venv / "bin" / "nbgrader").exists():
        print(
            f"no nbgrader in {venv}. Install it (this script installs nothing) with:\n    "
            f"{INSTALL}",
            file=sys.stderr,
        )
        return 2
    if os.geteuid() != 0:
        print(
            "run as root: nbgrader is confined as an unprivileged user in its own PID namespace",
            file=sys.stderr,
        )
        return 2

    work = Path(tempfile.mkdtemp(prefix="nbgrader-comparison-"))
    work.chmod(0o755)  # the unprivileged user must reach the course folders inside
    try:
        confined = Confined(venv, work / "home")
        cap = confined.verify(work)
        print(f"nbgrader confinement checked: {cap}", file=sys.stderr)
        template = make_template(confined, work, answers(T.SOLUTION, markers=True))
        versions = subprocess.run(
            [str(venv / "bin" / "python"), "-c", VERSIONS],
            capture_output=True,
            text=True,
            check=True,
        ).stdout.strip()
        rows, biggest = [], (0, "")
        for index, case in enumerate([None, *cases]):
            folder = work / f"case{index:02d}"
            folder.mkdir()
            print(f"[{index}/{len(cases)}] ", file=sys.stderr, end="")
            row, size = compare(case, folder, confined, template)
            rows.append(row)
            biggest = max(biggest, (size, row.name))
            if not args.keep:
                shutil.rmtree(folder, ignore_errors=True)
    finally:
        if args.keep:
            print(f"work folder kept: {work}", file=sys.stderr)
        else:
            shutil.rmtree(work, ignore_errors=True)

    control, rows = rows[0], rows[1:]
    print(f"\n## Hostile submissions: mmcourse grade vs nbgrader autograde ({versions})\n")
    print(
        f"Each case: a batch of 3 students (honest, hostile, honest); exercise 03, {FULL_TOTAL} "
        "points: contrastive "
        f"loss {T.FULL['ex03_contrastive_loss']}, zero-shot {T.FULL[ATTACKED]} (attacked), "
        "recall@k "
        f"{T.FULL['ex03_recall_at_k']}. Per-cell timeout (nbgrader) = per-question wall time "
        "(mmcourse) = "
        f"{CELL_TIMEOUT} s. Cells read: how the attacked question ended → its points, the hostile "
        "student's other "
        "questions, the two classmates' totals (– : not graded).\n"
    )
    print(
        "| case | mmcourse status → points | nbgrader outcome → points | survives: mmcourse | "
        "survives: nbgrader |"
    )
    print("| --- | --- | --- | --- | --- |")
    for row in [control, *rows]:
        print(row.cells())
    capped = sum(r.theirs_ok and r.capped for r in rows)
    print(
        f"\nTotals: mmcourse survives {sum(r.ours_ok for r in rows)} of {len(rows)} cases, "
        "nbgrader "
        f"{sum(r.theirs_ok and not r.capped for r in rows)} of {len(rows)} on its own"
        + (f" ({capped} more only under this script's cap)." if capped else ".")
    )
    if any(r.capped for r in rows):
        print(
            "\n† nbgrader sets no process or memory limit; these ran only under this script's cap "
            f"({cap}). "
            "Without it nothing stops the fork bomb before the host's process table is full (the "
            "students graded "
            "after it, and the host, go with it), nor the memory bomb's 8 GiB allocation (the OOM "
            "killer's business "
            "on a machine with less free memory)."
        )
    print(
        f"\nLargest nbgrader course folder after a batch: {biggest[0] / 1e6:.1f} MB ({biggest[1]})."
    )
    print(
        "\nWall time of each batch (3 students) and nbgrader's peak memory (the largest process: "
        "nbgrader or a kernel):\n"
    )
    print("| case | mmcourse grade_all (s) | nbgrader autograde (s) | nbgrader peak RSS (MB) |")
    print("| --- | ---: | ---: | ---: |")
    for row in [control, *rows]:
        print(
            f"| {row.name} | {row.seconds[0]:.1f} | {row.seconds[1]:.1f} | {row.seconds[2]:.0f} |"
        )
    return 0


if __name__ == "__main__":
    sys.exit(main())
