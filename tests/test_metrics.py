"""Metrics: VQA beside baselines, captions parsed back by object count, BLEU-4 against a hand
computation."""

import math

import pytest

from mmcourse import data, metrics


def test_vqa_report_puts_the_model_beside_both_baselines():
    train = [qa for _, qa in data.qa_examples("train", 2000)]
    examples = data.qa_examples("test", 500)
    test = [qa for _, qa in examples]
    perfect = metrics.vqa_report(train, test, [qa.answer for qa in test])
    assert set(perfect) == {*data.KINDS, "all"}
    for kind, row in perfect.items():
        assert row["model"] == 1.0
        assert row["majority"] < 0.6 and row["question-only"] < 0.6, (kind, row)
    table = metrics.format_vqa_report(perfect)
    assert "question-only" in table and "100.0%" in table
    # the answers are compared normalized: case and punctuation do not matter
    shouted = metrics.vqa_report(train, test, [qa.answer.upper() + "." for qa in test])
    assert shouted["all"]["model"] == 1.0


def test_caption_accuracy_by_object_count():
    scenes = data.scenes("test", 30)
    right = [data.caption(s) for s in scenes]
    assert metrics.caption_accuracy(right, scenes)["all"] == 1.0

    def reversed_caption(scene):
        phrases = [f"{o.phrase} at the {o.position}" for o in reversed(scene.in_reading_order)]
        return phrases[0] if len(phrases) == 1 else ", ".join(phrases[:-1]) + " and " + phrases[-1]

    wrong_order = [reversed_caption(s) for s in scenes]
    scores = metrics.caption_accuracy(right[:10] + wrong_order[10:], scenes)
    counts = {n: sum(len(s.objects) == n for s in scenes[10:]) for n in (1, 2, 3)}
    # a reversed 1-object caption is still right
    assert scores["all"] == pytest.approx((10 + counts[1]) / 30)
    assert set(scores) == {"all", "1 obj", "2 obj", "3 obj"}
    assert not metrics.caption_correct(
        "a red circle at the top left and", data.Scene.from_triples([("red", "circle", "top left")])
    )
    assert metrics.caption_correct(
        "A red circle at the top left.", data.Scene.from_triples([("red", "circle", "top left")])
    )
    for malformed in (
        "an red circle at the top left",
        "a red circle at the top left, a blue square at the center",
        "a red circle at the top left and a blue square at the top and a red square at the left",
    ):
        assert data.parse_caption(malformed) is None, malformed
    with pytest.raises(ValueError, match="one caption per scene"):
        metrics.caption_accuracy(right[:3], scenes)


def test_bleu4_matches_a_hand_computation():
    assert metrics.bleu4(
        ["a red circle at the top left"], ["a red circle at the top left"]
    ) == pytest.approx(1.0)
    candidate = "a red circle at the left"  # 6 words
    reference = "a red circle at the top left"  # 7 words
    # clipped precisions: 1-grams 6/6, 2-grams 4/5 (a red, red circle, circle at, at the), 3-grams
    # 3/4, 4-grams 2/3
    precisions = [6 / 6, 4 / 5, 3 / 4, 2 / 3]
    expected = math.exp(1 - 7 / 6) * math.exp(sum(math.log(p) for p in precisions) / 4)
    assert metrics.bleu4([candidate], [reference]) == pytest.approx(expected)
    assert metrics.bleu4(["blue square"], ["a red circle at the top left"]) == 0.0
    # several references: the closest length counts for the brevity penalty
    assert metrics.bleu4([candidate], [[reference, "a red circle at the left"]]) == pytest.approx(
        1.0
    )
    with pytest.raises(ValueError, match="one entry per candidate"):
        metrics.bleu4(["a"], [])
