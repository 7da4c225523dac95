"""LLaVA's two stages (recipes.two_stage): which parameters train, that only they move, LoRA runs
that save as plain models, and the same recipe on folders of the real models' exact configs."""

import json
from dataclasses import replace

import pytest
import torch

from mmcourse import data, frozen_lm, vlm
from mmcourse.language_model import LanguageConfig, build_language_model
from mmcourse.recipes import two_stage
from mmcourse.recipes.loop import TrainConfig

TINY = LanguageConfig(hidden_size=32, layers=2, heads=2, intermediate_size=64)


@pytest.fixture(scope="module")
def tiny_lm_folder(tmp_path_factory):
    """A random-weight text LM in shapes-lm's layout (its tokenizer with the cell words)."""
    folder = tmp_path_factory.mktemp("tiny-lm")
    tokenizer = frozen_lm.build_lm_tokenizer()
    torch.manual_seed(0)
    build_language_model(TINY, vocab_size=len(tokenizer)).save_pretrained(folder)
    tokenizer.save_pretrained(folder)
    return folder


def _recipe(folder, **changes):
    quick = TrainConfig(steps=4, batch_size=4, warmup_steps=1, eval_every=100, save_every=2)
    return replace(two_stage.StageRecipe(language=str(folder), train=quick), **changes)


def test_stage_one_trains_the_projector_only(tiny_lm_folder):
    model = two_stage.build(_recipe(tiny_lm_folder))
    counts = frozen_lm.count_parameters(model)
    assert counts["vision"][0] == 0 and counts["language"][0] == 0
    assert counts["projector"][0] == counts["projector"][1] == counts["all"][0] > 0
    before = {n: p.detach().clone() for n, p in model.named_parameters()}
    optimizer = torch.optim.AdamW([p for p in model.parameters() if p.requires_grad], lr=1e-2)
    images, questions, answers = two_stage.stage_batch(0, _recipe(tiny_lm_folder), range(4))
    assert questions == [""] * 4  # stage 1: captions only
    batch = model.training_batch(questions, answers)
    labels = model.full_labels(batch.pop("labels"))
    loss = vlm.answer_loss(model(model.pixel_values(images), **batch).logits, labels)
    loss.backward()
    optimizer.step()
    moved = {n for n, p in model.named_parameters() if not torch.equal(p, before[n])}
    assert moved and all(n.startswith("projector.") for n in moved)


@pytest.mark.parametrize(
    ("tune", "language_trains"), [("lora", "adapters"), ("full", "all"), ("projector", "none")]
)
def test_stage_two_trains_what_its_tune_says(tiny_lm_folder, tune, language_trains):
    recipe = _recipe(tiny_lm_folder, stage=2, tune=tune, caption_share=0.25)
    model = two_stage.build(recipe)
    trainable = [n for n, p in model.language_model.named_parameters() if p.requires_grad]
    total = sum(1 for _ in model.language_model.parameters())
    if language_trains == "adapters":
        assert trainable and all("lora_" in n for n in trainable)
    elif language_trains == "all":
        assert len(trainable) == total
    else:
        assert trainable == []
    assert all(p.requires_grad for p in model.projector.parameters())
    assert not any(p.requires_grad for p in model.vision_model.parameters())


def test_stage_one_refuses_to_train_the_language_model(tiny_lm_folder):
    with pytest.raises(ValueError, match="stage 1 trains only the projector"):
        _recipe(tiny_lm_folder, tune="lora")
    with pytest.raises(ValueError, match="tune must be one of"):
        _recipe(tiny_lm_folder, stage=2, tune="adapters")


def test_a_lora_run_saves_a_plain_vlm_that_answers_as_it_trained(tiny_lm_folder, tmp_path):
    stage1 = tmp_path / "stage1"
    two_stage.train_stage(stage1, _recipe(tiny_lm_folder), eval_size=0, progress=False)
    recipe = _recipe(
        tiny_lm_folder, stage=2, tune="lora", caption_share=0.25, start_from=str(stage1 / "last")
    )
    model, result = two_stage.train_stage(tmp_path / "lora", recipe, eval_size=0, progress=False)
    assert result.steps == 4
    last = tmp_path / "lora" / "last"
    assert not list((last / "language").glob("adapter_*"))  # merged: a plain LlamaForCausalLM
    counts = json.loads((last / two_stage.PARAMETERS_FILE).read_text())
    assert 0 < counts["all"][0] < counts["all"][1]
    reloaded = vlm.load(str(last), device="cpu")
    images, questions, answers = two_stage.stage_batch(7, recipe, range(4))
    batch = model.training_batch(questions, answers)
    labels = batch.pop("labels")
    pixels = model.pixel_values(images)
    with torch.no_grad():
        trained = model.eval()(pixels, **batch).logits
        merged = reloaded(pixels, **batch).logits
    torch.testing.assert_close(merged, trained, rtol=1e-4, atol=1e-4)
    assert labels.shape == batch["input_ids"].shape
    # the stage-2 run started from the stage-1 projector, and moved it
    stage1_projector = vlm.load(str(stage1 / "last"), device="cpu").projector.state_dict()
    assert any(
        not torch.equal(v, reloaded.projector.state_dict()[k]) for k, v in stage1_projector.items()
    )


@pytest.mark.slow
@pytest.mark.parametrize("instruct", [False, True], ids=["SmolLM2-135M", "SmolLM2-135M-Instruct"])
def test_the_recipe_runs_on_folders_of_the_real_configs(tmp_path, instruct):
    """Random weights in the exact configurations of openai/clip-vit-base-patch32 and
    SmolLM2-135M: the mechanics, not the quality."""
    from mmcourse.recipes import real_scale

    clip_folder = real_scale.random_clip_folder(tmp_path / "clip-vit-base-patch32")
    lm_folder = real_scale.random_llama_folder(tmp_path / "smollm2", instruct=instruct)
    quick = TrainConfig(steps=1, batch_size=2, warmup_steps=1, eval_every=100, save_every=100)
    stage1 = two_stage.StageRecipe(
        vision=str(clip_folder), language=str(lm_folder), merge=1, train=quick
    )
    model, _ = two_stage.train_stage(tmp_path / "s1", stage1, eval_size=0, progress=False)
    assert model.num_image_tokens == 49  # a 7 x 7 grid of 32 px patches
    counts = frozen_lm.count_parameters(model)
    assert counts["language"][1] == pytest.approx(134.5e6, rel=0.01)
    assert counts["vision"][1] == pytest.approx(87.5e6, rel=0.01)
    assert counts["all"][0] == counts["projector"][1] == 768 * 576 + 576 + 576 * 576 + 576
    question = data.normalize_question("Where is the red circle?")
    prompt = model.tokenizer.decode(model.prompt_ids("Where is the red circle?"))
    if instruct:  # the chat template: the question is the user's turn, the assistant's is opened
        assert prompt == f"<|im_start|>user\n{question}<|im_end|>\n<|im_start|>assistant\n"
    else:
        assert prompt == question
    stage2 = replace(
        stage1, stage=2, tune="lora", caption_share=0.5, start_from=str(tmp_path / "s1" / "last")
    )
    model, _ = two_stage.train_stage(tmp_path / "s2", stage2, eval_size=0, progress=False)
    lora = frozen_lm.count_parameters(model)
    assert 0 < lora["language"][0] < 0.05 * lora["language"][1]
    reloaded = vlm.load(str(tmp_path / "s2" / "last"), device="cpu")
    caption = vlm.generate_caption(
        reloaded, data.random_scene(0).render(), max_new_tokens=3, num_beams=1
    )
    assert isinstance(caption, str)
