"""What a question is and how an answer is judged: `Question`, the comparisons, plain data.

A `Question` (one per graded question; the definitions are in `question_bank`) says everything
needed to judge a learner's answer without trusting it:

- `qid` (e.g. "ex00_caption"), `points`, and `name`: the object the learner writes ("my_caption");
- `visible`: the cases `grading.check` runs in the notebook; `hidden(rng, n)`: a seeded generator of
  more cases, drawn at grading time. Every case is **plain data** (str, int, float, bool, None,
  lists, dicts with str keys, NumPy arrays), so it can cross a process boundary without pickle;
- `prepare(case)`: plain data -> the keyword arguments the learner's function receives (a `Scene`, a
  tensor);
- `oracle`: the library's own implementation; its output on the same arguments is the reference;
- `compare`: how an output is judged (`Exact` or `Close` with tolerances), after `to_plain`;
- `hints`: common mistakes recognized from (case, expected, got), each with the advice to show.

Definitions live in `mmcourse.grading.question_bank`, one module per exercise (`ex00.py`, ...);
instructors add private variants for one grading run (`question_bank.load_private`).
"""

from __future__ import annotations

import copy
import random
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

import numpy as np

__all__ = [
    "Case",
    "CaseResult",
    "Close",
    "Exact",
    "Hint",
    "Question",
    "as_given",
    "as_tensors",
    "to_plain",
]

Case = dict[str, Any]


def to_plain(value: Any) -> Any:
    """Outputs as plain data: tensors -> NumPy arrays, tuples -> lists, NumPy scalars -> Python
    numbers.

    Anything else is returned unchanged, and `compare` then rejects it by its exact type.
    """
    module = type(value).__module__
    if module.startswith("torch") and hasattr(value, "detach"):
        import torch

        value = value.detach().cpu()
        value = (value.float() if value.dtype in (torch.float16, torch.bfloat16) else value).numpy()
    if type(value) is np.ndarray and value.ndim == 0:  # a scalar tensor is a number
        return value.item()
    if isinstance(value, np.generic):
        return value.item()
    if type(value) in (list, tuple):
        return [to_plain(v) for v in value]
    if type(value) is dict:
        return {k: to_plain(v) for k, v in value.items()}
    return value


def as_given(case: Case) -> dict[str, Any]:
    """The case's entries as the keyword arguments, unchanged: the default `prepare`."""
    return dict(case)


def as_tensors(case: Case) -> dict[str, Any]:
    """A case's NumPy arrays as (copied) torch tensors, everything else unchanged: a common
    `prepare`."""
    import torch

    return {
        k: torch.from_numpy(v.copy()) if isinstance(v, np.ndarray) else v for k, v in case.items()
    }


def _type_name(value: Any) -> str:
    if isinstance(value, np.ndarray):
        return f"an array of shape {tuple(value.shape)} ({value.dtype})"
    if type(value) is list:
        inner = sorted({type(v).__name__ for v in value})
        return f"a list of {'/'.join(inner)}" if inner else "an empty list"
    return f"a {type(value).__name__}"


def _same_structure(expected: Any, got: Any, path: str) -> str | None:
    """None if `got` has exactly the types/shapes of `expected`, else what differs (never the
    values)."""
    where = f" at {path}" if path else ""
    if isinstance(expected, np.ndarray):
        if type(got) is not np.ndarray:
            return f"expected {_type_name(expected)}{where}, got {_type_name(got)}"
        if got.shape != expected.shape:
            return f"expected shape {tuple(expected.shape)}{where}, got shape {tuple(got.shape)}"
        if got.dtype.kind not in "biuf" or (got.dtype.kind == "b" and expected.dtype.kind != "b"):
            return f"expected numbers ({expected.dtype}){where}, got dtype {got.dtype}"
        return None
    # exact types: bool and lying subclasses of int/float are not numbers here
    numeric = (int, float)
    if type(expected) in numeric:
        if type(got) not in numeric:
            return f"expected a number{where}, got {_type_name(got)}"
        return None
    if type(got) is not type(expected):
        return f"expected {_type_name(expected)}{where}, got {_type_name(got)}"
    if type(expected) is list:
        if len(got) != len(expected):
            return f"expected a list of {len(expected)} items{where}, got {len(got)} items"
        for i, (e, g) in enumerate(zip(expected, got)):
            reason = _same_structure(e, g, f"{path}[{i}]")
            if reason:
                return reason
    if type(expected) is dict:
        if set(got) != set(expected):
            return f"expected the keys {sorted(expected)}{where}, got {sorted(got, key=str)}"
        for key in expected:
            reason = _same_structure(expected[key], got[key], f"{path}[{key!r}]")
            if reason:
                return reason
    return None


