"""`mmcourse grade`: hostile and broken submissions built from the solution notebooks, graded in the
sandbox."""

import json
import shutil

import nbformat
import pytest
from conftest import ROOT
from test_grading import MUTATIONS  # the plausible bugs, defined once

from mmcourse.grading import class_grader as grade
from mmcourse.grading import question_bank, sandbox

SETTINGS = grade.Settings(
    limits=sandbox.Limits(wall_seconds=15, cpu_seconds=30, memory_mb=2048, output_bytes=50_000),
    hidden=3,
    seed=1234,
)
REFERENCES = grade.default_references(ROOT)
SOLUTION = ROOT / "solutions" / "ex03_contrastive.ipynb"
FULL = {
    "ex03_contrastive_loss": 3,
    "ex03_recall_at_k": 2,
    "ex03_zero_shot": 2,
    "ex03_hard_negatives": 3,
}


def submission(tmp_path, name, edit=None, raw=None):
    """A copy of solution 03 as `name`, with the zero-shot answer's body replaced by `edit` (code),
    or raw bytes."""
    path = tmp_path / "in" / name
    path.parent.mkdir(parents=True, exist_ok=True)
    if raw is not None:
        path.write_bytes(raw)
        return path
    book = nbformat.read(SOLUTION, as_version=4)
    if edit is not None:
        for cell in book.cells:
            if "ex03_zero_shot" in cell.metadata.get("tags", []):
                cell.source = "def my_zero_shot(image_embeddings, class_embeddings):\n" + "\n".join(
                    "    " + line for line in edit.strip("\n").split("\n")
                )
    nbformat.write(book, path)
    return path


def graded(tmp_path, path):
    result = grade.grade_submission(path, SETTINGS, REFERENCES)
    return {q.qid: (q.status, q.points, q.feedback) for q in result.questions}


HONEST = (
    "s = F.normalize(image_embeddings, dim=-1) @ F.normalize(class_embeddings, "
    "dim=-1).T\nreturn s.argmax(dim=1)"
)

HOSTILE = {
    "infinite loop": ("while True:\n    pass", "timeout"),
    "memory bomb": ("x = bytearray(8 << 30)\nreturn x", "error"),
    "fork bomb": (
        "import os\nwhile True:\n    try:\n        os.fork()\n    except OSError:\n        pass",
        ("timeout", "crashed"),
    ),
    "output flood": ("while True:\n    print('x' * 10000)", "crashed"),
    "sys.exit": ("import sys\nsys.exit(0)", "error"),
    "os._exit": ("import os\nos._exit(0)", "crashed"),
    "segfault": ("import ctypes\nctypes.string_at(0)", "crashed"),
    "KeyboardInterrupt": ("raise KeyboardInterrupt", "error"),
    # a broken isinstance may take the child down: 0 either way
    "monkeypatched comparisons": (
        "import numpy, torch, builtins\nnumpy.allclose = lambda *a, **k: True\n"
        "torch.allclose = lambda *a, **k: True\nnumpy.array_equal = lambda *a, **k: True\n"
        "builtins.isinstance = lambda *a: True\nreturn torch.zeros(len(image_embeddings), "
        "dtype=torch.long)",
        ("failed", "crashed"),
    ),
    "monkeypatched grader": (
        "import mmcourse.grading, mmcourse.grading.judging\n"
        "mmcourse.grading.check = lambda *a, **k: True\n"
        "mmcourse.grading.judging.Close.__call__ = lambda self, expected, got: None\n"
        "mmcourse.grading.judging.Exact.__call__ = lambda self, expected, got: None\n"
        "mmcourse.grading.judging.Question.judge = lambda *a, **k: None\n"
        "return torch.zeros(len(image_embeddings), dtype=torch.long)",
        "failed",
    ),
    "a liar in __eq__": (
        "class Liar:\n    def __eq__(self, other):\n        return True\nreturn Liar()",
        "failed",
    ),
    "a tensor subclass": (
        "class Sneaky(torch.Tensor):\n    def __eq__(self, other):\n        return True\n"
        "return torch.zeros(len(image_embeddings), dtype=torch.long).as_subclass(Sneaky)",
        "failed",
    ),
    "NaN": ("return torch.full((len(image_embeddings),), float('nan'))", "failed"),
    "hard-coded visible answers": ("return torch.tensor({0: [2, 0, 2, 1, 1]}.get(0))", "failed"),
    "the reference function": (
        "from mmcourse.contrastive import zero_shot_predict\n"
        "return zero_shot_predict(image_embeddings, class_embeddings)",
        ("failed", "error"),
    ),
    "reading solutions": (
        "open(" + repr(str(ROOT / "solutions" / "ex03_contrastive.ipynb")) + ").read()\n" + HONEST,
        "error",
    ),
    "forged result channel": (
        "import os\nfor fd in range(3, 20):\n    try:\n        os.write(fd, b'PK forged')\n"
        "    except OSError:\n        pass\n" + HONEST,
        ("passed", "crashed"),
    ),
}


