"""`check` and the question definitions: solutions pass, plausible bugs fail with the right hint."""

import numpy as np
import pytest
import torch
from conftest import ROOT

from mmcourse import grading
from mmcourse.course.release import BEGIN, read_notebook
from mmcourse.grading import question_bank
from mmcourse.grading.judging import Close, Exact, to_plain


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
    return namespace[question_bank.get(qid).name]


@pytest.mark.parametrize("qid", list(question_bank.builtin()))
def test_solutions_pass_check_and_hidden_cases(qid, capsys):
    obj = learner_object(qid)
    assert grading.check(qid, obj) is True
    assert "passes all" in capsys.readouterr().out
    question = question_bank.get(qid)
    for i, case in enumerate(question.hidden_cases(seed=2026, n=10)):
        assert question.run_case(i, case, obj).status == "passed", case


MUTATIONS = [
    (
        "ex00_caption",
        (
            "sorted(scene.objects, key=lambda o: data.POSITIONS.index(o.position))",
            "list(scene.objects)",
        ),
        "reading order",
    ),
    ("ex00_caption", (" at the {o.position}", ""), "needs its position"),
    (
        "ex00_caption",
        ('", ".join(phrases[:-1]) + " and "', '", ".join(phrases[:-1]) + ", and "'),
        "serial comma",
    ),
    ("ex00_caption", ("{data.article(o.color)}", "a"), "'an' before"),
    (
        "ex00_tokenize",
        ('vocab.get(word, vocab["[UNK]"])', 'vocab.get(word, vocab["[UNK]"]) + 1'),
        "off by one",
    ),
    (
        "ex00_tokenize",
        ('re.findall(r"[^\\s,]+|,", text)', 're.findall(r"[^\\s,]+|,", text)[:-1]'),
        "One word has no id",
    ),
    (
        "ex00_tokenize",
        ('return [vocab["[BOS]"], *ids, vocab["[EOS]"]]', "return ids"),
        "special tokens",
    ),
    ("ex00_tokenize", ("text.lower()", "text"), "Lower-case"),
    ("ex00_tokenize", ('vocab.get(word, vocab["[UNK]"]) for word', "vocab[word] for word"), None),
    ("ex01_preprocess", ("image.float() / 255.0", "image.float()"), "Rescale first"),
    ("ex01_preprocess", ("(pixels - mean) / std", "pixels / std - mean"), "(x - mean) / std"),
    (
        "ex01_preprocess",
        ("torch.tensor(vision.CLIP_MEAN, ", "torch.tensor((0.485, 0.456, 0.406), "),
        None,
    ),
    (
        "ex01_preprocess",
        ("return (pixels - mean) / std", "return ((pixels - mean) / std).permute(1, 2, 0)"),
        "channels first",
    ),
    (
        "ex01_patchify",
        ("grid.permute(0, 2, 4, 1, 3, 5)", "grid.permute(0, 4, 2, 1, 3, 5)"),
        "column by column",
    ),
    (
        "ex01_patchify",
        ("grid.permute(0, 2, 4, 1, 3, 5)", "grid.permute(0, 2, 4, 3, 5, 1)"),
        "channel first",
    ),
    ("ex01_patchify", ("grid = grid.permute(0, 2, 4, 1, 3, 5)", "grid = grid"), "plain reshape"),
    (
        "ex02_spatial_grid",
        ("last_hidden_state[:, 1:]", "last_hidden_state[:, :-1]"),
        "*first* token",
    ),
    (
        "ex02_spatial_grid",
        (
            "return patches.reshape(b, side, side, d)",
            "return patches.reshape(b, side, side, d).transpose(1, 2)",
        ),
        "swapped",
    ),
    (
        "ex02_similarity_map",
        ("torch.nn.functional.normalize(grid, dim=-1)", "grid"),
        "not the dot product",
    ),
    ("ex02_similarity_map", ("unit[row, col]", "unit[col, row]"), "Row and column are swapped"),
    ("ex02_locate", ("scores.argmax()", "scores.argmin()"), "*least* similar"),
    (
        "ex02_locate",
        (".permute(0, 2, 1, 3)", ".permute(2, 0, 1, 3)"),
        "Rows and columns of the cells",
    ),
    (
        "ex02_locate",
        ("cells = similarity.reshape(3, k, 3, k).permute(0, 2, 1, 3)", "cells = similarity"),
        "runs of consecutive patches",
    ),
    (
        "ex02_locate",
        ("unit = torch.nn.functional.normalize(grid, dim=-1)", "unit = grid"),
        "not the dot product",
    ),
    ("ex02_locate", (".mean(dim=1)", ".max(dim=1).values"), "*mean* similarity"),
    (
        "ex03_contrastive_loss",
        (
            "(F.cross_entropy(logits, targets) + F.cross_entropy(logits.T, targets)) / 2",
            "F.cross_entropy(logits, targets)",
        ),
        "only one direction",
    ),
    (
        "ex03_contrastive_loss",
        (
            "image = F.normalize(image_features, dim=-1)\n    text = F.normalize(text_features, "
            "dim=-1)",
            "image, text = image_features, text_features",
        ),
        "L2-normalize",
    ),
    (
        "ex03_contrastive_loss",
        ("text.T / temperature", "text.T * temperature"),
        "Divide the similarities",
    ),
    (
        "ex03_zero_shot",
        ("similarity.argmax(dim=1)", "similarity.argmin(dim=1)"),
        "argmax, not argmin",
    ),
    (
        "ex03_zero_shot",
        ("similarity.argmax(dim=1)", "similarity.argmax(dim=0)"),
        "One answer per image",
    ),
    (
        "ex03_recall_at_k",
        ("similarity.topk(k, dim=1)", "similarity.topk(k + 1, dim=1)"),
        "Off by one",
    ),
    (
        "ex03_hard_negatives",
        ("c != obj.color and (c, obj.shape) in pairs]", "c != obj.color]"),
        "not in `pairs`",
    ),
    ("ex03_hard_negatives", ("if other.pair != obj.pair:", "if True:"), "own alt text"),
    ("ex03_hard_negatives", ("changed.append(tuple(swapped))", "pass"), "trading places"),
    ("ex03_hard_negatives", ("if len(objects) == 1:", "if False:"), "lone object's alt text"),
    (
        "ex03_hard_negatives",
        (
            "[dataclasses.replace(obj, color=c) for c in data.COLORS if c != obj.color and (c, "
            "obj.shape) in pairs]",
            "[dataclasses.replace(obj, color=c, shape=s) for c, s in pairs if c != obj.color]",
        ),
        "two changes away",
    ),
    (
        "ex03_hard_negatives",
        ("data.alt_text(data.Scene(c))", "data.caption(data.Scene(c))"),
        "not captions",
    ),
    ("ex03_hard_negatives", ("return sorted({", "return list({"), "wrong order"),
    (
        "ex04_linear_projection",
        ("features @ weight.T + bias", "features @ weight + bias"),
        "multiply by its transpose",
    ),
    (
        "ex04_linear_projection",
        ("features @ weight.T + bias", "features @ weight.T"),
        "Add the bias",
    ),
    (
        "ex04_mlp_projection",
        ("0.5 * hidden * (1 + torch.erf(hidden / math.sqrt(2)))", "torch.relu(hidden)"),
        "That is ReLU",
    ),
    (
        "ex04_mlp_projection",
        (
            "0.5 * hidden * (1 + torch.erf(hidden / math.sqrt(2)))",
            'F.gelu(hidden, approximate="tanh")',
        ),
        "tanh approximation",
    ),
    (
        "ex04_mlp_projection",
        ("0.5 * hidden * (1 + torch.erf(hidden / math.sqrt(2)))", "hidden"),
        "no activation",
    ),
    ("ex04_mlp_projection", ("hidden @ w2.T + b2", "hidden @ w2.T"), "Both layers have a bias"),
    (
        "ex04_parameter_count",
        ("first = in_dim * out_dim + out_dim", "first = in_dim * out_dim"),
        "has a bias too",
    ),
    (
        "ex04_parameter_count",
        ("second = out_dim * out_dim + out_dim", "second = in_dim * out_dim + out_dim"),
        "maps D_lm to D_lm",
    ),
    ("ex04_parameter_count", ("return first + second", "return first"), "count both"),
    (
        "ex05_join_inputs",
        (
            "torch.cat([image_embeds, text_embeds], dim=1)",
            "torch.cat([text_embeds, image_embeds], dim=1)",
        ),
        "image tokens come first",
    ),
    (
        "ex05_join_inputs",
        (
            "torch.ones(b, n_image, dtype=attention_mask.dtype, device=attention_mask.device)",
            "torch.zeros(b, n_image, dtype=attention_mask.dtype, device=attention_mask.device)",
        ),
        "must be attended to",
    ),
    (
        "ex05_join_inputs",
        (
            "torch.full((b, n_image), IGNORE_INDEX, dtype=labels.dtype, device=labels.device)",
            "torch.zeros(b, n_image, dtype=labels.dtype, device=labels.device)",
        ),
        "nothing to predict on the image",
    ),
    (
        "ex05_text_row",
        (
            "labels[len(prompt_ids) : len(sequence)] = torch.tensor([*answer_ids, eos_id])",
            "labels[: len(sequence)] = torch.tensor(sequence)",
        ),
        "The prompt is given",
    ),
    (
        "ex05_text_row",
        (
            "labels[len(prompt_ids) : len(sequence)] = torch.tensor([*answer_ids, eos_id])",
            "labels[len(prompt_ids) : len(sequence) - 1] = torch.tensor(answer_ids)",
        ),
        "[EOS] after the answer",
    ),
    (
        "ex05_text_row",
        (
            "labels[len(prompt_ids) : len(sequence)] =",
            "labels[len(prompt_ids) - 1 : len(sequence) - 1] =",
        ),
        "Do not shift the labels",
    ),
    (
        "ex05_text_row",
        ("labels[len(prompt_ids) : len(sequence)] = torch.tensor([*answer_ids, eos_id])", "pass"),
        "Every label is -100",
    ),
    (
        "ex05_text_row",
        (
            "attention_mask = torch.zeros(length, dtype=torch.long)",
            "attention_mask = torch.ones(length, dtype=torch.long)",
        ),
        "0 on the padding",
    ),
    (
        "ex05_answer_loss",
        ("logits, targets = logits[:, :-1], labels[:, 1:]", "targets = labels"),
        "Shift first",
    ),
    (
        "ex05_answer_loss",
        (
            "per_example = (losses * counted).sum(dim=1) / counted.sum(dim=1)",
            "per_example = (losses * counted).sum() / counted.sum()",
        ),
        "mean over all labelled tokens",
    ),
    (
        "ex05_answer_loss",
        (
            "per_example = (losses * counted).sum(dim=1) / counted.sum(dim=1)",
            "per_example = losses.mean(dim=1)",
        ),
        "labelled positions only",
    ),
    (
        "ex05_expand_image",
        (
            "before, after = slice(0, i), slice(i + 1, None)",
            "before, after = slice(0, i + 1), slice(i + 1, None)",
        ),
        "The placeholder is replaced",
    ),
    (
        "ex05_expand_image",
        (
            "ids = torch.cat([input_ids[before], image, input_ids[after]])",
            "ids = torch.cat([image, input_ids[before], input_ids[after]])",
        ),
        "where the placeholder is",
    ),
    (
        "ex05_expand_image",
        (
            "labels = torch.where(answer, ids, torch.full_like(ids, IGNORE_INDEX))",
            "labels = ids.clone()",
        ),
        "Only the assistant's tokens",
    ),
    (
        "ex05_expand_image",
        (
            "none = torch.zeros(num_image_tokens, dtype=assistant_mask.dtype, device=device)",
            "none = torch.ones(num_image_tokens, dtype=assistant_mask.dtype, device=device)",
        ),
        "image positions have nothing to predict",
    ),
    (
        "ex05_expand_image",
        (
            "labels = torch.where(answer, ids, torch.full_like(ids, IGNORE_INDEX))",
            "labels = torch.where(answer, ids, torch.full_like(ids, IGNORE_INDEX)).roll(-1)",
        ),
        "Do not shift the labels",
    ),
    (
        "ex05_expand_image",
        (
            "answer = torch.cat([assistant_mask[before], none, assistant_mask[after]]) == 1",
            "answer = torch.cat([assistant_mask, none[1:]]) == 1",
        ),
        "Expand the assistant mask",
    ),
    (
        "ex06_next_token_probs",
        ("scaled = logits / temperature", "scaled = logits * temperature"),
        "do not multiply",
    ),
    (
        "ex06_next_token_probs",
        ("scaled.topk(min(top_k, ", "scaled.topk(min(top_k + 1, "),
        "Off by one",
    ),
    (
        "ex06_next_token_probs",
        ("filtered.softmax(dim=-1)", "scaled.softmax(dim=-1) * (scaled >= kth_best)"),
        "Filter first",
    ),
    ("ex06_next_token_probs", ('float("-inf")', "0.0"), "not 0"),
    (
        "ex06_greedy_decode",
        ("if next_id == eos:", "if next_id == -1:"),
        "Stop after the first [EOS]",
    ),
    (
        "ex06_greedy_decode",
        (
            "new_ids.append(next_id)\n        if next_id == eos:\n            break",
            "if next_id == eos:\n            break\n        new_ids.append(next_id)",
        ),
        "Keep the [EOS]",
    ),
    ("ex06_greedy_decode", ("logits[0, -1]", "logits[0, 0]"), "*last* position"),
    (
        "ex06_greedy_decode",
        ("range(max_new_tokens)", "range(max_new_tokens - 1)"),
        "max_new_tokens counts",
    ),
    (
        "ex06_greedy_decode",
        (
            "embeds = torch.cat([embeds, model.embed_text(torch.tensor([[next_id]]))], dim=1)  # "
            "(1, L + 1, D)\n"
            "        mask = torch.cat([mask, mask.new_ones(1, 1)], dim=1)  # (1, L + 1)",
            "pass",
        ),
        "feed each chosen token back",
    ),
    (
        "ex06_cached_greedy_decode",
        ("mask = torch.cat([mask, mask.new_ones(1, 1)], dim=1)", "mask = mask"),
        "append a 1 to it at every",
    ),
    # the whole sequence again instead of the cache: the grader's language model refuses it
    ("ex06_cached_greedy_decode", ("cache=out.cache", "cache=None"), None),
    (
        "ex06_cached_greedy_decode",
        ("if next_id == eos or len(", "if len("),
        "Stop after the first [EOS]",
    ),
    (
        "ex06_cached_greedy_decode",
        (
            "new_ids.append(next_id)\n"
            "        if next_id == eos or len(new_ids) == max_new_tokens:\n            break",
            "if next_id == eos:\n            break\n        new_ids.append(next_id)\n"
            "        if len(new_ids) == max_new_tokens:\n            break",
        ),
        "Keep the [EOS]",
    ),
    (
        "ex06_cached_greedy_decode",
        ("len(new_ids) == max_new_tokens", "len(new_ids) == max_new_tokens - 1"),
        "max_new_tokens counts",
    ),
    ("ex06_cached_greedy_decode", ("out.logits[0, -1]", "out.logits[0, 0]"), "*last* position"),
    (
        "ex07_visual_qa",
        ("skip_special_tokens=True", "skip_special_tokens=False"),
        "skip_special_tokens=True",
    ),
    ("ex07_visual_qa", (".strip()", ' + " "'), "strip()"),
    (
        "ex07_visual_qa",
        ("model.prompt_ids(question)]", "model.prompt_ids(question)[1:-1]]"),
        "The prompt is [BOS] question [EOS]",
    ),
    (
        "ex07_visual_qa",
        (
            "torch.cat([image_tokens, model.embed_text(prompt)], dim=1)",
            "torch.cat([model.embed_text(prompt), image_tokens], dim=1)",
        ),
        "image tokens come first",
    ),
    (
        "ex07_accuracy_by_kind",
        (
            "data.normalize_question(prediction) == data.normalize_question(answer)",
            "prediction == answer",
        ),
        "Compare normalized answers",
    ),
    (
        "ex07_accuracy_by_kind",
        ('for key in (kind, "all"):', "for key in (kind,):"),
        "under the key 'all'",
    ),
    (
        "ex07_accuracy_by_kind",
        (
            "return {key: right[key] / total[key] for key in total}",
            'kinds = {key: right[key] / total[key] for key in total if key != "all"}\n'
            '    return {**kinds, "all": sum(kinds.values()) / len(kinds)}',
        ),
        "not the mean of the per-kind",
    ),
    ("ex08_cls_map", ("patches = fused[0, 1:]", "patches = fused[1:, 0]"), "the [CLS] *column*"),
    (
        "ex08_cls_map",
        ("return patches.reshape(side, side)", "return patches.reshape(side, side).T"),
        "Rows and columns",
    ),
    (
        "ex08_cls_map",
        ("fused = attentions[layer].mean(dim=0)", "fused = attentions[layer][0]"),
        "That is one head",
    ),
    ("ex08_cls_map", ("patches = fused[0, 1:]", "patches = fused[0, :-1]"), None),
    (
        "ex08_rollout",
        ("a = 0.5 * weights + 0.5 * eye", "a = weights"),
        "residual connection is missing",
    ),
    ("ex08_rollout", ("result = a @ result", "result = result @ a"), "wrong order"),
    ("ex08_rollout", ("a = a / a.sum(dim=-1, keepdim=True)", "a = a"), "Re-normalize"),
    (
        "ex08_rollout",
        ("fused = attentions.max(dim=1).values", "fused = attentions.mean(dim=1)"),
        None,
    ),
    (
        "ex09_trainable",
        ('return tune == "full" or ".lora_" in name', "return True"),
        "With LoRA only the adapters train",
    ),
    (
        "ex09_trainable",
        (
            'if part == "projector":\n            return True',
            'if part == "projector":\n            return False',
        ),
        "The projector trains in every stage",
    ),
    (
        "ex09_trainable",
        (
            'if part != "language_model" or tune == "projector":',
            'if part == "language_model" and tune == "projector":',
        ),
        "The vision tower stays frozen",
    ),
    (
        "ex09_trainable",
        (
            'if part != "language_model" or tune == "projector":\n            return False\n'
            '        return tune == "full" or ".lora_" in name',
            'if part != "language_model":\n            return False\n'
            '        return tune != "lora" or ".lora_" in name',
        ),
        "Stage 1 trains the projector alone",
    ),
    (
        "ex09_trainable",
        (
            'return tune == "full" or ".lora_" in name',
            'return ".lora_" in name or name.endswith("proj.weight")',
        ),
        "Full fine-tuning trains every language-model parameter",
    ),
    (
        "ex09_lora_parameters",
        ("rank * in_features + out_features * rank", "out_features * in_features * rank"),
        "two small matrices",
    ),
    (
        "ex09_lora_parameters",
        ("rank * in_features + out_features * rank", "rank * in_features"),
        "Count both matrices",
    ),
    (
        "ex09_lora_parameters",
        (
            "rank * in_features + out_features * rank",
            "rank * in_features + out_features * rank + out_features * in_features",
        ),
        "Only the adapters are new",
    ),
    (
        "ex09_lora_forward",
        ("(alpha / rank) * adapter", "alpha * adapter"),
        "scaled by alpha / rank",
    ),
    ("ex09_lora_forward", ("(alpha / rank) * adapter", "adapter"), "Scale the adapter's output"),
    ("ex09_lora_forward", ("return frozen + ", "return "), "The frozen layer still runs"),
    ("ex09_lora_forward", ("x @ weight.T + bias", "x @ weight.T"), "has a bias"),
    ("ex09_lora_forward", ("(x @ lora_a.T) @ lora_b.T", "(x @ lora_a.T) @ lora_b.T * 0.5"), None),
]


