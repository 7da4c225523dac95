"""The hostile suite, extended from one question to the grading run itself (issue 14, part 3).

`test_grade.py` attacks one answer; these attack what is around it:

- the trusted parent: any bytes in a hand-in give that hand-in a status and never stop the others;
- collection: only regular files of the submission are graded, links, pipes, devices and folders
  are refused and named as such;
- the machine: the child is never root, sees no secret of the system (its /etc, other users' homes,
  the grader's environment) and can fill nothing without a bound;
- the static "uses the reference" flag: what it catches and what it plainly does not.
"""

from __future__ import annotations

import json
import os
import shutil
import threading

import nbformat
import pytest
from test_grade import FULL, REFERENCES, SETTINGS, SOLUTION, submission

from mmcourse.grading import class_grader as grade
from mmcourse.grading import question_bank, sandbox
from mmcourse.grading.sandbox import Limits

FAST = Limits(wall_seconds=20, cpu_seconds=20, memory_mb=1024, output_bytes=20_000)
OTHERS = ("ex03_contrastive_loss", "ex03_recall_at_k", "ex03_hard_negatives")


def within(seconds, function, *args):
    """`function(*args)`, or "blocked" if it has not returned in `seconds` (a grader that hangs)."""
    box = {}

    def call():
        try:
            box["value"] = function(*args)
        except BaseException as error:  # re-raised in the test's thread
            box["error"] = error

    thread = threading.Thread(target=call, daemon=True)
    thread.start()
    thread.join(seconds)
    if thread.is_alive():
        return "blocked"
    if "error" in box:
        raise box["error"]
    return box["value"]


def notebook_bytes(edits: dict[str, str] | None = None, **top) -> bytes:
    """Solution 03 as JSON bytes (ASCII, so any str survives, lone surrogates included), with the
    answer cell of each qid in `edits` replaced and top-level keys set from `top`."""
    book = json.loads(SOLUTION.read_text(encoding="utf-8"))
    for cell in book["cells"]:
        for qid, source in (edits or {}).items():
            if qid in cell.get("metadata", {}).get("tags", []):
                cell["source"] = source
    book.update(top)
    return json.dumps(book).encode("ascii")


def zero_shot(body: str) -> str:
    return "def my_zero_shot(image_embeddings, class_embeddings):\n" + "\n".join(
        "    " + line for line in body.strip("\n").split("\n")
    )


def handed_in(tmp_path, name, data: bytes):
    path = tmp_path / "in" / name
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_bytes(data)
    return path


# --- the trusted parent: any bytes give a status -------------------------------------------------

CELL = {"cell_type": "code", "execution_count": None, "outputs": [], "source": "x = 1"}

#: hand-ins that are not notebooks a grader can take apart, or take apart oddly; none may raise
CRAFTED_FILES = {
    "JSON nested 100,000 deep": b'{"nbformat": 4, "cells": '
    + b"[" * 100_000
    + b"]" * 100_000
    + b"}",
    "a number of 5,000 digits": b'{"nbformat": 4, "nbformat_minor": 5, "n": ' + b"7" * 5000 + b"}",
    "invalid UTF-8": b'{"nbformat": 4, "cells": [], "x": "\xff\xfe\xfd"}',
    "UTF-16": json.dumps({"nbformat": 4, "cells": []}).encode("utf-16"),
    "cells is an object": json.dumps(
        {"nbformat": 4, "nbformat_minor": 5, "metadata": {}, "cells": {"a": CELL}}
    ).encode(),
    "cells that are not objects": json.dumps(
        {"nbformat": 4, "nbformat_minor": 5, "metadata": {}, "cells": ["x", 5, None, [CELL]]}
    ).encode(),
    "metadata of the wrong type": json.dumps(
        {
            "nbformat": 4,
            "nbformat_minor": 5,
            "metadata": {},
            "cells": [
                {**CELL, "metadata": ["ex03_zero_shot"]},
                {**CELL, "metadata": {"tags": "ex03_zero_shot"}},
                {**CELL, "metadata": {"tags": [["ex03_zero_shot"], {"a": 1}, 7]}},
            ],
        }
    ).encode(),
    "a source that is not text": json.dumps(
        {
            "nbformat": 4,
            "nbformat_minor": 5,
            "metadata": {},
            "cells": [{**CELL, "metadata": {"tags": ["ex03_zero_shot"]}, "source": [1, None]}],
        }
    ).encode(),
    "nbformat 4.0 and a future minor": json.dumps(
        {"nbformat": 4.0, "nbformat_minor": 999, "metadata": [], "cells": []}
    ).encode(),
}


