"""`check(qid, obj)`: run a question's visible cases on a learner's function and say how it went.

Every exercise notebook ends its answer cells with a `check` cell. The verdict names the case that
failed, what kind of value was expected and a hint for the mistake it recognizes; it never shows the
reference answer. In Jupyter it is shown as HTML, elsewhere as text. (Grading a whole submission,
with hidden cases and a sandbox, is `mmcourse grade`.)
"""

from __future__ import annotations

import html
from collections.abc import Sequence

from . import question_bank
from .judging import CaseResult, Question

__all__ = ["check", "run_visible"]

_ICONS = {"passed": "✅", "failed": "❌", "error": "💥", "not written": "✏️"}


def run_visible(question: Question, obj) -> list[CaseResult]:
    if not callable(obj):
        return [
            CaseResult(
                -1, "error", f"{question.name} should be a function, got a {type(obj).__name__}"
            )
        ]
    return [question.run_case(i, case, obj) for i, case in enumerate(question.visible)]


def _verdict(
    question: Question, results: Sequence[CaseResult]
) -> tuple[str, list[tuple[str, str]]]:
    """(headline, [(label, text), ...]) for the first case that did not pass."""
    total = len(question.visible)
    bad = next((r for r in results if r.status != "passed"), None)
    if bad is None:
        return (
            f"{_ICONS['passed']} {question.qid}: {question.name} passes all {total} visible cases.",
            [],
        )
    if bad.status == "not written":
        return (
            f"{_ICONS['not written']} {question.qid}: {question.name} is not written yet.",
            [
                ("to do", question.prompt),
                (
                    "how",
                    "replace `raise NotImplementedError(...)` with your code, run the cell, then "
                    "this one",
                ),
            ],
        )
    if bad.index < 0:  # not about any case: the object itself is unusable
        return f"{_ICONS[bad.status]} {question.qid}: {bad.reason}.", [("to do", question.prompt)]
    headline = (
        f"{_ICONS[bad.status]} {question.qid}: {question.name} fails visible case "
        f"{bad.index + 1} of {total}."
    )
    details = [("case", question.describe(question.visible[bad.index])), ("problem", bad.reason)]
    if bad.got:
        details.append(("you returned", bad.got))
    if bad.hint:
        details.append(("hint", bad.hint))
    return headline, details


def _in_notebook() -> bool:
    try:
        from IPython import get_ipython
    except ImportError:
        return False
    shell = get_ipython()
    return shell is not None and type(shell).__name__ == "ZMQInteractiveShell"


def _show(headline: str, details: list[tuple[str, str]], passed: bool) -> None:
    if _in_notebook():
        from IPython.display import HTML, display

        color = "#1a7f37" if passed else "#9a6700"
        rows = "".join(
            f"<tr><td style='padding-right:1em;vertical-align:top'><b>{html.escape(k)}</b></td>"
            f"<td style='text-align:left'><code>{html.escape(v)}</code></td></tr>"
            for k, v in details
        )
        display(
            HTML(
                f"<div style='border-left:4px solid {color};padding:0.3em 0.8em'>"
                f"<div>{html.escape(headline)}</div><table>{rows}</table></div>"
            )
        )
        return
    print(headline)
    for key, value in details:
        print(f"  {key + ':':<14}{value}")


def check(qid: str, obj) -> bool:
    """Run the visible cases of question `qid` on `obj`; print the verdict; True when all pass."""
    question = question_bank.get(qid)
    results = run_visible(question, obj)
    passed = all(r.status == "passed" for r in results)
    headline, details = _verdict(question, results)
    _show(headline, details, passed)
    return passed