@pytest.mark.parametrize("case", list(HOSTILE), ids=list(HOSTILE))
def test_hostile_answers_get_the_right_status_and_spare_the_other_questions(bwrap, tmp_path, case):
    code, expected = HOSTILE[case]
    result = graded(tmp_path, submission(tmp_path, "ex03_hostile.ipynb", code))
    status, points, feedback = result["ex03_zero_shot"]
    assert status in ((expected,) if isinstance(expected, str) else expected), (
        case,
        result["ex03_zero_shot"],
    )
    if status != "passed":
        assert points == 0
    for qid in ("ex03_contrastive_loss", "ex03_recall_at_k"):
        assert result[qid][:2] == ("passed", FULL[qid]), (qid, result[qid])


def test_honest_rewrite_passes_and_feedback_never_shows_the_hidden_answer(bwrap, tmp_path):
    assert graded(tmp_path, submission(tmp_path, "ex03_honest.ipynb", HONEST))["ex03_zero_shot"][
        :2
    ] == ("passed", 2)
    wrong = graded(
        tmp_path, submission(tmp_path, "ex03_wrong.ipynb", HONEST.replace("argmax", "argmin"))
    )
    status, points, feedback = wrong["ex03_zero_shot"]
    assert status == "failed" and points == 0 and "argmax, not argmin" in feedback
    assert "expected" not in feedback.lower() or "value differs" in feedback


def test_the_reference_is_flagged_statically_too():
    names = question_bank.get("ex03_zero_shot").reference_names
    assert grade.uses_reference("from mmcourse.contrastive import zero_shot_predict", names)
    assert grade.uses_reference(
        "import mmcourse\nmmcourse.contrastive.zero_shot_predict(a, b)", names
    )
    assert not grade.uses_reference("s.argmax(dim=1)", names)


@pytest.mark.parametrize(
    "damage, reason",
    [
        (b"", "empty"),
        (b"{not json", "not notebook JSON"),
        (json.dumps({"nbformat": 3, "worksheets": []}).encode(), "nbformat 3"),
        (b"{" + b" " * (grade.MAX_NOTEBOOK_BYTES + 10) + b"}", "more than"),
    ],
)
def test_unreadable_notebooks_are_missing_with_a_reason(tmp_path, damage, reason):
    result = grade.grade_submission(
        submission(tmp_path, "ex03_broken.ipynb", raw=damage), SETTINGS, REFERENCES
    )
    assert reason in result.problem and result.status == "unreadable"
    assert [q.status for q in result.questions] == ["missing"] * len(FULL)


@pytest.mark.parametrize("how", ["deleted", "retagged", "markdown", "duplicated"])
def test_structural_damage_makes_only_that_question_missing(bwrap, tmp_path, how):
    book = nbformat.read(SOLUTION, as_version=4)
    index = next(
        i for i, c in enumerate(book.cells) if "ex03_zero_shot" in c.metadata.get("tags", [])
    )
    if how == "deleted":
        del book.cells[index]
    elif how == "retagged":
        book.cells[index].metadata["tags"] = ["something_else"]
    elif how == "markdown":
        book.cells[index] = nbformat.v4.new_markdown_cell(book.cells[index].source)
    else:
        book.cells.insert(
            index,
            nbformat.v4.new_code_cell(
                book.cells[index].source, metadata={"tags": ["ex03_zero_shot"]}
            ),
        )
    path = tmp_path / "ex03_damaged.ipynb"
    nbformat.write(book, path)
    result = graded(tmp_path, path)
    assert result["ex03_zero_shot"][0] == "missing"
    assert result["ex03_contrastive_loss"][:2] == ("passed", 3)