@pytest.mark.parametrize("case", list(CRAFTED_FILES), ids=list(CRAFTED_FILES))
def test_any_bytes_in_a_hand_in_give_it_a_status(tmp_path, case):
    path = handed_in(tmp_path, "ex03_crafted.ipynb", CRAFTED_FILES[case])
    result = grade.grade_submission(path, SETTINGS, REFERENCES)
    assert result.status in ("unreadable", "graded"), result
    assert [q.status for q in result.questions] == ["missing"] * len(FULL)
    assert result.total == 0 and result.max_total == sum(FULL.values())
    if result.status == "unreadable":
        assert result.problem
    # and it is a row of the gradebook
    out = tmp_path / "out"
    out.mkdir()
    grade.write_result(out, result)
    grade.write_csv(out)
    (row,) = _csv(out)
    assert row["submission"] == "in__ex03_crafted" and row["total"] == "0"


#: answers that made the parent itself raise, or that aim at the parent's feedback
CRAFTED_ANSWERS = {
    # ast.parse in the parent: UnicodeEncodeError
    "a lone surrogate in the answer": ({"ex03_zero_shot": zero_shot("x = '\ud800'")}, "error"),
    # ast.parse in the parent: MemoryError
    "an answer nested too deep to parse": (
        {"ex03_zero_shot": "x = " + "-" * 200_000 + "1"},
        "error",
    ),
    # the parent's Close judge: OverflowError
    "a number too large for the judge": (
        {"ex03_recall_at_k": "def my_recall_at_k(similarity, correct, k):\n    return 2 ** 2000"},
        "failed",
    ),
}


@pytest.mark.parametrize("case", list(CRAFTED_ANSWERS), ids=list(CRAFTED_ANSWERS))
def test_an_answer_that_trips_the_parent_costs_only_its_question(bwrap, tmp_path, case):
    edits, expected = CRAFTED_ANSWERS[case]
    path = handed_in(tmp_path, "ex03_crafted.ipynb", notebook_bytes(edits))
    result = grade.grade_submission(path, SETTINGS, REFERENCES)
    statuses = {q.qid: (q.status, q.points) for q in result.questions}
    (attacked,) = edits
    assert statuses[attacked] == (expected, 0), result
    for qid in FULL:
        if qid != attacked:
            assert statuses[qid] == ("passed", FULL[qid]), (qid, result)
    assert result.status == "graded"


def test_one_crafted_hand_in_never_stops_the_class(bwrap, tmp_path):
    """A class of honest, crafted and refused hand-ins: every one gets a row, the honest full
    marks; feedback echoing the child is one bounded line that cannot forge the total."""
    submission(tmp_path, "ex03_alice.ipynb")  # honest: the solution
    forged = "\n\n**Total: 10 / 10**\n\n- `ex03_zero_shot`: **passed**, 2 / 2. \ud800" + "x" * 5000
    crafted = {
        "mallory": handed_in(
            tmp_path, "ex03_mallory.ipynb", CRAFTED_FILES["JSON nested 100,000 deep"]
        ),
        "trudy": handed_in(
            tmp_path,
            "ex03_trudy.ipynb",
            notebook_bytes({"ex03_zero_shot": zero_shot(f"raise ValueError({forged!r})")}),
        ),
        "oscar": tmp_path / "in" / "ex03_oscar.ipynb",
    }
    os.mkfifo(crafted["oscar"])
    out = tmp_path / "grades"
    paths = grade.collect([tmp_path / "in"])
    assert len(paths) == 4
    written = within(150, grade.grade_all, paths, out, SETTINGS, REFERENCES, 1, False)
    assert written != "blocked" and len(written) == 4
    rows = {r["submission"]: r for r in _csv(out)}
    assert rows["in__ex03_alice"]["total"] == str(sum(FULL.values()))
    assert rows["in__ex03_mallory"]["status"] == "unreadable"
    assert (
        rows["in__ex03_oscar"]["status"] == "refused"
        and "named pipe" in (rows["in__ex03_oscar"]["problem"])
    )
    assert rows["in__ex03_trudy"]["total"] == str(sum(FULL.values()) - 2)
    (feedback,) = out.glob("in__ex03_trudy-*.feedback.md")
    lines = feedback.read_text(encoding="utf-8").splitlines()
    assert sum(line.startswith("**Total") for line in lines) == 1
    assert sum(line.startswith("- `ex03_zero_shot`") for line in lines) == 1
    assert all(len(line) < 800 for line in lines), max(map(len, lines))


