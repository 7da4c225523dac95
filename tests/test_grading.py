"""`check` and the question definitions: solutions pass, plausible bugs fail with the right hint."""

import numpy as np
import pytest
import torch

from mmcourse import grading, questions
from mmcourse.questions import Close, Exact, to_plain
from mmcourse.release import BEGIN, read_notebook

from conftest import ROOT


def solution_cells(qid):
    """The answer cell of `qid` in its solution notebook, and the code of the cells before it."""
    exercise = qid.split("_", 1)[0]
    (path,) = (ROOT / "solutions").glob(f"{exercise}_*.ipynb")
    setup = []
    for cell in read_notebook(path).cells:
        if cell.cell_type != "code":
            continue
        if qid in cell.metadata.get("tags", []):
            return "\n".join(setup), cell.source
        if BEGIN not in cell.source and "check(" not in cell.source:
            setup.append(cell.source)
    raise AssertionError(f"no answer cell for {qid}")


def learner_object(qid, source_edit=None):
    setup, answer = solution_cells(qid)
    if source_edit:
        old, new = source_edit
        assert old in answer, f"mutation {old!r} does not apply to the solution of {qid}"
        answer = answer.replace(old, new)
    namespace = {}
    exec(compile(setup, "<setup>", "exec"), namespace)
    exec(compile(answer, "<answer>", "exec"), namespace)
    return namespace[questions.get(qid).name]


@pytest.mark.parametrize("qid", list(questions.all_questions()))
def test_solutions_pass_check_and_hidden_cases(qid, capsys):
    obj = learner_object(qid)
    assert grading.check(qid, obj) is True
    assert "passes all" in capsys.readouterr().out
    question = questions.get(qid)
    for i, case in enumerate(question.hidden_cases(seed=2026, n=60)):
        assert question.run_case(i, case, obj).status == "passed", case


MUTATIONS = [
    ("ex00_caption", ("sorted(scene.objects, key=lambda o: data.POSITIONS.index(o.position))", "list(scene.objects)"),
     "reading order"),
    ("ex00_caption", (" at the {o.position}", ""), "needs its position"),
    ("ex00_caption", ('", ".join(phrases[:-1]) + " and "', '", ".join(phrases[:-1]) + ", and "'), "serial comma"),
    ("ex00_caption", ("{data.article(o.color)}", "a"), "'an' before"),
    ("ex00_tokenize", ('vocab.get(word, vocab["[UNK]"])', 'vocab.get(word, vocab["[UNK]"]) + 1'), "off by one"),
    ("ex00_tokenize", ('re.findall(r"[^\\s,]+|,", text)', 're.findall(r"[^\\s,]+|,", text)[:-1]'), "One word has no id"),
    ("ex00_tokenize", ('return [vocab["[BOS]"], *ids, vocab["[EOS]"]]', "return ids"), "special tokens"),
    ("ex00_tokenize", ("text.lower()", "text"), "Lower-case"),
    ("ex00_tokenize", ('vocab.get(word, vocab["[UNK]"]) for word', 'vocab[word] for word'), None),
    ("ex01_preprocess", ("image.float() / 255.0", "image.float()"), "Rescale first"),
    ("ex01_preprocess", ("(pixels - mean) / std", "pixels / std - mean"), "(x - mean) / std"),
    ("ex01_preprocess", ("torch.tensor(vision.CLIP_MEAN)", "torch.tensor((0.485, 0.456, 0.406))"), None),
    ("ex01_preprocess", ("return (pixels - mean) / std", "return ((pixels - mean) / std).permute(1, 2, 0)"), "channels first"),
    ("ex01_patchify", ("grid.permute(0, 2, 4, 1, 3, 5)", "grid.permute(0, 4, 2, 1, 3, 5)"), "column by column"),
    ("ex01_patchify", ("grid.permute(0, 2, 4, 1, 3, 5)", "grid.permute(0, 2, 4, 3, 5, 1)"), "channel first"),
    ("ex02_spatial_grid", ("last_hidden_state[:, 1:]", "last_hidden_state[:, :-1]"), "*first* token"),
    ("ex02_spatial_grid", ("return patches.reshape(b, side, side, d)", "return patches.reshape(b, side, side, d).transpose(1, 2)"), "swapped"),
    ("ex02_similarity_map", ("torch.nn.functional.normalize(grid, dim=-1)", "grid"), "not the dot product"),
    ("ex02_similarity_map", ("unit[row, col]", "unit[col, row]"), "Row and column are swapped"),
    ("ex03_contrastive_loss", ("(F.cross_entropy(logits, targets) + F.cross_entropy(logits.T, targets)) / 2",
                               "F.cross_entropy(logits, targets)"), "only one direction"),
    ("ex03_contrastive_loss", ("image = F.normalize(image_features, dim=-1)\n    text = F.normalize(text_features, dim=-1)",
                               "image, text = image_features, text_features"), "L2-normalize"),
    ("ex03_contrastive_loss", ("text.T / temperature", "text.T * temperature"), "Divide the similarities"),
    ("ex03_zero_shot", ("similarity.argmax(dim=1)", "similarity.argmin(dim=1)"), "argmax, not argmin"),
    ("ex03_zero_shot", ("similarity.argmax(dim=1)", "similarity.argmax(dim=0)"), "One answer per image"),
    ("ex03_recall_at_k", ("similarity.topk(k, dim=1)", "similarity.topk(k + 1, dim=1)"), "Off by one"),
]


