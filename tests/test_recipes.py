"""The recipes: one registry entry per shipped model, the lesson's loss in the recipe, one `ship()`
whose card templates render exactly the cards the shipped checkpoints carry."""

import json
import re
import string
from dataclasses import asdict, replace
from unittest import mock

import pytest
import torch

from mmcourse import checkpoints, clip, contrastive
from mmcourse.recipes import loop, registry, shapes_clip, shapes_vlm, ship
from mmcourse.tokenizer import build_tokenizer

INTERFACE = ("default", "train", "load", "measure", "report", "card_fields", "CARD", "CURVE_METRIC")
HAND_NOTE = (
    " (the machine was shared with\n  other work during this run; uncontended, a step of batch 128 "
    "takes about 0.6 s, so about 20 min)"
)
SHARED_FIELDS = {
    "name",
    "recipe",
    "commit",
    "steps",
    "threads",
    "minutes",
    "cpu_minutes",
    "eval_size",
}


def test_every_shipped_model_has_one_recipe_and_every_recipe_a_shipped_model():
    shipped = sorted(name for name, entry in registry.RECIPES.items() if entry.shipped)
    assert shipped == checkpoints.shipped()
    for entry in registry.RECIPES.values():
        module = entry.recipe_module
        missing = [name for name in INTERFACE if not hasattr(module, name)]
        assert not missing, f"{entry.module} lacks {missing}"
        assert (ship.CARDS_DIR / module.CARD).is_file()
        assert entry.default().train.steps > 0


def test_an_unknown_recipe_is_a_clear_error():
    with pytest.raises(ValueError, match="no recipe named 'shapes-gpt'.*shapes-clip"):
        registry.get("shapes-gpt")


def card_recipe(folder) -> dict:
    """The recipe a shipped card records (its ```json block)."""
    text = (folder / "README.md").read_text()
    return json.loads(re.search(r"```json\n(.*?)\n```", text, re.S).group(1))


def described(entry) -> dict:
    recipe = entry.default()
    module = entry.recipe_module
    as_dict = module.recipe_dict(recipe) if hasattr(module, "recipe_dict") else asdict(recipe)
    return json.loads(json.dumps(as_dict))  # as JSON: tuples read back as lists


SHIPPED = [name for name, entry in registry.RECIPES.items() if entry.shipped]


@pytest.mark.parametrize("name", SHIPPED)
def test_the_registry_default_is_the_recipe_the_shipped_model_was_trained_with(name):
    entry = registry.get(name)
    recorded = {k: v for k, v in card_recipe(checkpoints.path(name)).items() if k != "commit"}
    assert recorded == described(entry)


@pytest.mark.parametrize("name", SHIPPED)
def test_ship_renders_the_card_the_shipped_checkpoint_carries(name):
    """The templates in recipes/cards/ and each recipe's card fields, given what the shipped folder
    recorded (its metrics.json, its recipe, its training time), give back its README exactly."""
    folder = checkpoints.path(name)
    module = registry.get(name).recipe_module
    shipped = (folder / "README.md").read_text()
    recipe = card_recipe(folder)
    measured = json.loads((folder / "metrics.json").read_text())
    wall, cpu = map(float, re.search(r"([\d.]+) min wall, ([\d.]+) min CPU", shipped).groups())
    fields = module.card_fields(folder, module.load(folder), recipe, measured)
    template = (ship.CARDS_DIR / module.CARD).read_text()
    placeholders = {f for _, f, _, _ in string.Formatter().parse(template) if f}
    assert placeholders == SHARED_FIELDS | set(fields)
    card = ship.render_card(
        module.CARD,
        name=name,
        recipe=json.dumps(recipe, indent=1),
        commit=recipe["commit"],
        steps=recipe["train"]["steps"],
        threads=recipe["train"]["threads"],
        minutes=wall,
        cpu_minutes=cpu,
        eval_size=measured["eval_size"],
        **fields,
    )
    # the one line this restructuring changed: where the recipe's class lives now
    renamed = {
        "(`mmcourse.recipes.shapes_clip.ClipRecipe`)": "(`mmcourse.train.ClipRecipe`)",
        "(`mmcourse.recipes.shapes_vlm.VLMRecipe`)": "(`mmcourse.vlm.VLMRecipe`)",
    }
    for new, old in renamed.items():
        card = card.replace(new, old)
    # a maintainer's note added by hand to the shapes-clip card after shipping
    shipped = shipped.replace(HAND_NOTE, "")
    assert card == shipped


def test_the_clip_recipe_trains_with_the_lessons_loss():
    recipe = shapes_clip.ClipRecipe(
        model=clip.PRESETS["nano"], train=replace(loop.TrainConfig(), batch_size=8)
    )
    torch.manual_seed(0)
    model = clip.build_clip(recipe.model)
    calls = []
    lesson_loss = contrastive.clip_loss

    def spy(*args, **kwargs):
        calls.append((args, kwargs, lesson_loss(*args, **kwargs)))
        return calls[-1][-1]

    with mock.patch.object(contrastive, "clip_loss", side_effect=spy):
        loss, logs = shapes_clip.clip_step_loss(recipe, build_tokenizer())(model, 0)
    ((args, kwargs, returned),) = calls
    assert loss is returned
    image_features, text_features, log_scale, texts, negatives = args
    assert log_scale is model.logit_scale  # the CLIP's own learnable temperature
    assert texts == shapes_clip.clip_batch(0, recipe)[1]
    assert image_features.shape == text_features.shape == negatives.shape == (8, 64)
    assert logs["scale"] == pytest.approx(contrastive.clamped_scale(model.logit_scale).item())


def test_the_vlm_recipe_trains_with_the_lessons_loss():
    from mmcourse import vlm

    assert shapes_vlm.answer_loss is vlm.answer_loss  # lesson 05's function, not a copy
    assert shapes_vlm.recipe("patches").loss_per == shapes_vlm.recipe("cls").loss_per == "example"