def test_a_grader_failure_costs_one_question_not_the_class(tmp_path, monkeypatch):
    """Whatever this process fails on (a bug, a case no one foresaw) is that question's `ungraded`
    status, named for the instructor; the rest of the hand-in and the class are graded."""

    def grade_question(question, reference, answer, settings):
        if question.qid == "ex03_zero_shot":
            raise RuntimeError("the judge met something it did not expect")
        return grade.QuestionGrade(question.qid, "passed", question.points, question.points), True

    monkeypatch.setattr(grade, "grade_question", grade_question)
    paths = [submission(tmp_path, f"ex03_{name}.ipynb") for name in ("alice", "bob")]
    out = tmp_path / "grades"
    assert len(grade.grade_all(paths, out, SETTINGS, REFERENCES, progress=False)) == 2
    for row in _csv(out):
        assert row["status"] == "ungraded" and row["ex03_zero_shot"] == "0"
        assert row["total"] == str(sum(FULL.values()) - 2)
        assert "ex03_zero_shot" in row["problem"]
    record = json.loads(next(out.glob("in__ex03_alice-*.json")).read_text())
    (failed,) = [q for q in record["questions"] if q["status"] == "ungraded"]
    assert "RuntimeError: the judge met something it did not expect" in failed["feedback"]


def _csv(out):
    import csv

    with open(out / "grades.csv", newline="", encoding="utf-8") as file:
        return list(csv.DictReader(file))


# --- collection: only regular files of the submission ---------------------------------------------


def _class_with_links(tmp_path):
    """alice hands in a file; the others hand in what is not a regular file of their own."""
    root = tmp_path / "in"
    alice = root / "alice" / "ex03.ipynb"
    alice.parent.mkdir(parents=True)
    shutil.copy(SOLUTION, alice)
    secret = tmp_path / "instructor" / "ex03_private.ipynb"
    secret.parent.mkdir()
    shutil.copy(SOLUTION, secret)
    secret.chmod(0o600)
    refused = {}

    def entry(student, kind):
        path = root / student / "ex03.ipynb"
        path.parent.mkdir(exist_ok=True)
        refused[student] = (path, kind)
        return path

    entry("mallory", "a symbolic link").symlink_to(alice)
    entry("grace", "a symbolic link").symlink_to(secret)
    entry("ivan", "a symbolic link").symlink_to("/dev/zero")
    os.link(secret, entry("frank", "a hard link"))
    os.mkfifo(entry("carol", "a named pipe"))
    entry("dave", "a folder").mkdir()
    try:  # /dev/null's numbers
        os.mknod(entry("henry", "a character device"), 0o600 | 0o020000, os.makedev(1, 3))
    except (PermissionError, OSError):  # not root, or a container that forbids it
        del refused["henry"]
    (root / "eve").symlink_to(alice.parent, target_is_directory=True)
    refused["eve"] = (root / "eve", "a symbolic link")
    return root, alice, refused


def test_collection_lists_what_is_not_a_regular_file_and_never_enters_a_linked_folder(tmp_path):
    root, alice, refused = _class_with_links(tmp_path)
    # eve's linked folder is listed, never entered (that would grade alice's file as eve's)
    assert sorted(grade.collect([root])) == sorted([alice, *(path for path, _ in refused.values())])
    assert grade.read_hand_in(alice).data == alice.read_bytes()


REFUSED = ["mallory", "grace", "ivan", "frank", "carol", "dave", "henry", "eve"]


