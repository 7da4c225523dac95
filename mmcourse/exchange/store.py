"""The exchange's storage: who handed in which exact bytes when, kept forever, and the feedback
given back.

One folder, private to the service: `index.sqlite` (the rows) and `blobs/<sha256>` (the bytes,
content-addressed). A blob is written atomically (temporary file, fsync, rename) *before* its row,
so a row never names bytes that are not on disk; rows are never updated or deleted (SQLite
triggers refuse it), so the history of every learner and exercise is immutable. Nothing here knows
about HTTP or the hub: the caller passes the hub user name, and this module trusts it.

Deadlines and feedback are kept the same way, as append-only rows where the latest one counts.
"""

from __future__ import annotations

import hashlib
import json
import os
import re
import secrets
import sqlite3
from collections.abc import Callable, Iterable
from dataclasses import asdict, dataclass
from datetime import datetime, timezone
from pathlib import Path

__all__ = [
    "DEFAULT_MAX_BYTES",
    "EXERCISE_PATTERN",
    "Feedback",
    "Receipt",
    "StoreError",
    "SubmissionStore",
    "course_exercises",
    "parse_deadline",
]

DEFAULT_MAX_BYTES = 10_000_000
EXERCISE_PATTERN = re.compile(r"ex\d\d")

_SCHEMA = """
CREATE TABLE IF NOT EXISTS submissions (
    id TEXT PRIMARY KEY, user TEXT NOT NULL, exercise TEXT NOT NULL, sha256 TEXT NOT NULL,
    size INTEGER NOT NULL, received_at TEXT NOT NULL, deadline TEXT, late INTEGER NOT NULL);
CREATE INDEX IF NOT EXISTS submissions_by_exercise ON submissions (exercise, user);
CREATE TABLE IF NOT EXISTS deadlines (
    seq INTEGER PRIMARY KEY AUTOINCREMENT, exercise TEXT NOT NULL, deadline TEXT,
    set_by TEXT NOT NULL, set_at TEXT NOT NULL);
CREATE TABLE IF NOT EXISTS feedback (
    seq INTEGER PRIMARY KEY AUTOINCREMENT, exercise TEXT NOT NULL, user TEXT NOT NULL,
    sha256 TEXT NOT NULL, released_by TEXT NOT NULL, released_at TEXT NOT NULL);
"""
_IMMUTABLE = "CREATE TRIGGER IF NOT EXISTS {table}_no_{action} BEFORE {action} ON {table} BEGIN "
_IMMUTABLE += "SELECT RAISE(ABORT, 'the exchange history is append-only'); END;"


class StoreError(ValueError):
    """A request the store refuses; `status` is the HTTP status the service answers with."""

    def __init__(self, status: int, message: str):
        super().__init__(message)
        self.status = status


@dataclass(frozen=True)
class Receipt:
    """What a learner gets back for a hand-in: enough to prove later what was received."""

    id: str
    user: str
    exercise: str
    sha256: str
    size: int
    received_at: str  # ISO-8601 UTC, from the service's clock
    deadline: str | None  # the deadline in force when it was received
    late: bool

    def as_dict(self) -> dict:
        return asdict(self)


@dataclass(frozen=True)
class Feedback:
    exercise: str
    user: str
    version: int  # 1 for the first release to this learner, 2 for the next, ...
    released_at: str
    released_by: str
    content: bytes


def _now() -> datetime:
    return datetime.now(timezone.utc)


def _iso(moment: datetime) -> str:
    return moment.astimezone(timezone.utc).isoformat(timespec="microseconds")


def parse_deadline(text: str | None) -> str | None:
    """An ISO-8601 time with a zone ("2026-12-03T12:00Z", "...+01:00") as canonical UTC, or None.

    A time without a zone is refused: "12:00" means different moments to the instructor and the
    server."""
    if text is None:
        return None
    try:
        moment = datetime.fromisoformat(str(text).strip().replace("Z", "+00:00"))
    except ValueError:
        raise StoreError(
            400, f"deadline {text!r} is not an ISO-8601 time; write e.g. 2026-12-03T12:00Z"
        ) from None
    if moment.tzinfo is None:
        raise StoreError(
            400, f"deadline {text!r} has no time zone; add one, e.g. 2026-12-03T12:00Z (UTC)"
        )
    return _iso(moment)


