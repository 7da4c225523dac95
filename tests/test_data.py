"""The shapes world: determinism, texts and answers agree with the scene graph, balance, splits,
errors."""

from collections import Counter

import numpy as np
import pytest
import torch
from hypothesis import given, settings
from hypothesis import strategies as st

from mmcourse import data

seeds = st.integers(min_value=0, max_value=2**40)
SETTINGS = settings(max_examples=300, deadline=None)


def triples(scene):
    return [(o.color, o.shape, o.position) for o in scene.in_reading_order]


def test_same_seed_same_scene_and_identical_pixels():
    for seed in (0, 1, 12345, 2**33):
        a, b = data.random_scene(seed), data.random_scene(seed)
        assert a == b
        assert np.array_equal(np.asarray(a.render()), np.asarray(b.render()))
    assert data.random_scene(1) != data.random_scene(2)


def test_render_is_rgb_of_the_requested_size():
    image = data.random_scene(3).render(96)
    assert image.mode == "RGB" and image.size == (96, 96)
    assert data.random_scene(3).render().size == (data.DEFAULT_IMAGE_SIZE,) * 2


def test_objects_stay_inside_their_cell_and_fill_most_of_it():
    for seed in range(200):
        scene = data.random_scene(seed)
        for obj in scene.objects:
            alone = data.Scene((obj,)).render()
            pixels = np.asarray(alone).astype(int)
            ink = np.abs(pixels - np.array(data.BACKGROUND)).sum(-1) > 30  # (H, W)
            left, top, right, bottom = data.cell_box(obj.position, data.DEFAULT_IMAGE_SIZE)
            outside = ink.copy()
            outside[top:bottom, left:right] = False
            assert not outside.any(), f"seed {seed}: {obj} leaks out of its cell"
            rows, cols = np.nonzero(ink)
            extent = max(rows.max() - rows.min() + 1, cols.max() - cols.min() + 1)
            assert extent >= 0.65 * (right - left), f"seed {seed}: {obj} is too small"