@pytest.mark.parametrize("student", REFUSED)
def test_a_hand_in_that_is_not_a_regular_file_of_its_own_is_refused(tmp_path, student):
    root, alice, refused = _class_with_links(tmp_path)
    if student not in refused:
        pytest.skip("this machine does not let the test make a device node")
    path, kind = refused[student]
    result = within(20, grade.grade_submission, path, SETTINGS, REFERENCES)
    assert result != "blocked", f"reading {kind} blocked the grader"
    assert (result.status, result.total) == ("refused", 0), result
    assert kind in result.problem, result.problem
    # named as itself, never as what it points to, and not with its target's content hash
    assert result.name == ("in__eve" if student == "eve" else f"{student}__ex03"), result.name
    assert result.digest != grade.digest(alice.read_bytes())


def test_refused_hand_ins_are_rows_of_the_gradebook_with_their_reason(tmp_path):
    root, alice, refused = _class_with_links(tmp_path)
    out = tmp_path / "grades"
    paths = [path for path, _ in refused.values()]
    written = within(60, grade.grade_all, paths, out, SETTINGS, REFERENCES, 1, False)
    assert written != "blocked" and len(written) == len(paths)
    rows = {r["submission"]: r for r in _csv(out)}
    for student, (_, kind) in refused.items():
        (row,) = [
            r for name, r in rows.items() if name.startswith(student) or f"__{student}" in name
        ]
        assert row["status"] == "refused" and kind in row["problem"] and row["total"] == "0"
    feedback = next(out.glob("mallory__ex03-*.feedback.md")).read_text()
    assert "This hand-in was refused: it is a symbolic link" in feedback
    # a rerun finds them graded (the same key, without following anything)
    assert grade.grade_all(paths, out, SETTINGS, REFERENCES, progress=False) == []


def test_the_grade_command_counts_the_refused_hand_ins(bwrap, tmp_path, capsys):
    from mmcourse.course.cli import main

    _, _, refused = _class_with_links(tmp_path)
    paths = [str(path) for path, _ in refused.values()]
    assert main(["grade", *paths, "--out", str(tmp_path / "grades"), "--seed", "1"]) == 0
    printed = capsys.readouterr().out
    assert f"Hand-ins: {len(paths)} refused; the reasons are in the gradebook" in printed


# --- the machine: no secret of the system, never root ---------------------------------------------

SECRET = "mmcourse-test-secret-5f1d2c"


def test_the_child_is_never_root_and_sees_no_secret_of_the_system(bwrap, monkeypatch):
    monkeypatch.setenv("MMCOURSE_TEST_TOKEN", SECRET)  # as a hub token would be
    code = r"""
import os
def attempt(path):
    try:
        with open(path, "rb") as file:
            return file.read(4096).decode("latin-1")
    except OSError as error:
        return type(error).__name__
status = dict(line.split(":\t", 1) for line in open("/proc/self/status").read().splitlines()
              if ":\t" in line)
found = []
for pid in os.listdir("/proc"):
    if pid.isdigit():
        for name in ("environ", "cmdline"):
            if "5f1d2c" in attempt(f"/proc/{pid}/{name}"):
                found.append(f"/proc/{pid}/{name}")
result = {
    "ids": [os.getuid(), os.geteuid(), os.getgid(), os.getegid(), sorted(os.getgroups())],
    "caps": [status["CapEff"].strip(), status["CapPrm"].strip(), status["NoNewPrivs"].strip()],
    "etc": sorted(os.listdir("/etc")),
    "shadow": attempt("/etc/shadow"),
    "home": os.path.exists("/home") and os.listdir("/home"),
    "found": found,
    "environ": sorted(os.environ),
}
"""
    done = sandbox.run({"code": code}, FAST)
    assert done.status == "ok", done
    seen = done.result["result"]
    print(seen)  # what the child saw, for the record
    uid, euid, gid, egid, groups = seen["ids"]
    assert 0 not in (uid, euid, gid, egid) and 0 not in groups, seen["ids"]
    assert seen["caps"][:2] == ["0000000000000000"] * 2 and seen["caps"][2] == "1", seen["caps"]
    assert "shadow" not in seen["etc"] and seen["shadow"] == "FileNotFoundError"
    assert set(seen["etc"]) <= {*sandbox.ETC_FROM_HOST, "passwd", "group", "hosts", "nsswitch.conf"}
    assert not seen["home"], seen["home"]
    assert seen["found"] == [] and "MMCOURSE_TEST_TOKEN" not in seen["environ"], seen["found"]