def test_gradebook_names_resume_and_csv_escaping(bwrap, tmp_path):
    a, b = tmp_path / "alice" / "ex03.ipynb", tmp_path / "bob" / "ex03.ipynb"
    for path, source in ((a, SOLUTION), (b, ROOT / "exercises" / "ex03_contrastive.ipynb")):
        path.parent.mkdir(parents=True)
        shutil.copy(source, path)
    out = tmp_path / "grades"
    written = grade.grade_all([a, b], out, SETTINGS, REFERENCES, progress=False)
    # same file name, different content
    assert len(written) == 2 and len({p.name for p in written}) == 2
    rows = (out / "grades.csv").read_text().splitlines()
    assert len(rows) == 3 and sorted(r.split(",")[-4] for r in rows[1:]) == ["0", "10"]
    # a rerun resumes
    assert grade.grade_all([a, b], out, SETTINGS, REFERENCES, progress=False) == []
    assert (
        grade._cell("=HYPERLINK(1)") == "'=HYPERLINK(1)"
        and grade._cell("-2") == "'-2"
        and grade._cell("ok") == "ok"
    )
    feedback = next(out.glob("*.feedback.md")).read_text()
    assert "Total:" in feedback


def test_every_solution_grades_full_and_every_exercise_zero(bwrap, tmp_path):
    paths = []
    for folder in ("solutions", "exercises"):
        for source in sorted((ROOT / folder).glob("ex*.ipynb")):
            target = tmp_path / folder / source.name
            target.parent.mkdir(exist_ok=True)
            shutil.copy(source, target)
            paths.append(target)
    settings = grade.Settings(limits=sandbox.Limits(wall_seconds=120), hidden=2, seed=7)
    for path in paths:
        result = grade.grade_submission(path, settings, REFERENCES)
        if path.parent.name == "solutions":
            assert result.total == result.max_total > 0, [
                (q.qid, q.status, q.feedback) for q in result.questions
            ]
        else:
            assert result.total == 0 and all(q.status == "error" for q in result.questions), (
                result.questions
            )


def test_shards_split_a_class_and_merge_back(bwrap, tmp_path):
    from mmcourse.course.cli import main

    paths = []
    for i in range(4):
        path = submission(
            tmp_path,
            f"ex03_student{i}.ipynb",
            HONEST if i % 2 else HONEST.replace("argmax", "argmin"),
        )
        paths.append(path)
    shards = [grade.shard(paths, f"{i}/2") for i in (1, 2)]
    assert sorted(shards[0] + shards[1]) == sorted(paths) and not set(shards[0]) & set(shards[1])
    with pytest.raises(ValueError, match="2/5"):
        grade.shard(paths, "3/2")
    for i in (1, 2):
        assert (
            main(
                [
                    "grade",
                    str(tmp_path / "in"),
                    "--out",
                    str(tmp_path / f"shard{i}"),
                    "--shard",
                    f"{i}/2",
                    "--hidden",
                    "2",
                    "--timeout",
                    "30",
                    "--seed",
                    "5",
                ]
            )
            == 0
        )
    assert (
        main(
            [
                "grade",
                "--merge",
                str(tmp_path / "shard1"),
                str(tmp_path / "shard2"),
                "--out",
                str(tmp_path / "all"),
            ]
        )
        == 0
    )
    rows = (tmp_path / "all" / "grades.csv").read_text().splitlines()
    assert len(rows) == 5 and sorted(r.split(",")[-4] for r in rows[1:]) == ["10", "10", "8", "8"]
    # no --seed
    assert (
        main(["grade", str(tmp_path / "in"), "--out", str(tmp_path / "shard3"), "--shard", "1/2"])
        == 2
    )


