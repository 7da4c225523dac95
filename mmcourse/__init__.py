"""mmcourse: the library behind the course that builds a vision-language model, lesson by lesson.

Three layers (the README's "Contributing" shows the tree):

- **concepts**, what a learner reads beside a lesson, one per chapter: `data`, `tokenizer`, `utils`,
  `vision`, `contrastive`, `clip`, `projection`, `language_model`, `vlm`, `metrics`, `attention`,
  `plotting`, `widgets`, `frozen_lm` (and `checkpoints`, the one resolver of model names;
  `tutorial`, the tutorial's own code kept with its faults for the lessons to fix);
- **recipes**, how each shipped model is trained and shipped: `recipes`;
- **course tooling**, not ML: `course` (the CLI, set-up, doctor, release), `grading` (check,
  grader, sandbox), `exchange` (hand-ins and feedback through a hub service) and `hub` (the
  workshop JupyterHub recipe).

Submodules load on first use (`mmcourse.vlm`), so `python -m mmcourse lab` can set the course up
before torch is even installed.
"""

from __future__ import annotations

import importlib

__version__ = "0.1.0"

CONCEPTS = (
    "data",
    "tokenizer",
    "utils",
    "checkpoints",
    "vision",
    "contrastive",
    "clip",
    "projection",
    "language_model",
    "vlm",
    "metrics",
    "attention",
    "plotting",
    "widgets",
    "frozen_lm",
    "tutorial",
)
RECIPES = ("recipes",)
COURSE_TOOLING = ("course", "grading", "exchange", "hub")
__all__ = [*CONCEPTS, *RECIPES, *COURSE_TOOLING]


def __getattr__(name: str):
    if name in __all__:
        return importlib.import_module(f"{__name__}.{name}")
    raise AttributeError(f"module 'mmcourse' has no attribute {name!r}")


def __dir__() -> list[str]:
    return sorted([*globals(), *__all__])