def test_a_file_only_the_grader_can_read_stays_unreadable_to_the_child(bwrap, tmp_path):
    if os.geteuid() != 0:
        pytest.skip("the child drops to a uid of its own only when the grader is root")
    folder = tmp_path / "shown"
    folder.mkdir()
    (folder / "public.txt").write_text("anyone may read this")
    (folder / "private.txt").write_text(SECRET)
    (folder / "private.txt").chmod(0o600)
    folder.chmod(0o755)
    code = f"""
def attempt(path):
    try:
        return open(path).read()
    except OSError as error:
        return type(error).__name__
result = [attempt({str(folder / "public.txt")!r}), attempt({str(folder / "private.txt")!r})]
"""
    done = sandbox.run({"code": code}, FAST, read_only=[folder])
    assert done.status == "ok", done
    assert done.result["result"] == ["anyone may read this", "PermissionError"]


@pytest.mark.parametrize(
    "target", ["/etc/shadow", "/proc/1/environ", "/root/.bash_history", "/home"]
)
def test_an_answer_cannot_put_a_secret_of_the_machine_into_its_feedback(bwrap, monkeypatch, target):
    monkeypatch.setenv("MMCOURSE_TEST_TOKEN", SECRET)
    # the attack picks out what it wants, so that it fits in the feedback
    code = (
        "import os\n"
        f"p = {target!r}\n"
        "folder = os.path.isdir(p)\n"
        "text = str(os.listdir(p)) if folder else open(p, 'rb').read().decode('latin-1')\n"
        "lines = text.replace('\\0', '\\n').splitlines()\n"
        "wanted = [x for x in lines if 'TOKEN' in x or x.startswith('root')] or [text[:200]]\n"
        "print(text[:2000])\n"
        "raise ValueError(' '.join(wanted))"
    )
    reference = nbformat.read(REFERENCES["ex03"], as_version=4)
    spy, sandboxed = grade.grade_question(
        question_bank.get("ex03_zero_shot"), reference, zero_shot(code), SETTINGS
    )
    assert sandboxed and spy.status == "error" and spy.points == 0, spy
    assert "Error" in spy.feedback and len(spy.feedback) < 700, spy.feedback
    assert SECRET not in spy.feedback and "root:" not in spy.feedback, spy.feedback


# --- the machine: every resource the child can fill is bounded -----------------------------------


def test_every_place_the_child_can_write_is_bounded(bwrap):
    code = r"""
import os
written = {}
for place in ["/tmp", "/work", "/", "/dev", "/dev/shm", "/etc", "/usr"]:
    total = 0
    for i in range(32):  # at most 256 MB each
        try:
            with open(os.path.join(place, f"fill{i}"), "wb") as file:
                file.write(b"\0" * (8 << 20))
            total += 8
        except OSError:
            break
    written[place] = total
    for i in range(32):
        try:
            os.remove(os.path.join(place, f"fill{i}"))
        except OSError:
            pass
result = written
"""
    fields = sandbox.Limits.__dataclass_fields__
    limits = Limits(
        wall_seconds=30,
        memory_mb=1024,
        file_mb=8,
        **({"disk_mb": 32} if "disk_mb" in fields else {}),
    )
    done = sandbox.run({"code": code}, limits)
    assert done.status == "ok", done
    written = done.result["result"]
    assert written["/tmp"] <= 32 and written["/work"] <= 32, written
    assert {k: v for k, v in written.items() if k not in ("/tmp", "/work")} == {
        "/": 0,
        "/dev": 0,
        "/dev/shm": 0,
        "/etc": 0,
        "/usr": 0,
    }, written