@dataclass(frozen=True)
class Exact:
    """Equal types, shapes and values (lists element by element, strings character by character)."""

    def __call__(self, expected: Any, got: Any) -> str | None:
        reason = _same_structure(expected, got, "")
        if reason:
            return reason
        if not _equal(expected, got):
            return "the value differs from the reference"
        return None


def _equal(expected: Any, got: Any) -> bool:
    if isinstance(expected, np.ndarray):
        return bool(np.array_equal(expected, got))
    if type(expected) is list:
        return all(_equal(e, g) for e, g in zip(expected, got))
    if type(expected) is dict:
        return all(_equal(expected[k], got[k]) for k in expected)
    # both are plain str/int/float/bool/None by now: their == cannot be overridden
    return expected == got


@dataclass(frozen=True)
class Close:
    """Numbers and arrays equal within `rtol` / `atol` (as `numpy.allclose`); NaN never matches."""

    rtol: float = 1e-4
    atol: float = 1e-5

    def __call__(self, expected: Any, got: Any) -> str | None:
        reason = _same_structure(expected, got, "")
        if reason:
            return reason
        return self._close(expected, got)

    def _close(self, expected: Any, got: Any) -> str | None:
        if type(expected) is list:
            for e, g in zip(expected, got):
                reason = self._close(e, g)
                if reason:
                    return reason
            return None
        if type(expected) is dict:
            for key in expected:
                reason = self._close(expected[key], got[key])
                if reason:
                    return reason
            return None
        e = np.asarray(expected, dtype=np.float64)
        try:
            g = np.asarray(got, dtype=np.float64)
        except (OverflowError, ValueError, TypeError):  # an int of 600 digits has no float
            return "the result holds a number too large to be a float"
        if not np.all(np.isfinite(g)):
            return "the result contains NaN or infinity"
        bad = np.abs(g - e) > self.atol + self.rtol * np.abs(e)
        if bad.any():
            return (
                f"{int(bad.sum())} of {bad.size} values are off by more than the tolerance "
                f"(rtol={self.rtol}, atol={self.atol})"
            )
        return None


@dataclass(frozen=True)
class Hint:
    """Advice shown when `applies(case, expected, got)` recognizes a common mistake."""

    message: str
    applies: Callable[[Case, Any, Any], bool]


@dataclass(frozen=True)
class CaseResult:
    """The verdict on one case: `status` is "passed", "failed", "error" or "not written"."""

    index: int
    status: str
    reason: str = ""
    hint: str = ""
    got: str = ""  # a short repr of the learner's output, for feedback


def _short_repr(value: Any, limit: int = 160) -> str:
    try:
        text = repr(value)
    except Exception:  # a learner's object whose __repr__ fails must not break the feedback
        text = f"<{type(value).__name__}>"
    return text if len(text) <= limit else text[: limit - 3] + "..."


