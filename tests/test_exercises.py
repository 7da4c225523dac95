"""Each exercise notebook runs top to bottom; its only gaps are the stubs, which raise
NotImplementedError."""

import nbformat
import pytest
from conftest import ROOT
from nbclient import NotebookClient

from mmcourse.grading import question_bank

pytestmark = pytest.mark.slow  # each exercise notebook runs in a kernel

EXERCISES = sorted((ROOT / "exercises").glob("ex*.ipynb"))


@pytest.mark.parametrize("path", EXERCISES, ids=[p.name for p in EXERCISES])
def test_exercise_runs_and_every_stub_raises_not_implemented(path):
    book = nbformat.read(path, as_version=4)
    qids = [q.qid for q in question_bank.for_exercise(path.name[:4])]
    assert qids
    for qid in qids:
        name = question_bank.get(qid).name
        # call the learner's object on the first visible case, exactly as check would
        book.cells.append(
            nbformat.v4.new_code_cell(
                "from mmcourse.grading import question_bank as _q\n"
                f"_question = _q.get({qid!r})\n"
                "try:\n"
                f"    {name}(**_question.prepare(_question.visible[0]))\n"
                "except NotImplementedError as error:\n"
                f"    print('STUB RAISES', error)\n"
                "else:\n"
                f"    print('STUB RETURNED')\n"
            )
        )
    NotebookClient(
        book, timeout=120, kernel_name="python3", resources={"metadata": {"path": str(path.parent)}}
    ).execute()
    texts = [
        "".join(o.get("text", "") + str(o.get("data", {})) for o in c.get("outputs", []))
        for c in book.cells
    ]
    assert not any(
        o.get("output_type") == "error" for c in book.cells for o in c.get("outputs", [])
    )
    probes = texts[-len(qids) :]
    for qid, text in zip(qids, probes):
        assert f"STUB RAISES {qid}: write this part" in text
    body = "\n".join(texts[: -len(qids)])
    for qid in qids:
        assert f"{qid}: {question_bank.get(qid).name} is not written yet" in body
