"""Every shipped model's recipe, by name: what `mmcourse train`, `mmcourse eval` and `ship` read.
(Two entries are not shipped: stage 2 with full fine-tuning and with the projector alone, trained to
be compared with the shipped LoRA model in lesson 09.)

A new shipped model is one new entry in `RECIPES`: its name, what kind of model it is, and the
recipe module that trains it (with options). A recipe module provides the same few names:
`default(**options)` (the shipped configuration, a frozen dataclass with a `train: TrainConfig`),
`train(run_dir, recipe)`, `load(folder)`, `measure(model, eval_size, start)`, `report(name, size,
start)`, `CARD` and `card_fields(...)` (its model card), `CURVE_METRIC`, and optionally
`finish_folder(target, recipe)`. Nothing is imported until a recipe is used, so the CLI can list the
names on a bare Python.
"""

from __future__ import annotations

import importlib
from dataclasses import dataclass, field
from types import ModuleType
from typing import Any

__all__ = ["RECIPES", "Recipe", "get"]


@dataclass(frozen=True)
class Recipe:
    name: str  # the shipped checkpoint it makes; its run folder is `runs/NAME`
    kind: str  # "clip", "vlm" or "lm": what `mmcourse eval KIND` measures
    module: str  # the recipe module in mmcourse.recipes
    options: dict[str, Any] = field(default_factory=dict)  # passed to the module's `default`
    # False for a recipe trained only to be compared with a shipped one (lesson 09's stage 2)
    shipped: bool = True

    @property
    def recipe_module(self) -> ModuleType:
        return importlib.import_module(f"mmcourse.recipes.{self.module}")

    def default(self):
        """The configuration the shipped model was trained with."""
        return self.recipe_module.default(**self.options)


RECIPES: dict[str, Recipe] = {
    recipe.name: recipe
    for recipe in (
        Recipe("shapes-clip", "clip", "shapes_clip"),
        Recipe("shapes-vlm-patches", "vlm", "shapes_vlm", {"image_tokens": "patches"}),
        Recipe("shapes-vlm-cls", "vlm", "shapes_vlm", {"image_tokens": "cls"}),
        Recipe("shapes-lm", "lm", "shapes_lm"),
        Recipe("shapes-vlm-aligned", "vlm", "two_stage", {"stage": 1}),
        Recipe("shapes-vlm-lora", "vlm", "two_stage", {"stage": 2, "tune": "lora"}),
        Recipe("shapes-vlm-full-ft", "vlm", "two_stage", {"stage": 2, "tune": "full"}, False),
        Recipe(
            "shapes-vlm-projector-only",
            "vlm",
            "two_stage",
            {"stage": 2, "tune": "projector"},
            False,
        ),
    )
}


def get(name: str) -> Recipe:
    """The recipe of a shipped model; an unknown name is a clear error listing the known ones."""
    if name not in RECIPES:
        raise ValueError(f"no recipe named {name!r}; the course's recipes: {', '.join(RECIPES)}.")
    return RECIPES[name]