@dataclass(frozen=True)
class Question:
    qid: str
    points: int
    name: str
    prompt: str
    oracle: Callable[..., Any]
    visible: tuple[Case, ...]
    hidden: Callable[[random.Random, int], list[Case]]
    # a module-level library function: the grader's sandboxed child imports it by name (see
    # `prepare_name`)
    prepare: Callable[[Case], dict[str, Any]] = as_given
    compare: Callable[[Any, Any], str | None] = Exact()
    hints: tuple[Hint, ...] = ()
    describe: Callable[[Case], str] = field(default=lambda case: _short_repr(case))
    # dotted names of the library code that answers this question ("mmcourse.vlm.visual_qa"): the
    # grader replaces them by a stub that raises and flags answers that use them; the oracle itself
    # counts when it is library code
    references: tuple[str, ...] = ()

    def __post_init__(self) -> None:
        if not self.qid.isidentifier() or not self.name.isidentifier():
            raise ValueError(
                f"question id {self.qid!r} and name {self.name!r} must be Python identifiers."
            )
        if not self.visible:
            raise ValueError(f"question {self.qid} needs at least one visible case.")

    @property
    def reference_names(self) -> tuple[str, ...]:
        """What a graded answer may not use: `references`, and the oracle when it is a library
        function."""
        names = list(self.references)
        module = getattr(self.oracle, "__module__", "") or ""
        if module.startswith("mmcourse.") and not module.startswith("mmcourse.grading"):
            names.append(f"{module}.{self.oracle.__qualname__}")
        return tuple(dict.fromkeys(names))

    @property
    def prepare_name(self) -> str:
        """ "module:qualname" of `prepare`, which the grader's child process imports to build the
        arguments.

        The child sees the installed `mmcourse` package only (never an instructor's private question
        folder, whose oracles and case generators stay in the trusted parent), so `prepare` must be
        a module-level function of `mmcourse`: `as_tensors`, `as_given`, or a built-in question's
        own.
        """
        module, qualname = (
            getattr(self.prepare, "__module__", "") or "",
            getattr(self.prepare, "__qualname__", ""),
        )
        if not module.startswith("mmcourse.") or "<" in qualname:
            raise ValueError(
                f"question {self.qid}: prepare={qualname or self.prepare!r} from {module or '?'} "
                "cannot be used by the "
                "grader, whose sandboxed child sees only the mmcourse package. Use a module-level "
                "function of "
                "mmcourse (mmcourse.grading.judging.as_tensors, as_given, or the built-in "
                "question's own prepare)."
            )
        return f"{module}:{qualname}"

    @property
    def exercise(self) -> str:
        return self.qid.split("_", 1)[0]

    def expected(self, case: Case) -> Any:
        """The reference output for a case: the library's own function, as plain data."""
        return to_plain(self.oracle(**self.prepare(case)))

    def hidden_cases(self, seed: int, n: int) -> list[Case]:
        return self.hidden(random.Random(seed), n)

    def judge(self, index: int, case: Case, got: Any, expected: Any | None = None) -> CaseResult:
        """Compare a learner's (plain) output with the oracle's; never reveals the reference."""
        expected = self.expected(case) if expected is None else expected
        got = to_plain(got)
        reason = self.compare(expected, got)
        if reason is None:
            return CaseResult(index, "passed")
        hint = ""
        for candidate in self.hints:
            try:
                if candidate.applies(case, expected, got):
                    hint = candidate.message
                    break
            except Exception:  # a hint that cannot judge this output simply does not apply
                continue
        return CaseResult(index, "failed", reason, hint, _short_repr(got))

    def run_case(self, index: int, case: Case, obj: Callable[..., Any]) -> CaseResult:
        """Call the learner's object on one case in this process and judge the output (used by
        `check`)."""
        expected = self.expected(case)
        try:
            # a deep copy: a learner's function that changes its arguments must not change the case
            got = obj(**self.prepare(copy.deepcopy(case)))
        except NotImplementedError:
            return CaseResult(index, "not written", f"{self.name} still raises NotImplementedError")
        except Exception as error:
            return CaseResult(index, "error", f"{self.name} raised {type(error).__name__}: {error}")
        return self.judge(index, case, got, expected)
