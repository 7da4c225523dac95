"""Course tooling for exercises and grades (not ML): the in-notebook check and the class grader.

- `check(qid, obj)` (`checker`): what a learner runs in an exercise notebook, on the visible cases;
- `judging`: what a question is and how an answer is compared, on plain data;
- `question_bank`: the question definitions, one module per exercise;
- `handins`: reading what a class handed in (only regular files; any bytes get a status);
- `class_grader`: `mmcourse grade`, every hand-in of a class, each question in the sandbox;
- `sandbox` and `sandbox_child`: the isolated process that runs a learner's code.
"""

from __future__ import annotations

import importlib

from .checker import check

__all__ = [
    "check",
    "checker",
    "class_grader",
    "handins",
    "judging",
    "question_bank",
    "sandbox",
    "sandbox_child",
]


def __getattr__(name: str):
    if name in __all__:
        return importlib.import_module(f"{__name__}.{name}")
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
