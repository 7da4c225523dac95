"""`release` (exercises generated from solutions) and `start` (a learner's own copy, never
overwritten)."""

import json
import shutil
import subprocess
import sys

import nbformat
import pytest

from mmcourse.course import release
from mmcourse.course.release import BEGIN, END, ReleaseError
from mmcourse.grading import question_bank


def test_exercises_are_in_sync_with_solutions(course_root):
    assert release.release(course_root, check=True) == []
    done = subprocess.run(
        [sys.executable, "-m", "mmcourse", "release", "--check"], capture_output=True, text=True
    )
    assert done.returncode == 0, done.stderr


@pytest.fixture
def course_copy(tmp_path, course_root):
    for folder in ("solutions", "exercises"):
        shutil.copytree(course_root / folder, tmp_path / folder)
    return tmp_path


def test_release_check_names_stale_missing_and_orphan_files(course_copy):
    (exercise,) = list((course_copy / "exercises").glob("ex00_*.ipynb"))
    exercise.write_text(exercise.read_text().replace("YOUR CODE HERE", "my own edit"))
    shutil.copy(exercise, course_copy / "exercises" / "ex77_gone.ipynb")
    stale = release.release(course_copy, check=True)
    assert stale == [
        f"{exercise.name} (out of date)",
        "ex77_gone.ipynb (no solution notebook; delete it)",
    ]
    assert "my own edit" in exercise.read_text()  # --check writes nothing
    exercise.unlink()
    assert release.release(course_copy, check=True)[0] == f"{exercise.name} (missing)"
    release.release(course_copy)
    assert release.release(course_copy, check=True) == []
    assert not (course_copy / "exercises" / "ex77_gone.ipynb").exists()


def test_stubs_name_their_question_and_keep_tags_and_metadata(course_root):
    for solution in (course_root / "solutions").glob("ex*.ipynb"):
        source = release.read_notebook(solution)
        exercise = release.read_notebook(course_root / "exercises" / solution.name)
        assert exercise.metadata == source.metadata
        assert len(exercise.cells) == len(source.cells)
        for before, after in zip(source.cells, exercise.cells):
            assert after.metadata == before.metadata
            assert BEGIN not in after.source and END not in after.source
            qids = [t for t in before.metadata.get("tags", []) if t in question_bank.builtin()]
            if qids:
                assert f'raise NotImplementedError("{qids[0]}: write this part")' in after.source
            elif BEGIN not in before.source:
                assert after.source == before.source
            if after.cell_type == "code":
                assert after.outputs == [] and after.execution_count is None
        answered = {t for c in exercise.cells for t in c.metadata.get("tags", [])}
        assert {q.qid for q in question_bank.for_exercise(solution.name[:4])} <= answered


def _notebook_with(source, tags=("ex00_caption",)):
    book = nbformat.v4.new_notebook(
        cells=[nbformat.v4.new_code_cell(source, metadata={"tags": list(tags)})]
    )
    return book


@pytest.mark.parametrize(
    "source, tags, message",
    [
        (f"x = 1\n{BEGIN}\ny = 2\n", ("ex00_caption",), "never closed"),
        (f"{END}\n", ("ex00_caption",), "without a"),
        (f"{BEGIN}\n{BEGIN}\n{END}\n", ("ex00_caption",), "second"),
        (f"{BEGIN}\ny = 2\n{END}\n", (), "no question tag"),
    ],
)
def test_broken_markers_are_clear_errors(source, tags, message):
    with pytest.raises(ReleaseError, match=message):
        release.release_notebook(_notebook_with(source, tags), "ex00_test.ipynb")


def test_an_answer_cell_per_question_is_required():
    with pytest.raises(ReleaseError, match="no answer cell .* for ex00_tokenize"):
        release.release_notebook(
            _notebook_with(f"def my_caption(s):\n    {BEGIN}\n    pass\n    {END}\n"),
            "ex00_x.ipynb",
        )


def test_stub_keeps_indentation_and_code_around_it():
    book = _notebook_with(
        f"def my_caption(s):\n    a = 1\n    {BEGIN}\n    return 2\n    {END}\n# after"
    )
    book.cells.append(
        nbformat.v4.new_code_cell(
            f"def my_tokenize(t, v):\n    {BEGIN}\n    return []\n    {END}",
            metadata={"tags": ["ex00_tokenize"]},
        )
    )
    out = release.release_notebook(book, "ex00_x.ipynb").cells[0].source
    assert out == (
        "def my_caption(s):\n    a = 1\n    # YOUR CODE HERE\n"
        '    raise NotImplementedError("ex00_caption: write this part")\n# after'
    )


def test_corrupt_notebook_is_named(tmp_path):
    bad = tmp_path / "ex00_broken.ipynb"
    bad.write_text('{"cells": [')
    with pytest.raises(ReleaseError, match="ex00_broken.ipynb is not valid notebook JSON"):
        release.read_notebook(bad)
    bad.write_text(json.dumps({"cells": 3}))
    with pytest.raises(ReleaseError, match="is not a valid notebook"):
        release.read_notebook(bad)


def test_start_copies_once_and_never_overwrites(tmp_path, course_root):
    path, copied = release.start("ex00", workspace=tmp_path)
    assert copied and path.read_bytes() == (course_root / "exercises" / path.name).read_bytes()
    path.write_text("my work")
    again, copied = release.start("ex00", workspace=tmp_path)
    assert again == path and not copied and path.read_text() == "my work"
    with pytest.raises(ValueError, match="no exercise 'ex42'; available: ex00"):
        release.start("ex42", workspace=tmp_path)


def test_start_command_and_workspace_is_git_ignored(tmp_path, course_root, monkeypatch):
    monkeypatch.setenv(release.WORKSPACE_ENV, str(tmp_path / "ws"))
    run = lambda: subprocess.run(
        [sys.executable, "-m", "mmcourse", "start", "ex00"], capture_output=True, text=True
    )
    first, second = run(), run()
    assert first.returncode == 0 and "Your copy" in first.stdout
    assert second.returncode == 0 and "kept as it is" in second.stdout
    ignored = subprocess.run(
        ["git", "check-ignore", "-q", "workspace/ex00_shapes_world.ipynb"], cwd=course_root
    )
    assert ignored.returncode == 0
