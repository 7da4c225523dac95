"""The instructor's side of the exchange: collect a class's hand-ins for the grader, and give each
learner back their own result.

`collect` writes `DIR/<hub user>/exNN.ipynb` (the folder names the learner, so the existing
grader's gradebook rows read `<hub user>__exNN`) and `DIR/manifest.json`, which records for each
file the hub user name, receipt id, sha256 and time. The bytes are checked against their sha256
before they are written. `return_feedback` finds each learner's result through the grader's own
`result_path` (content-addressed: the exact bytes collected, never a guess from a name), uploads it
to that learner, and writes `RESULTS/gradebook-exNN.csv` keyed by hub user name.
"""

from __future__ import annotations

import base64
import csv
import hashlib
import json
import re
from pathlib import Path

from .client import ExchangeClient, ExchangeError

__all__ = ["MANIFEST", "collect", "folder_for", "return_feedback"]

MANIFEST = "manifest.json"


def folder_for(user: str) -> str:
    """The folder of a learner's hand-in: the hub user name itself when the grader keeps it as it
    is (letters, digits, `.-_`, at most 40), else a readable form plus a hash (never colliding)."""
    if re.fullmatch(r"[A-Za-z0-9][A-Za-z0-9_.-]{0,38}[A-Za-z0-9]|[A-Za-z0-9]", user):
        return user
    readable = re.sub(r"[^A-Za-z0-9]+", "-", user).strip("-")[:28] or "user"
    return f"{readable}-{hashlib.sha256(user.encode()).hexdigest()[:8]}"


def collect(exercise: str, out: Path, client: ExchangeClient | None = None) -> dict:
    """Fetch the latest on-time hand-in of every learner into `out`; returns the manifest."""
    client = client or ExchangeClient()
    answer = client.collect(exercise)
    out = Path(out)
    out.mkdir(parents=True, exist_ok=True)
    entries = []
    for item in answer["submissions"]:
        data = base64.b64decode(item["content_b64"])
        if hashlib.sha256(data).hexdigest() != item["sha256"] or len(data) != item["size"]:
            raise ExchangeError(f"{item['user']}'s hand-in arrived damaged (sha256 mismatch)")
        folder = out / folder_for(item["user"])
        folder.mkdir(exist_ok=True)
        target = folder / f"{exercise}.ipynb"
        target.write_bytes(data)
        receipt = {k: v for k, v in item.items() if k != "content_b64"}
        entries.append({**receipt, "file": str(target.relative_to(out))})
    manifest = {
        "exercise": exercise,
        "deadline": answer["deadline"],
        "submissions": entries,
        "late_only": answer["late_only"],
    }
    (out / MANIFEST).write_text(json.dumps(manifest, indent=1) + "\n", encoding="utf-8")
    return manifest


def return_feedback(
    exercise: str, collected: Path, results: Path, client: ExchangeClient | None = None
) -> list[dict]:
    """Upload each collected learner's graded result to them; returns one row per learner
    (user, status, total) and writes the gradebook keyed by hub user name."""
    from ..grading.class_grader import result_path

    client = client or ExchangeClient()
    collected, results = Path(collected), Path(results)
    manifest = json.loads((collected / MANIFEST).read_text(encoding="utf-8"))
    if manifest["exercise"] != exercise:
        raise ExchangeError(f"{collected} holds {manifest['exercise']}, not {exercise}")
    rows = []
    for entry in manifest["submissions"]:
        graded = result_path(results, collected / entry["file"])
        if not graded.exists():
            rows.append({"user": entry["user"], "status": "not graded", "total": "", "max": ""})
            continue
        result = json.loads(graded.read_text(encoding="utf-8"))
        notes = graded.with_suffix(".feedback.md")
        body = {
            "exercise": exercise,
            "user": entry["user"],
            "submission_id": entry["id"],
            "sha256": entry["sha256"],
            "result": result,
            "feedback_md": notes.read_text(encoding="utf-8") if notes.exists() else "",
        }
        released = client.release_feedback(exercise, entry["user"], body)
        rows.append(
            {
                "user": entry["user"],
                "status": f"released (version {released['version']})",
                "total": result["total"],
                "max": result["max_total"],
                "late": entry["late"],
                "sha256": entry["sha256"],
                "questions": {q["qid"]: q["points"] for q in result["questions"]},
            }
        )
    _write_gradebook(results / f"gradebook-{exercise}.csv", rows)
    return rows


def _write_gradebook(path: Path, rows: list[dict]) -> None:
    """One row per hub user: points per question, total, max, and the sha256 graded."""
    qids = sorted({q for row in rows for q in row.get("questions", {})})
    with open(path, "w", newline="", encoding="utf-8") as handle:
        writer = csv.writer(handle)
        writer.writerow(["user", *qids, "total", "max", "sha256", "feedback"])
        for row in rows:
            points = row.get("questions", {})
            cells = [row["user"], *[points.get(q, "") for q in qids], row["total"], row["max"]]
            cells += [row.get("sha256", ""), row["status"]]
            # a cell that a spreadsheet would run as a formula is quoted, as in grades.csv
            writer.writerow(
                ["'" + str(c) if str(c).startswith(("=", "+", "-", "@")) else c for c in cells]
            )
