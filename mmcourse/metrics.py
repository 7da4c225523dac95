"""How well a VLM captions and answers: exact match beside baselines, captions parsed back, BLEU-4.

Lessons 06 and 07 use it. Every VQA accuracy is shown beside the two baselines of lesson 00 (the
majority answer of the question's kind, and the best answer from the question alone), fitted on
training questions.
A generated caption is *correct* when `data.parse_caption` reads it back into exactly the scene's
objects, in reading order; BLEU-4 (corpus level, word n-grams up to 4, brevity penalty) is reported
beside it because papers use it, though for a fixed grammar the parse is the stricter and more
telling measure.

`evaluate_vlm` puts them together on fresh held-out scenes: the table every VLM card and `mmcourse
eval vlm` print.
"""

from __future__ import annotations

import math
from collections import Counter
from collections.abc import Sequence
from typing import TYPE_CHECKING

from . import data
from .vlm import generate_caption, visual_qa

if TYPE_CHECKING:
    from .vlm import MultimodalModel

__all__ = [
    "answer_questions",
    "baseline_scores",
    "bleu4",
    "caption_accuracy",
    "caption_correct",
    "caption_scenes",
    "evaluate_vlm",
    "format_vqa_report",
    "vqa_report",
]


def vqa_report(
    train_items: Sequence[data.QA], test_items: Sequence[data.QA], predictions: Sequence[str]
) -> dict[str, dict[str, float]]:
    """{kind: {"model": acc, "majority": acc, "question-only": acc}} for each kind and "all"."""
    model = data.accuracy_by_kind(test_items, predictions)
    baselines = {
        "majority": data.MajorityBaseline().fit(train_items),
        "question-only": data.QuestionOnlyBaseline().fit(train_items),
    }
    scores = {
        name: data.accuracy_by_kind(test_items, [b.predict(qa.question) for qa in test_items])
        for name, b in baselines.items()
    }
    return {
        kind: {"model": acc, **{name: s[kind] for name, s in scores.items()}}
        for kind, acc in model.items()
    }


def format_vqa_report(report: dict[str, dict[str, float]]) -> str:
    columns = list(next(iter(report.values())))
    lines = [f"{'kind':10}" + "".join(f"{c:>15}" for c in columns)]
    for kind, row in report.items():
        lines.append(f"{kind:10}" + "".join(f"{row[c] * 100:14.1f}%" for c in columns))
    return "\n".join(lines)


def caption_correct(generated: str, scene: data.Scene) -> bool:
    """True when the caption parses back into exactly the scene's objects, in reading order."""
    truth = [(o.color, o.shape, o.position) for o in scene.in_reading_order]
    return data.parse_caption(generated) == truth


def caption_accuracy(generated: Sequence[str], scenes: Sequence[data.Scene]) -> dict[str, float]:
    """Share of correct captions, overall ("all") and by object count ("1 obj", "2 obj", "3
    obj")."""
    if len(generated) != len(scenes):
        raise ValueError(
            f"{len(generated)} captions for {len(scenes)} scenes; give one caption per scene."
        )
    right, total = Counter(), Counter()
    for text, scene in zip(generated, scenes):
        ok = caption_correct(text, scene)
        for key in ("all", f"{len(scene.objects)} obj"):
            right[key] += ok
            total[key] += 1
    return {key: right[key] / total[key] for key in sorted(total, key=lambda k: (k != "all", k))}


def _ngrams(words: Sequence[str], n: int) -> Counter:
    return Counter(tuple(words[i : i + n]) for i in range(len(words) - n + 1))