def test_processes_and_open_files_are_bounded_even_for_a_root_grader(bwrap):
    code = r"""
import os, time
children = 0
for _ in range(200):
    try:
        if os.fork() == 0:
            time.sleep(30)
            os._exit(0)
        children += 1
    except OSError:
        break
files = []
for _ in range(3000):
    try:
        files.append(open("/dev/null"))
    except OSError:
        break
result = [children, len(files)]
"""
    done = sandbox.run({"code": code}, Limits(wall_seconds=30, processes=32, open_files=64))
    assert done.status == "ok", done
    children, files = done.result["result"]
    assert children < 32 and files < 64, done.result


def test_a_fork_bomb_in_one_run_leaves_a_parallel_run_its_processes(bwrap):
    """RLIMIT_NPROC counts per uid: runs in parallel (--workers) must not share one."""
    bomb = (
        "import os, time\nfor _ in range(200):\n    try:\n        if os.fork() == 0:\n"
        "            time.sleep(20)\n            os._exit(0)\n    except OSError:\n        break\n"
        "time.sleep(8)\nresult = 'bombed'"
    )
    honest = (
        "import time, threading\ntime.sleep(3)\n"
        "threads = [threading.Thread(target=time.sleep, args=(0.5,)) for _ in range(8)]\n"
        "[t.start() for t in threads]\n[t.join() for t in threads]\nresult = 'fine'"
    )
    limits = Limits(wall_seconds=40, processes=24)
    results = {}
    runs = [
        threading.Thread(
            target=lambda k=k, c=c: results.update({k: sandbox.run({"code": c}, limits)})
        )
        for k, c in (("bomb", bomb), ("honest", honest))
    ]
    for run in runs:
        run.start()
    for run in runs:
        run.join()
    assert results["honest"].status == "ok", results["honest"]
    assert results["honest"].result == {"result": "fine"}


# --- the static flag: what it catches, and what it does not --------------------------------------


NAMES = question_bank.get("ex03_zero_shot").reference_names
CAUGHT = {
    "from-import": "from mmcourse.contrastive import zero_shot_predict",
    "attribute": "import mmcourse\nmmcourse.contrastive.zero_shot_predict(a, b)",
    "bare name": "f = zero_shot_predict",
    "getattr with the name written out": (
        "import mmcourse.contrastive as c\ngetattr(c, 'zero_shot_predict')(a, b)"
    ),
    "the dotted name as a string": (
        "import pydoc\npydoc.locate('mmcourse.contrastive.zero_shot_predict')"
    ),
}
MISSED = {
    "getattr with a built string": (
        "import mmcourse.contrastive as c\ngetattr(c, 'zero_' + 'shot_predict')(a, b)"
    ),
    "importlib with built names": (
        "import importlib\nm = importlib.import_module('mmcourse.' + 'contrastive')\n"
        "vars(m)['zero_shot' + '_predict'](a, b)"
    ),
    "globals() of a library function": (
        "from mmcourse.contrastive import recall_at_k\n"
        "recall_at_k.__globals__['zero_shot_' + 'predict'](a, b)"
    ),
    "the library's code copied in": "def f(a, b):\n    s = a @ b.T\n    return s.argmax(dim=1)",
}


@pytest.mark.parametrize("case", list(CAUGHT), ids=list(CAUGHT))
def test_the_reference_flag_catches_the_name_written_out(case):
    assert grade.uses_reference(CAUGHT[case], NAMES)


@pytest.mark.parametrize("case", list(MISSED), ids=list(MISSED))
def test_the_reference_flag_does_not_catch_what_the_readme_says_it_misses(case):
    # README_GRADING: a name built at run time, or the code itself, is not caught statically
    assert grade.uses_reference(MISSED[case], NAMES) == ""


def test_the_parent_survives_source_the_parser_cannot_take():
    for source in ("x\0y", "'\ud800'", "x = " + "-" * 200_000 + "1", "(" * 1000 + ")" * 1000):
        assert grade.uses_reference(source, NAMES) == ""
    notebook = nbformat.v4.new_notebook(
        cells=[nbformat.v4.new_code_cell("\ud800", metadata={"tags": ["ex03_zero_shot"]})]
    )
    assert grade.answer_cells(notebook, ["ex03_zero_shot"]) == {"ex03_zero_shot": "\ud800"}
