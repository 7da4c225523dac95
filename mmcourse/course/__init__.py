"""Course tooling (not ML): the `mmcourse` command, setting up `.venv`, checking a machine,
releasing exercises.

- `cli`: the `mmcourse` command (`python -m mmcourse`);
- `bootstrap`: creates and updates the course's `.venv` with the standard library alone (`make lab`,
  `make test`);
- `doctor`: `mmcourse doctor`, is this machine ready;
- `release`: `mmcourse release` (exercises/ from solutions/) and `mmcourse start` (a learner's own
  copy).

Grading lives beside it, in `mmcourse.grading`. Nothing here imports torch at import time.
"""

from __future__ import annotations

import importlib

__all__ = ["bootstrap", "cli", "doctor", "release"]


def __getattr__(name: str):
    if name in __all__:
        return importlib.import_module(f"{__name__}.{name}")
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
