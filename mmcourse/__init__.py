"""mmcourse: the library behind the course that builds a vision-language model, lesson by lesson.

One module per concept, named after its lesson (see the README's chapter map). Submodules load on first
use, so `python -m mmcourse lab` can set the course up before torch is even installed.
"""

from __future__ import annotations

import importlib

__version__ = "0.1.0"

_SUBMODULES = (
    "attention", "checkpoints", "contrastive", "data", "doctor", "grading", "metrics", "plotting", "projection", "questions",
    "release", "tokenizer", "train", "utils", "vision", "vlm",
)  # fmt: skip


def __getattr__(name: str):
    if name in _SUBMODULES:
        return importlib.import_module(f"{__name__}.{name}")
    raise AttributeError(f"module 'mmcourse' has no attribute {name!r}")


def __dir__() -> list[str]:
    return sorted([*globals(), *_SUBMODULES])
