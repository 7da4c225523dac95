"""The question definitions: one module per exercise (`ex00.py` ... `ex09.py`), each listing its
`QUESTIONS`.

`check` (in a notebook) and `mmcourse grade` (for a class) read the same definitions. The bank is
built explicitly, not by import side effects: `builtin()` imports the exercise modules named in
`EXERCISES` and collects their `QUESTIONS`. An instructor's private variants never change it:
`load_private(folder)` returns a new `QuestionBank` (the built-ins, plus or replaced by the folder's
questions) for one grading run.

A private question file is trusted Python run in the grader's own process; it calls
`register(question)`, for example `register(dataclasses.replace(get("ex03_zero_shot"),
hidden=my_cases, points=5))`. `register` is only valid while `load_private` reads the folder.

`declared_ids()` reads the question ids from the modules' source without importing them (the
definitions import torch), so `mmcourse release` stays fast and light.
"""

from __future__ import annotations

import ast
import contextvars
import functools
import importlib
import importlib.util
from collections.abc import Iterator, Mapping
from pathlib import Path

from ..judging import Question

__all__ = [
    "EXERCISES",
    "QuestionBank",
    "builtin",
    "declared_ids",
    "for_exercise",
    "get",
    "load_private",
    "register",
]

#: The exercise modules of this package, in course order: a new exercise is one more name here.
EXERCISES = ("ex00", "ex01", "ex02", "ex03", "ex04", "ex05", "ex06", "ex07", "ex08", "ex09")
HERE = Path(__file__).resolve().parent


class QuestionBank(Mapping[str, Question]):
    """An immutable set of questions by id (in id order)."""

    def __init__(self, questions: Mapping[str, Question]) -> None:
        self._questions = dict(sorted(questions.items()))

    def __getitem__(self, qid: str) -> Question:
        return self._questions[qid]

    def __iter__(self) -> Iterator[str]:
        return iter(self._questions)

    def __len__(self) -> int:
        return len(self._questions)

    def get(self, qid: str) -> Question:  # type: ignore[override]
        """The question `qid`; an unknown id is a clear error listing the known ones."""
        if qid not in self._questions:
            raise ValueError(
                f"unknown question id {qid!r}; the course has: {', '.join(self._questions)}."
            )
        return self._questions[qid]

    def for_exercise(self, exercise: str) -> list[Question]:
        """The questions of one exercise ("ex00"), in id order."""
        return [q for q in self._questions.values() if q.exercise == exercise]

    def with_questions(self, questions: list[Question]) -> QuestionBank:
        """A new bank: this one, with `questions` added (a question of an existing id replaces
        it)."""
        return QuestionBank({**self._questions, **{q.qid: q for q in questions}})


@functools.cache
def builtin() -> QuestionBank:
    """The course's own questions: every exercise module's `QUESTIONS`."""
    questions: dict[str, Question] = {}
    for exercise in EXERCISES:
        for question in importlib.import_module(f"{__name__}.{exercise}").QUESTIONS:
            if question.qid in questions:
                raise ValueError(f"question id {question.qid!r} is defined twice.")
            questions[question.qid] = question
    return QuestionBank(questions)


def get(qid: str) -> Question:
    """A built-in question by id."""
    return builtin().get(qid)


def for_exercise(exercise: str) -> list[Question]:
    """The built-in questions of one exercise ("ex00"), in id order."""
    return builtin().for_exercise(exercise)


_loading: contextvars.ContextVar[list[Question] | None] = contextvars.ContextVar(
    "loading", default=None
)


def register(question: Question) -> Question:
    """Add a question to the private bank `load_private` is reading (in a private question file)."""
    collected = _loading.get()
    if collected is None:
        raise RuntimeError(
            "register() adds a private question while `mmcourse grade --questions DIR` reads DIR; "
            "a built-in "
            "question is listed in its exercise module's QUESTIONS instead."
        )
    if not isinstance(question, Question):
        raise TypeError(f"register() takes a Question, got a {type(question).__name__}.")
    collected.append(question)
    return question


def load_private(
    folder: str | Path, base: QuestionBank | None = None
) -> tuple[QuestionBank, list[Question]]:
    """Run every `*.py` in `folder` (an instructor's trusted question files); return (the bank for
    this grading
    run, the questions the folder added). `base` (default: the built-ins) is not changed."""
    folder = Path(folder)
    if not folder.is_dir():
        raise ValueError(f"--questions {folder}: not a folder of question modules (*.py).")
    base = builtin() if base is None else base
    collected: list[Question] = []
    token = _loading.set(collected)
    try:
        for path in sorted(folder.glob("*.py")):
            spec = importlib.util.spec_from_file_location(
                f"mmcourse_private_questions.{path.stem}", path
            )
            if spec is None or spec.loader is None:
                raise ValueError(f"{path} cannot be imported as a Python module.")
            spec.loader.exec_module(importlib.util.module_from_spec(spec))
    finally:
        _loading.reset(token)
    for question in collected:
        question.prepare_name  # noqa: B018 - refuse now, not halfway through a class's grading
    return base.with_questions(collected), collected


def declared_ids(exercise: str | None = None) -> list[str]:
    """The question ids the exercise modules define, read from their source (`Question(qid="...")`),
    in order."""
    ids = []
    for name in EXERCISES if exercise is None else [exercise]:
        path = HERE / f"{name}.py"
        if not path.is_file():
            continue
        for node in ast.walk(ast.parse(path.read_text(), str(path))):
            if isinstance(node, ast.Call) and getattr(node.func, "id", None) == "Question":
                for keyword in node.keywords:
                    if keyword.arg == "qid" and isinstance(keyword.value, ast.Constant):
                        ids.append(keyword.value.value)
    return sorted(ids)


def __getattr__(name: str):
    if name in EXERCISES:  # `question_bank.ex03`, loaded on first use like the other parts
        return importlib.import_module(f"{__name__}.{name}")
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
