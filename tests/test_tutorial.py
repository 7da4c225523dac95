"""The tutorial's code (`mmcourse.tutorial`) still has the faults the lessons show: each fault in
its table happens for real on this transformers, so a lesson never fixes a fault that is gone."""

import ast

import pytest
import torch
from conftest import ROOT

from mmcourse import checkpoints, data, tutorial, vision


@pytest.fixture(scope="module")
def model():
    folder = checkpoints.path("shapes-vlm-cls")
    with checkpoints.quiet_transformers():
        built = tutorial.MultimodalModel(folder / "vision", folder / "language")
    return built.eval()


@pytest.fixture(scope="module")
def pixels():
    images = [data.random_scene(seed).render() for seed in range(2)]
    return vision.pixel_values(images, image_size=72)  # (2, 3, 72, 72)


def test_padding_true_is_an_error_for_the_image_processor():
    with checkpoints.quiet_transformers():
        encoder = tutorial.VisionEncoder(checkpoints.path("shapes-clip"))
    with pytest.raises(TypeError, match="padding"):
        encoder.extract_features([data.random_scene(0).render()])


def test_the_default_is_a_hub_name_not_a_folder():
    assert tutorial.VisionEncoder.__init__.__defaults__ == ("openai/clip-vit-large-patch14",)
    assert not (ROOT / "openai" / "clip-vit-large-patch14").exists()


def test_encode_image_takes_cls_before_post_layernorm(model, pixels):
    out = model.vision_encoder(pixel_values=pixels)
    projected = model.encode_image(pixels)  # (B, D_lm)
    raw_cls = out.last_hidden_state[:, 0]  # (B, D_v)
    assert torch.allclose(projected, model.projection(raw_cls))
    assert not torch.allclose(raw_cls, out.pooler_output, atol=1e-3)
    assert torch.allclose(
        out.pooler_output, model.vision_encoder.post_layernorm(raw_cls), atol=1e-5
    )


def test_the_text_mask_is_one_short_and_nothing_says_so(model, pixels):
    # transformers 5 raises nothing: the T-long mask is read as if the last of the 1 + T positions
    # were padding, so the position that predicts the next token cannot see itself
    ids = torch.tensor([[1, 5, 6, 2], [1, 7, 8, 2]])
    with torch.no_grad():
        short = model(pixel_values=pixels, input_ids=ids, attention_mask=torch.ones_like(ids))
        full = model(pixel_values=pixels, input_ids=ids, attention_mask=torch.ones(2, 5).long())
        last_padding = model(
            pixel_values=pixels, input_ids=ids, attention_mask=torch.tensor([[1, 1, 1, 1, 0]] * 2)
        )
    assert torch.equal(short.logits, last_padding.logits)
    assert torch.allclose(short.logits[:, :-1], full.logits[:, :-1])
    assert (short.logits[:, -1] - full.logits[:, -1]).abs().max() > 1.0


def test_no_labels_no_loss_nothing_frozen(model, pixels):
    ids = torch.tensor([[1, 5, 6, 2], [1, 7, 8, 2]])
    mask = torch.ones(2, 1 + ids.shape[1], dtype=torch.long)  # the fix for the mask only
    out = model(pixel_values=pixels, input_ids=ids, attention_mask=mask)
    assert out.loss is None and out.logits.shape[:2] == (2, 5)
    assert all(p.requires_grad for p in model.parameters())


def test_decode_is_not_a_model_method_and_there_is_no_tokenizer(model):
    assert not hasattr(model.language_model, "decode")
    assert not hasattr(model, "tokenizer")


def test_generate_caption_on_a_raw_image_fails(model):
    with pytest.raises((TypeError, AttributeError, ValueError)):
        tutorial.generate_caption(model, data.random_scene(0).render())


def test_nothing_in_the_library_imports_the_tutorial():
    for path in (ROOT / "mmcourse").rglob("*.py"):
        if path.name == "tutorial.py":
            continue
        for node in ast.walk(ast.parse(path.read_text())):
            if isinstance(node, ast.ImportFrom):
                names = {alias.name for alias in node.names}
                assert not (node.module or "").endswith("tutorial") and "tutorial" not in names, (
                    path
                )
