"""Recipes: how each shipped model is trained and shipped (nanoGPT's `train.py` role).

Nothing here is a concept a lesson teaches; model code never imports it. `loop` is the training loop
every recipe uses; `shapes_clip`, `shapes_vlm`, `shapes_lm` and `two_stage` are the recipes of the
shipped models (`real_scale` runs the two-stage one at the scale of real weights); `ship` is
the one procedure that puts a finished run into the package, with the model-card templates in
`cards/`; `registry` names every recipe, and the CLI reads it: a new shipped model is one new entry
there.
"""

from __future__ import annotations

import importlib

__all__ = [
    "loop",
    "real_scale",
    "registry",
    "shapes_clip",
    "shapes_lm",
    "shapes_vlm",
    "ship",
    "two_stage",
]


def __getattr__(name: str):
    if name in __all__:
        return importlib.import_module(f"{__name__}.{name}")
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