def test_the_seed_is_secret_by_default_and_kept_for_reruns(tmp_path, capsys):
    first = grade.class_seed(tmp_path / "a", None)
    assert (
        first
        == grade.class_seed(tmp_path / "a", None)
        == int((tmp_path / "a" / "grading-seed.txt").read_text())
    )
    assert (
        grade.class_seed(tmp_path / "b", None) != first
        or grade.class_seed(tmp_path / "c", None) != first
    )
    assert grade.class_seed(tmp_path / "d", 42) == 42 == grade.class_seed(tmp_path / "d", None)
    with pytest.raises(ValueError, match="another seed"):
        grade.class_seed(tmp_path / "d", 43)
    with pytest.raises(ValueError, match="--shard needs --seed"):
        grade.class_seed(tmp_path / "e", None, sharded=True)


def test_private_question_variants_reach_the_child(bwrap, tmp_path, capsys):
    from mmcourse.course.cli import main

    built_in = question_bank.get("ex03_zero_shot")

    private = tmp_path / "private"
    private.mkdir()
    (private / "ex03_variant.py").write_text(
        "import dataclasses\nfrom mmcourse.grading import question_bank\n"
        "base = question_bank.get('ex03_zero_shot')\n"
        "def more_classes(rng, n):  # the instructor's own hidden cases: always 9 classes\n"
        "    return [dict(case, class_embeddings=case['class_embeddings'][:1].repeat(9, 0) * 0 + "
        "rng.random())\n"
        "            for case in base.hidden(rng, n)]\n"
        "question_bank.register(dataclasses.replace(base, points=5, hidden=more_classes))\n"
    )
    path = submission(tmp_path, "ex03_private.ipynb", HONEST)
    out = tmp_path / "out"
    assert (
        main(["grade", str(path), "--out", str(out), "--questions", str(private), "--hidden", "2"])
        == 0
    )
    assert "ex03_zero_shot" in capsys.readouterr().out
    (record,) = [json.loads(p.read_text()) for p in out.glob("*.json")]
    zero_shot = next(q for q in record["questions"] if q["qid"] == "ex03_zero_shot")
    assert (zero_shot["status"], zero_shot["points"], zero_shot["max_points"]) == ("passed", 5, 5)
    assert record["max_total"] == 13  # 10 with zero_shot's 2 points raised to 5
    assert question_bank.get("ex03_zero_shot") is built_in  # the variant was this run's only

    (private / "ex03_lambda.py").write_text(
        "import dataclasses\nfrom mmcourse.grading import question_bank\n"
        "question_bank.register(dataclasses.replace(question_bank.get('ex03_recall_at_k'), "
        "prepare=lambda case: dict(case)))\n"
    )
    assert (
        main(["grade", str(path), "--out", str(tmp_path / "out2"), "--questions", str(private)])
        == 2
    )
    assert "sees only the mmcourse package" in capsys.readouterr().err


def test_a_connection_to_a_listener_on_loopback_gets_nothing_through(bwrap, tmp_path):
    import socket

    with socket.socket() as listener:
        listener.bind(("127.0.0.1", 0))
        listener.listen(1)
        port = listener.getsockname()[1]
        code = (
            f"import socket\nwith socket.create_connection(('127.0.0.1', {port}), timeout=3) as "
            "s:\n"
            "    s.sendall(b'stolen')\n" + HONEST
        )
        status, points, feedback = graded(tmp_path, submission(tmp_path, "ex03_net.ipynb", code))[
            "ex03_zero_shot"
        ]
        assert (status, points) == ("error", 0), feedback
        # the sandbox's own loopback
        assert "Connection refused" in feedback or "unreachable" in feedback, feedback
        listener.settimeout(1.0)
        with pytest.raises(TimeoutError):
            listener.accept()