def course_exercises() -> frozenset[str]:
    """The exercise ids of the installed course ("ex00", ...), from its released exercises."""
    from ..course.release import exercise_names

    return frozenset(name[:4] for name in exercise_names() if EXERCISE_PATTERN.match(name))


class SubmissionStore:
    """Hand-ins, deadlines and feedback in the folder `root` (created private: mode 0700)."""

    def __init__(
        self,
        root: Path,
        exercises: Iterable[str],
        max_bytes: int = DEFAULT_MAX_BYTES,
        clock: Callable[[], datetime] = _now,
    ):
        self.root = Path(root)
        self.exercises = frozenset(exercises)
        self.max_bytes = max_bytes
        self.clock = clock
        self.blobs = self.root / "blobs"
        self.blobs.mkdir(parents=True, exist_ok=True, mode=0o700)
        os.chmod(self.root, 0o700)
        self.db = sqlite3.connect(self.root / "index.sqlite", isolation_level=None)
        self.db.row_factory = sqlite3.Row
        self.db.execute("PRAGMA journal_mode=WAL")
        self.db.executescript(_SCHEMA)
        for table in ("submissions", "deadlines", "feedback"):
            for action in ("UPDATE", "DELETE"):
                self.db.execute(_IMMUTABLE.format(table=table, action=action))

    # --- checks
    def check_exercise(self, exercise: str) -> str:
        if not EXERCISE_PATTERN.fullmatch(exercise or ""):
            raise StoreError(400, f"{exercise!r} is not an exercise id; they look like ex03")
        if exercise not in self.exercises:
            known = ", ".join(sorted(self.exercises)) or "none"
            raise StoreError(404, f"no exercise {exercise} in this course; exercises: {known}")
        return exercise

    def _write_blob(self, data: bytes) -> str:
        """Store `data` under its sha256 (atomically, durably) and return the digest."""
        digest = hashlib.sha256(data).hexdigest()
        target = self.blobs / digest
        if not target.exists():
            tmp = self.blobs / f".{digest}.{secrets.token_hex(4)}.tmp"
            with open(tmp, "wb") as handle:
                handle.write(data)
                handle.flush()
                os.fsync(handle.fileno())
            os.replace(tmp, target)
        return digest

    def read_blob(self, digest: str) -> bytes:
        data = (self.blobs / digest).read_bytes()
        if hashlib.sha256(data).hexdigest() != digest:
            raise StoreError(500, f"stored bytes {digest[:12]}... are damaged on disk")
        return data

    # --- submissions
    def submit(self, user: str, exercise: str, data: bytes) -> Receipt:
        """Record `data` as `user`'s hand-in of `exercise`; late if after the deadline now."""
        self.check_exercise(exercise)
        if len(data) > self.max_bytes:
            raise StoreError(
                413,
                f"the hand-in is {len(data)} bytes; the limit is {self.max_bytes}. Clear the "
                "notebook's outputs (Edit > Clear Outputs of All Cells), save, and submit again",
            )
        check_notebook(data)
        digest = self._write_blob(data)
        received = _iso(self.clock())
        deadline = self.deadline(exercise)
        late = deadline is not None and received > deadline
        receipt = Receipt(
            secrets.token_hex(8), user, exercise, digest, len(data), received, deadline, late
        )
        self.db.execute(
            "INSERT INTO submissions VALUES (?, ?, ?, ?, ?, ?, ?, ?)",
            (receipt.id, user, exercise, digest, len(data), received, deadline, int(late)),
        )
        return receipt

    @staticmethod
    def _receipt(row: sqlite3.Row) -> Receipt:
        return Receipt(
            row["id"],
            row["user"],
            row["exercise"],
            row["sha256"],
            row["size"],
            row["received_at"],
            row["deadline"],
            bool(row["late"]),
        )

    def submissions(self, user: str | None = None, exercise: str | None = None) -> list[Receipt]:
        """Receipts in the order received, of one user and/or exercise (None: all)."""
        query, args = "SELECT * FROM submissions WHERE 1", []
        if user is not None:
            query, args = query + " AND user = ?", [*args, user]
        if exercise is not None:
            query, args = query + " AND exercise = ?", [*args, exercise]
        rows = self.db.execute(query + " ORDER BY received_at, rowid", args)
        return [self._receipt(row) for row in rows]

    def receipt(self, submission_id: str) -> Receipt | None:
        row = self.db.execute("SELECT * FROM submissions WHERE id = ?", (submission_id,)).fetchone()
        return self._receipt(row) if row else None

    def content(self, receipt: Receipt) -> bytes:
        return self.read_blob(receipt.sha256)

    def latest_on_time(self, exercise: str) -> tuple[list[Receipt], list[Receipt]]:
        """Per learner, the last hand-in on or before the exercise's current deadline; and, for
        learners who only handed in late, their last late hand-in (reported, not collected).

        The current deadline decides, so that extending a deadline counts work received before
        the new one as on time."""
        self.check_exercise(exercise)
        deadline = self.deadline(exercise)
        on_time: dict[str, Receipt] = {}
        late_only: dict[str, Receipt] = {}
        for receipt in self.submissions(exercise=exercise):
            if deadline is None or receipt.received_at <= deadline:
                on_time[receipt.user] = receipt
            else:
                late_only[receipt.user] = receipt
        late = [r for user, r in sorted(late_only.items()) if user not in on_time]
        return [on_time[user] for user in sorted(on_time)], late

    # --- deadlines
    def set_deadline(self, exercise: str, deadline: str | None, by: str) -> str | None:
        self.check_exercise(exercise)
        canonical = parse_deadline(deadline)
        self.db.execute(
            "INSERT INTO deadlines (exercise, deadline, set_by, set_at) VALUES (?, ?, ?, ?)",
            (exercise, canonical, by, _iso(self.clock())),
        )
        return canonical

    def deadline(self, exercise: str) -> str | None:
        row = self.db.execute(
            "SELECT deadline FROM deadlines WHERE exercise = ? ORDER BY seq DESC LIMIT 1",
            (exercise,),
        ).fetchone()
        return row["deadline"] if row else None

    # --- feedback
    def release_feedback(self, exercise: str, user: str, content: bytes, by: str) -> Feedback:
        """Keep a new version of `user`'s feedback on `exercise` (they must have handed it in)."""
        self.check_exercise(exercise)
        if not self.submissions(user=user, exercise=exercise):
            raise StoreError(
                404, f"{user!r} has handed in nothing for {exercise}; check the user name"
            )
        if len(content) > self.max_bytes:
            raise StoreError(413, f"feedback of {len(content)} bytes is over {self.max_bytes}")
        digest = self._write_blob(content)
        self.db.execute(
            "INSERT INTO feedback (exercise, user, sha256, released_by, released_at) "
            "VALUES (?, ?, ?, ?, ?)",
            (exercise, user, digest, by, _iso(self.clock())),
        )
        found = self.feedback(exercise, user)
        assert found is not None
        return found

    def feedback(self, exercise: str, user: str) -> Feedback | None:
        """The latest feedback released to `user` on `exercise`, or None."""
        self.check_exercise(exercise)
        rows = self.db.execute(
            "SELECT * FROM feedback WHERE exercise = ? AND user = ? ORDER BY seq", (exercise, user)
        ).fetchall()
        if not rows:
            return None
        row = rows[-1]
        return Feedback(
            exercise,
            user,
            len(rows),
            row["released_at"],
            row["released_by"],
            self.read_blob(row["sha256"]),
        )

    def close(self) -> None:
        self.db.close()


def check_notebook(data: bytes) -> None:
    """Refuse bytes that are not an nbformat 4 notebook (a clear 400 naming the problem)."""
    try:
        notebook = json.loads(data.decode("utf-8"))
    except (UnicodeDecodeError, json.JSONDecodeError):
        raise StoreError(
            400, "the hand-in is not a notebook (not JSON); submit the saved .ipynb file"
        ) from None
    if not isinstance(notebook, dict) or notebook.get("nbformat") != 4:
        raise StoreError(
            400, "the hand-in is not an nbformat 4 notebook; save it from JupyterLab and resubmit"
        )
    if not isinstance(notebook.get("cells"), list):
        raise StoreError(400, "the hand-in has no list of cells; it is not a notebook")