@pytest.mark.parametrize("qid, edit, hint", MUTATIONS, ids=[f"{m[0]}:{m[2]}" for m in MUTATIONS])
def test_mutated_solutions_fail_with_the_right_hint(qid, edit, hint, capsys):
    obj = learner_object(qid, edit)
    assert grading.check(qid, obj) is False
    out = capsys.readouterr().out
    assert "fails visible case" in out
    question = questions.get(qid)
    results = [question.run_case(i, c, obj) for i, c in enumerate(question.visible)]
    failed = [r for r in results if r.status != "passed"]
    assert failed
    if hint:
        assert hint in out
        assert any(hint in r.hint for r in failed)
    hidden = question.hidden_cases(seed=7, n=60)
    assert any(question.run_case(i, c, obj).status != "passed" for i, c in enumerate(hidden))


def test_check_never_shows_the_reference_answer(capsys):
    wrong = lambda scene: "a red circle at the top left"  # noqa: E731
    grading.check("ex00_caption", wrong)
    out = capsys.readouterr().out
    question = questions.get("ex00_caption")
    for case in question.visible[1:]:
        assert question.expected(case) not in out


def test_not_written_and_not_callable_and_raising(capsys):
    def stub(scene):
        raise NotImplementedError("ex00_caption: write this part")

    assert grading.check("ex00_caption", stub) is False
    assert "not written yet" in capsys.readouterr().out
    assert grading.check("ex00_caption", 42) is False
    assert "should be a function, got a int" in capsys.readouterr().out
    assert grading.check("ex00_caption", lambda scene: 1 / 0) is False
    assert "raised ZeroDivisionError" in capsys.readouterr().out


def test_a_function_that_changes_its_arguments_cannot_change_the_cases():
    def vandal(text, vocab):
        vocab.clear()
        return []

    question = questions.get("ex00_tokenize")
    before = [dict(case["vocab"]) for case in question.visible]
    assert grading.check("ex00_tokenize", vandal) is False
    assert [case["vocab"] for case in question.visible] == before


def test_unknown_question_lists_the_known_ones():
    with pytest.raises(ValueError, match="unknown question id 'ex99_x'.*ex00_caption"):
        grading.check("ex99_x", print)


def test_check_shows_html_in_a_notebook(monkeypatch):
    shown = []
    monkeypatch.setattr(grading, "_in_notebook", lambda: True)
    monkeypatch.setattr("IPython.display.display", lambda obj: shown.append(obj))
    grading.check("ex00_caption", lambda scene: "<b>x</b>")
    assert "&lt;b&gt;x&lt;/b&gt;" in shown[0].data and "<table>" in shown[0].data


class LyingStr(str):
    def __eq__(self, other):
        return True

    __hash__ = str.__hash__


class AlwaysEqual:
    def __eq__(self, other):
        return True


def test_comparisons_are_strict_about_types():
    exact = Exact()
    assert exact("abc", "abc") is None
    assert "expected a str" in exact("abc", LyingStr("zzz"))
    assert "expected a str" in exact("abc", AlwaysEqual())
    assert "expected a list of 2 items" in exact([1, 2], [1, 2, 3])
    assert exact([1, 2], (1, 2)) is not None  # tuples are made lists by to_plain, not by compare
    assert exact([1, 2], to_plain((1, 2))) is None
    assert "differs" in exact({"a": 1}, {"a": 2})


def test_close_comparison_on_tensors_and_nan():
    close = Close(rtol=1e-4, atol=1e-5)
    expected = np.array([1.0, 2.0, 3.0], dtype=np.float32)
    assert close(expected, to_plain(torch.tensor([1.0, 2.0, 3.000001]))) is None
    assert "off by more than" in close(expected, to_plain(torch.tensor([1.0, 2.1, 3.0])))
    assert "NaN" in close(expected, np.array([1.0, np.nan, 3.0], dtype=np.float32))
    assert "shape" in close(expected, np.zeros((3, 1), dtype=np.float32))
    assert "expected a number" in close(1.0, "1.0")
    assert close(1.0, 1) is None
    assert "expected a bool" in Exact()(True, 1)
