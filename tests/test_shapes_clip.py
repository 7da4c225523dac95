"""The shipped `shapes-clip`: plain Hugging Face loading, size, model card, and its quality targets
on fresh scenes."""

import json

import pytest
import torch
from transformers import AutoTokenizer, CLIPImageProcessor, CLIPModel, CLIPVisionModel

from mmcourse import checkpoints, clip, data
from mmcourse.tokenizer import build_tokenizer

pytestmark = pytest.mark.slow  # the card's metrics, measured again on fresh scenes

FRESH_START = (
    500_000  # far from the card's evaluation scenes (start 0); the test split is never trained on
)


@pytest.fixture(scope="module")
def folder():
    return checkpoints.path("shapes-clip")


@pytest.fixture(scope="module")
def model(folder):
    return CLIPModel.from_pretrained(folder).eval()


def test_plain_hugging_face_calls_work_on_the_folder(folder):
    vision = CLIPVisionModel.from_pretrained(folder)
    processor = CLIPImageProcessor.from_pretrained(folder)
    tokenizer = AutoTokenizer.from_pretrained(folder)
    assert vision.config.image_size == 72 and vision.config.patch_size == 8
    assert processor(images=data.random_scene(0).render(), return_tensors="pt")[
        "pixel_values"
    ].shape == (1, 3, 72, 72)
    assert (
        tokenizer("Where is the red circle?")["input_ids"]
        == build_tokenizer()("where is the red circle")["input_ids"]
    )
    assert (
        tokenizer.eos_token_id
        == CLIPModel.from_pretrained(folder).config.text_config.eos_token_id
        == 3
    )


def test_size_budget_and_model_card(folder):
    assert (folder / "model.safetensors").stat().st_size <= 10 * 1024 * 1024
    card = (folder / "README.md").read_text()
    for field in ("recipe", "commit", "steps", "threads", "training time", "R@1", "withheld"):
        assert field in card, field
    recipe = json.loads((folder / "metrics.json").read_text())
    assert recipe["split"] == "test" and recipe["eval_size"] == 1000


def test_card_metrics_are_what_the_model_measures(folder, model):
    card = json.loads((folder / "metrics.json").read_text())["metrics"]
    measured = clip.evaluate_clip(model, build_tokenizer(), 1000, 1000, split="test", start=0)
    for metric, value in card.items():
        assert measured[metric] == pytest.approx(value, abs=0.005), metric


def test_quality_targets_on_fresh_held_out_scenes(model):
    tokenizer = build_tokenizer()
    singles = data.scenes("test", 1000, FRESH_START, n_objects=1, pairs="seen")
    zero_shot = clip.zero_shot_single_objects(model, tokenizer, singles)
    assert zero_shot["color_shape"] >= 0.95, zero_shot
    assert zero_shot["position"] >= 0.90, zero_shot
    busy = data.scenes("test", 1000, FRESH_START + 1000, pairs="seen")
    recall = clip.retrieval(model, tokenizer, busy)
    assert recall["R@1"] >= 0.70 and recall["R@5"] >= 0.90, recall
    for n in (1, 2, 3):  # reported by object count: each count is retrieved far above chance
        assert recall[f"R@5 ({n} obj)"] >= 0.8, recall


def test_withheld_pairs_are_reported_on_their_own(folder):
    card = json.loads((folder / "metrics.json").read_text())["metrics"]
    assert {"withheld zero-shot color_shape", "withheld zero-shot position"} <= set(card)
    assert "withheld zero-shot color_shape" in (folder / "README.md").read_text()


def test_vision_tower_is_frozen_in_the_encoder():
    from mmcourse.vision import VisionEncoder

    encoder = VisionEncoder("shapes-clip", device="cpu")
    assert not any(p.requires_grad for p in encoder.model.parameters())
    assert torch.is_grad_enabled()