@pytest.mark.parametrize("qid, edit, hint", MUTATIONS, ids=[f"{m[0]}:{m[2]}" for m in MUTATIONS])
def test_mutated_solutions_fail_with_the_right_hint(qid, edit, hint, capsys):
    obj = learner_object(qid, edit)
    assert grading.check(qid, obj) is False
    out = capsys.readouterr().out
    assert "fails visible case" in out
    question = question_bank.get(qid)
    results = [question.run_case(i, c, obj) for i, c in enumerate(question.visible)]
    failed = [r for r in results if r.status != "passed"]
    assert failed
    if hint:
        assert hint in out
        assert any(hint in r.hint for r in failed)
    hidden = question.hidden_cases(seed=7, n=60)
    assert any(question.run_case(i, c, obj).status != "passed" for i, c in enumerate(hidden))


def test_check_never_shows_the_reference_answer(capsys):
    wrong = lambda scene: "a red circle at the top left"
    grading.check("ex00_caption", wrong)
    out = capsys.readouterr().out
    question = question_bank.get("ex00_caption")
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

    question = question_bank.get("ex00_tokenize")
    before = [dict(case["vocab"]) for case in question.visible]
    assert grading.check("ex00_tokenize", vandal) is False
    assert [case["vocab"] for case in question.visible] == before