def test_the_answer_cannot_write_into_the_gradebook_or_over_other_results(bwrap, tmp_path):
    out = tmp_path / "grades"
    honest = submission(tmp_path, "ex03_alice.ipynb", HONEST)
    (alice,) = grade.grade_all([honest], out, SETTINGS, REFERENCES, progress=False)
    before = {p.name: p.read_bytes() for p in out.iterdir()}
    targets = [str(alice), str(out / "grades.csv"), str(out / "forged-0000000000000000.json")]
    code = (
        f"for target in {targets!r}:\n    open(target, 'w').write('{{\"total\": 100}}')\n" + HONEST
    )
    hostile = submission(tmp_path, "ex03_mallory.ipynb", code)
    grade.grade_all([hostile], out, SETTINGS, REFERENCES, progress=False)
    assert {
        p.name: p.read_bytes() for p in out.iterdir() if p.name in before and p.name != "grades.csv"
    } == {k: v for k, v in before.items() if k != "grades.csv"}
    assert not (out / "forged-0000000000000000.json").exists()
    rows = {
        r.split(",")[0]: r.split(",") for r in (out / "grades.csv").read_text().splitlines()[1:]
    }
    assert rows["in__ex03_alice"][-4] == "10" and rows["in__ex03_mallory"][-4] == "8"
    mallory = json.loads(next(out.glob("in__ex03_mallory-*.json")).read_text())
    status = {q["qid"]: q["status"] for q in mallory["questions"]}
    assert status["ex03_zero_shot"] == "error"
    assert any(
        word in json.dumps(mallory)
        for word in ("FileNotFoundError", "PermissionError", "Read-only")
    )


def test_library_warnings_and_slow_but_correct_code_cost_nothing(bwrap, tmp_path):
    code = (
        "import sys, time, warnings\nwarnings.warn('a deprecated call', DeprecationWarning)\n"
        "warnings.warn('a library warning', UserWarning)\nprint('some noise on stderr', "
        "file=sys.stderr)\n"
        "time.sleep(0.5)  # per case: slow, but well inside the time limit\n" + HONEST
    )
    result = graded(tmp_path, submission(tmp_path, "ex03_noisy.ipynb", code))
    assert {qid: r[:2] for qid, r in result.items()} == {
        qid: ("passed", p) for qid, p in FULL.items()
    }


def test_two_students_handing_in_the_same_file_are_two_rows(bwrap, tmp_path):
    paths = []
    for student in ("alice", "bob"):
        path = tmp_path / student / "ex03_contrastive.ipynb"
        path.parent.mkdir()
        shutil.copy(ROOT / "exercises" / "ex03_contrastive.ipynb", path)
        paths.append(path)
    out = tmp_path / "grades"
    assert len(grade.grade_all(paths, out, SETTINGS, REFERENCES, progress=False)) == 2
    names = sorted(r.split(",")[0] for r in (out / "grades.csv").read_text().splitlines()[1:])
    assert names == ["alice__ex03_contrastive", "bob__ex03_contrastive"]


#: One plausible bug per question goes through the sandboxed grader; test_grading asserts all of
#: MUTATIONS in-process, with the same judge on the same hidden cases.
ONE_PER_QUESTION = list({m[0]: m for m in reversed(MUTATIONS)}.values())


@pytest.mark.parametrize(
    "qid, edit, hint", ONE_PER_QUESTION, ids=[f"{m[0]}:{m[2]}" for m in ONE_PER_QUESTION]
)
def test_a_mutated_solution_loses_exactly_the_points_of_the_question_it_breaks(
    bwrap, tmp_path, qid, edit, hint
):
    exercise = qid.split("_", 1)[0]
    (source,) = (ROOT / "solutions").glob(f"{exercise}_*.ipynb")
    book = nbformat.read(source, as_version=4)
    (cell,) = [c for c in book.cells if qid in c.metadata.get("tags", [])]
    assert edit[0] in cell.source
    cell.source = cell.source.replace(*edit)
    asked = [q.qid for q in question_bank.for_exercise(exercise)]
    mutated = grade.answer_cells(book, asked)
    solution = grade.answer_cells(nbformat.read(source, as_version=4), asked)
    # each question is graded from its own answer cell alone (with the reference's other cells), and
    # only this one changed: the others grade as the solution's (see test_every_solution_...)
    assert {q for q in asked if mutated[q] != solution[q]} == {qid}
    settings = grade.Settings(limits=sandbox.Limits(wall_seconds=120), hidden=3, seed=11)
    reference = nbformat.read(REFERENCES[exercise], as_version=4)
    question = question_bank.get(qid)
    result, sandboxed = grade.grade_question(question, reference, mutated[qid], settings)
    assert sandboxed and result.points == 0 and result.max_points == question.points, result
    # a KeyError is an error
    assert result.status in ("failed", "error"), result