def bleu4(candidates: Sequence[str], references: Sequence[str | Sequence[str]]) -> float:
    """Corpus BLEU-4 (Papineni et al. 2002): clipped n-gram precisions n = 1..4, geometric mean,
    brevity penalty.

    Texts are compared as normalized words (case and punctuation as in the tokenizer). Each
    reference may be one string or a list of strings. No smoothing: a corpus with no matching 4-gram
    scores 0.
    """
    from .tokenizer import words as split

    if len(candidates) != len(references):
        raise ValueError(
            f"{len(candidates)} candidates for {len(references)} references; give one entry per "
            "candidate."
        )
    matches, totals = [0] * 4, [0] * 4
    candidate_length = reference_length = 0
    for candidate, refs in zip(candidates, references):
        refs = [refs] if isinstance(refs, str) else list(refs)
        cand = split(candidate)
        ref_words = [split(r) for r in refs]
        candidate_length += len(cand)
        # the reference length closest to the candidate's (the shorter one on a tie)
        reference_length += min((abs(len(r) - len(cand)), len(r)) for r in ref_words)[1]
        for n in range(1, 5):
            counts = _ngrams(cand, n)
            best = Counter()
            for r in ref_words:
                best |= _ngrams(r, n)
            matches[n - 1] += sum(min(c, best[g]) for g, c in counts.items())
            totals[n - 1] += max(len(cand) - n + 1, 0)
    if candidate_length == 0 or min(matches) == 0:
        return 0.0
    log_precision = sum(math.log(m / t) for m, t in zip(matches, totals)) / 4
    brevity = (
        1.0
        if candidate_length > reference_length
        else math.exp(1 - reference_length / candidate_length)
    )
    return brevity * math.exp(log_precision)


# --- measuring a VLM on fresh held-out scenes
# ---------------------------------------------------------


def evaluate_vlm(
    model: MultimodalModel,
    n_questions: int = 500,
    n_captions: int = 200,
    split: str = "test",
    start: int = 0,
    num_beams: int = 1,
    progress: bool = False,
) -> dict[str, float]:
    """Exact match per question kind (balanced questions, canonical forms), position by object
    count, and captions parsed back by object count, with BLEU-4. Keys like "vqa color", "vqa
    position (2
    obj)", "caption all"."""
    was_training = model.training
    model.eval()
    examples = data.qa_examples(split, n_questions, start, pairs="seen")
    predictions = answer_questions(model, examples, num_beams, progress)
    out = {
        f"vqa {k}": v
        for k, v in data.accuracy_by_kind([qa for _, qa in examples], predictions).items()
    }
    for n in (1, 2, 3):
        rows = [
            (qa, p)
            for (s, qa), p in zip(examples, predictions)
            if qa.kind == "position" and len(s.objects) == n
        ]
        if rows:
            out[f"vqa position ({n} obj)"] = sum(
                data.normalize_question(p) == qa.answer for qa, p in rows
            ) / len(rows)
    scenes = data.scenes(split, n_captions, start + 50_000_000, pairs="seen")
    captions = caption_scenes(model, scenes, num_beams, progress)
    out.update({f"caption {k}": v for k, v in caption_accuracy(captions, scenes).items()})
    out["caption BLEU-4"] = bleu4(captions, [data.caption(s) for s in scenes])
    model.train(was_training)
    return out


def answer_questions(
    model: MultimodalModel,
    examples,
    num_beams: int = 1,
    progress: bool = False,
    batch_size: int = 64,
) -> list[str]:
    """The model's answers to (scene, QA) examples, in batches."""
    from tqdm.auto import tqdm

    answers: list[str] = []
    for i in tqdm(range(0, len(examples), batch_size), desc="questions", disable=not progress):
        chunk = examples[i : i + batch_size]
        answers += visual_qa(
            model,
            [s.render() for s, _ in chunk],
            [qa.question for _, qa in chunk],
            num_beams=num_beams,
        )
    return answers


def caption_scenes(
    model: MultimodalModel, scenes, num_beams: int = 1, progress: bool = False, batch_size: int = 64
) -> list[str]:
    """The model's captions of scenes, in batches."""
    from tqdm.auto import tqdm

    captions: list[str] = []
    for i in tqdm(range(0, len(scenes), batch_size), desc="captions", disable=not progress):
        captions += generate_caption(
            model, [s.render() for s in scenes[i : i + batch_size]], num_beams=num_beams
        )
    return captions


def baseline_scores(
    n_train: int = 20_000, n_questions: int = 500, split: str = "test", start: int = 0
) -> dict[str, float]:
    """The two baselines' exact match per kind on the questions `evaluate_vlm` asks ("majority
    color", ...)."""
    train_items = [qa for _, qa in data.qa_examples("train", n_train, pairs="seen")]
    test_items = [qa for _, qa in data.qa_examples(split, n_questions, start, pairs="seen")]
    out = {}
    for name, baseline in (
        ("majority", data.MajorityBaseline()),
        ("question-only", data.QuestionOnlyBaseline()),
    ):
        baseline.fit(train_items)
        scores = data.accuracy_by_kind(
            test_items, [baseline.predict(qa.question) for qa in test_items]
        )
        out.update({f"{name} {k}": v for k, v in scores.items()})
    return out