def test_the_object_color_is_the_palette_color():
    scene = data.Scene.from_triples([("purple", "square", "center")])
    left, top, right, bottom = data.cell_box("center", 72)
    center = np.asarray(scene.render())[(top + bottom) // 2, (left + right) // 2]
    assert tuple(center) == data.PALETTE["purple"]


def test_cells_are_whole_patches_at_the_default_size():
    assert data.DEFAULT_IMAGE_SIZE % (3 * data.PATCH_SIZE) == 0
    covered = sorted(i for p in data.POSITIONS for i in data.cell_patches(p))
    assert covered == list(range((data.DEFAULT_IMAGE_SIZE // data.PATCH_SIZE) ** 2))
    with pytest.raises(ValueError, match="whole patches"):
        data.cell_patches("center", image_size=64, patch_size=8)


@SETTINGS
@given(seeds)
def test_alt_text_and_caption_agree_with_the_scene_graph(seed):
    scene = data.random_scene(seed)
    ordered = scene.in_reading_order
    assert [data.POSITIONS.index(o.position) for o in ordered] == sorted(
        data.POSITIONS.index(o.position) for o in ordered
    )
    cap, alt = data.caption(scene), data.alt_text(scene)
    assert data.parse_caption(cap) == triples(scene)
    for obj in ordered:
        assert f"{obj.color} {obj.shape} at the {obj.position}" in cap
        assert f"{obj.color} {obj.shape}" in alt
    assert ("at the" in alt) == (len(ordered) == 1)
    assert cap == cap.lower() and not cap.endswith(".")


@SETTINGS
@given(seeds)
def test_answers_agree_with_the_scene_graph_and_are_unique(seed):
    scene = data.random_scene(seed)
    objs = scene.objects
    for qa in data.questions(scene):
        assert data.question_kind(qa.question) == qa.kind
        words = data.normalize_question(qa.question).split()
        if qa.kind == "color":
            matching = [o for o in objs if o.shape == words[-1]]
            assert len(matching) == 1 and matching[0].color == qa.answer
        elif qa.kind == "shape":
            matching = [o for o in objs if o.color == words[-2]]
            assert len(matching) == 1 and matching[0].shape == qa.answer
        elif qa.kind == "position":
            matching = [o for o in objs if (o.color, o.shape) == (words[-2], words[-1])]
            assert len(matching) == 1 and matching[0].position == qa.answer
        elif qa.kind == "count":
            shape = {v: k for k, v in data.PLURALS.items()}[words[2]]
            assert qa.answer == str(sum(o.shape == shape for o in objs))
        else:
            present = (words[-2], words[-1]) in {o.pair for o in objs}
            assert qa.answer == ("yes" if present else "no")
            if not present:  # a "no" is one attribute away from a present object
                assert any((o.color == words[-2]) != (o.shape == words[-1]) for o in objs)


def test_uniqueness_rule_skips_ambiguous_questions():
    scene = data.Scene.from_triples(
        [("red", "circle", "top left"), ("blue", "circle", "center"), ("red", "square", "bottom")]
    )
    asked = {qa.question for qa in data.questions(scene)}
    assert "What color is the circle?" not in asked  # two circles
    assert "What shape is the red object?" not in asked  # two red objects
    assert "What color is the square?" in asked and "What shape is the blue object?" in asked
    twins = data.Scene.from_triples([("red", "circle", "top left"), ("red", "circle", "center")])
    assert not [qa for qa in data.questions(twins) if qa.kind == "position"]


def test_every_kind_occurs_and_answers_are_balanced():
    examples = [qa for _, qa in data.qa_examples("val", 6000)]
    kinds = Counter(qa.kind for qa in examples)
    assert set(kinds) == set(data.KINDS)
    assert all(abs(n / len(examples) - 0.2) < 0.03 for n in kinds.values())
    exists = Counter(qa.answer for qa in examples if qa.kind == "exists")
    assert abs(exists["yes"] / sum(exists.values()) - 0.5) < 0.05
    count = Counter(qa.answer for qa in examples if qa.kind == "count")
    assert set(count) == set(data.COUNT_ANSWERS)
    assert all(abs(n / sum(count.values()) - 0.25) < 0.05 for n in count.values())
    for kind, answers in [
        ("color", data.COLORS),
        ("shape", data.SHAPES),
        ("position", data.POSITIONS),
    ]:
        seen = Counter(qa.answer for qa in examples if qa.kind == kind)
        assert set(seen) == set(answers) and max(seen.values()) / sum(seen.values()) < 2.0 / len(
            answers
        )


@settings(max_examples=200, deadline=None)
@given(seeds, st.sampled_from(data.KINDS))
def test_balanced_examples_are_correct_questions_of_their_scene(seed, kind):
    scene, qa = data.qa_example(seed, kind)
    assert qa.kind == kind
    assert qa in data.questions(scene)


def test_question_forms_are_the_canonical_ones():
    scene = data.Scene.from_triples([("orange", "diamond", "top"), ("green", "square", "left")])
    asked = {qa.question for qa in data.questions(scene)}
    for text in [
        "What color is the diamond?",
        "What shape is the orange object?",
        "Where is the green square?",
        "How many diamonds are there?",
        "Is there an orange diamond?",
        "Is there a red diamond?",
    ]:
        assert text in asked
    assert data.normalize_question("Where is the red circle?") == data.normalize_question(
        "where is the red circle ?"
    )


def test_splits_use_disjoint_seeds():
    ranges = list(data.SPLITS.values())
    for i, a in enumerate(ranges):
        for b in ranges[i + 1 :]:
            assert a.stop <= b.start or b.stop <= a.start
    assert data.split_seed("test", 0) == data.SPLITS["test"].start
    with pytest.raises(ValueError, match="unknown split"):
        data.split_seed("dev", 0)


def test_withheld_pairs_never_occur_in_training_data():
    withheld = set(data.WITHHELD_PAIRS)
    assert all(o.pair not in withheld for s in data.scenes("train", 2000) for o in s.objects)
    for scene, qa in data.qa_examples("train", 2000):
        assert all(o.pair not in withheld for o in scene.objects)
        words = data.normalize_question(qa.question).split()
        assert (words[-2], words[-1]) not in withheld
    only = data.scenes("test", 200, pairs="withheld")
    assert all(o.pair in withheld for s in only for o in s.objects)
    # each color and shape still occurs in training with other partners
    seen = {o.pair for s in data.scenes("train", 2000) for o in s.objects}
    assert {c for c, _ in seen} == set(data.COLORS) and {s for _, s in seen} == set(data.SHAPES)


@pytest.mark.parametrize(
    "call, message",
    [
        (lambda: data.SceneObject("pink", "circle", "center"), "unknown color 'pink'"),
        (lambda: data.SceneObject("red", "star", "center"), "unknown shape 'star'"),
        (lambda: data.SceneObject("red", "circle", "middle"), "unknown position 'middle'"),
        (lambda: data.random_scene(1, n_objects=4), "n_objects must be 1, 2 or 3"),
        (lambda: data.random_scene(1, n_objects=0), "n_objects must be 1, 2 or 3"),
        (lambda: data.random_scene(1).render(10), "at least 24 px"),
        (lambda: data.random_scene(1).render(50.5), "must be an int"),
        (lambda: data.random_scene("a"), "seed must be an int"),
        (lambda: data.random_scene(1, pairs="unseen"), "unknown pair group"),
        (
            lambda: data.Scene.from_triples([("red", "circle", "top"), ("blue", "square", "top")]),
            "share a cell",
        ),
        (lambda: data.qa_example(1, kind="size"), "unknown question kind"),
        (lambda: data.Scene.from_dict({"objs": []}), "needs 'objects'"),
    ],
)
def test_bad_input_is_a_clear_value_error(call, message):
    with pytest.raises(ValueError, match=message):
        call()


def test_scene_round_trips_through_plain_data():
    scene = data.random_scene(99)
    assert data.Scene.from_dict(scene.to_dict()) == scene


def test_baselines_stay_near_chance_on_balanced_data():
    train = [qa for _, qa in data.qa_examples("train", 3000)]
    test = [qa for _, qa in data.qa_examples("test", 2000)]
    for baseline in (data.MajorityBaseline().fit(train), data.QuestionOnlyBaseline().fit(train)):
        scores = data.accuracy_by_kind(test, [baseline.predict(qa.question) for qa in test])
        assert scores["exists"] < 0.6 and scores["count"] < 0.35 and scores["position"] < 0.2


def test_question_only_baseline_exploits_skewed_data():
    skewed = [data.QA("Is there a red circle?", "no", "exists")] * 9 + [
        data.QA("Is there a red circle?", "yes", "exists")
    ]
    baseline = data.QuestionOnlyBaseline().fit(skewed)
    assert baseline.predict("is there a RED circle") == "no"
    assert (
        data.accuracy_by_kind(skewed, [baseline.predict(q.question) for q in skewed])["exists"]
        == 0.9
    )


def test_datasets_and_collate(tmp_path):
    from functools import partial

    from mmcourse.tokenizer import build_tokenizer

    alt = data.AltTextDataset("train", size=8)
    cap = data.CaptionDataset("val", size=8, image_size=96)
    qa = data.QADataset("test", size=8, kind="position")
    assert len(alt) == 8 and alt[3]["text"] == data.alt_text(
        data.random_scene(data.split_seed("train", 3), pairs="seen")
    )
    assert cap[0]["image"].size == (96, 96) and data.parse_caption(cap[0]["text"])
    assert all(qa[i]["kind"] == "position" for i in range(8))
    loader = torch.utils.data.DataLoader(
        alt, batch_size=4, collate_fn=partial(data.collate, tokenizer=build_tokenizer())
    )
    batch = next(iter(loader))
    assert batch["images"].shape == (4, 3, 72, 72) and batch["images"].dtype == torch.uint8
    assert (
        batch["input_ids"].shape[0] == 4
        and batch["attention_mask"].shape == batch["input_ids"].shape
    )
    qa_batch = data.collate([qa[i] for i in range(3)])
    assert set(qa_batch) >= {"images", "questions", "answers", "kinds", "scenes"}
    with pytest.raises(IndexError):
        alt[8]
    with pytest.raises(ValueError, match="outside the val split"):
        data.CaptionDataset("val", size=10**9)