def test_unknown_question_lists_the_known_ones():
    with pytest.raises(ValueError, match="unknown question id 'ex99_x'.*ex00_caption"):
        grading.check("ex99_x", print)


def test_check_shows_html_in_a_notebook(monkeypatch):
    shown = []
    monkeypatch.setattr(grading.checker, "_in_notebook", lambda: True)
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


# --- the question bank: built explicitly; private variants scoped to one grading run --------------


def test_the_bank_is_the_exercise_modules_questions():
    bank = question_bank.builtin()
    assert question_bank.declared_ids() == sorted(bank)  # what release reads without importing them
    exercises = sorted(p.name[:4] for p in (ROOT / "solutions").glob("ex*.ipynb"))
    assert list(question_bank.EXERCISES) == exercises
    assert {q.exercise for q in bank.values()} == set(exercises)


def test_private_questions_make_a_new_bank_and_leave_the_built_ins_alone(tmp_path):
    built_in = question_bank.get("ex03_recall_at_k")
    (tmp_path / "variant.py").write_text(
        "import dataclasses\nfrom mmcourse.grading import question_bank\n"
        "base = question_bank.get('ex03_recall_at_k')\n"
        "question_bank.register(dataclasses.replace(base, points=9))\n"
    )
    bank, added = question_bank.load_private(tmp_path)
    assert [q.qid for q in added] == ["ex03_recall_at_k"] and bank.get(
        "ex03_recall_at_k"
    ).points == 9
    assert question_bank.get("ex03_recall_at_k") is built_in and built_in.points != 9
    assert len(bank) == len(question_bank.builtin())
    with pytest.raises(RuntimeError, match="while `mmcourse grade --questions DIR` reads DIR"):
        question_bank.register(built_in)
    with pytest.raises(ValueError, match="not a folder"):
        question_bank.load_private(tmp_path / "variant.py")
