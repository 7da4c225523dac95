"""Reading hand-ins as collection must: only regular files of the submission, any bytes a status.

Course tooling, used by `mmcourse grade` (`class_grader`). A hand-in is opened without following a
link (`O_NOFOLLOW`) or blocking (`O_NONBLOCK`), and `fstat` of what was opened must say a regular
file with one name: a symbolic link, hard link, named pipe, device, socket or folder named
`*.ipynb` is `refused` and never read. Whatever bytes are read, `read_submission` turns them into a
notebook or a reason, and `answer_cells` takes only what has the shape of a tagged code cell.
`collect` lists what a class handed in without entering a linked folder; `safe_name` names a hand-in
after its own path (or a hub user name), never after what a link points to.
"""

from __future__ import annotations

import errno
import hashlib
import json
import os
import re
import stat
from collections.abc import Iterable
from dataclasses import dataclass
from pathlib import Path

import nbformat

__all__ = [
    "MAX_NOTEBOOK_BYTES",
    "HandIn",
    "answer_cells",
    "collect",
    "digest",
    "exercise_of",
    "read_hand_in",
    "read_submission",
    "safe_name",
]

MAX_NOTEBOOK_BYTES = 20_000_000


@dataclass(frozen=True)
class HandIn:
    """What collection found at a path: its bytes (a regular file of its own, at most
    MAX_NOTEBOOK_BYTES), or None and the status and reason why not."""

    data: bytes | None
    digest: str
    status: str = ""  # "": readable; "refused" or "unreadable"
    problem: str = ""


_KINDS = (
    (stat.S_ISLNK, "a symbolic link"),
    (stat.S_ISDIR, "a folder"),
    (stat.S_ISFIFO, "a named pipe"),
    (stat.S_ISSOCK, "a socket"),
    (stat.S_ISCHR, "a character device"),
    (stat.S_ISBLK, "a block device"),
)


def _not_regular(mode: int) -> str:
    return next((kind for test, kind in _KINDS if test(mode)), "" if stat.S_ISREG(mode) else "?")


def read_hand_in(path: Path) -> HandIn:
    """Read a hand-in as collection must: only a regular file of the submission itself.

    The last component is opened with O_NOFOLLOW (a link to another learner's file, or to a secret
    of the machine, is never followed) and O_NONBLOCK (a named pipe cannot hang the grader), and
    `fstat` of what was opened decides: a link, pipe, device, socket or folder is refused, and so is
    a hard link (a file with more than one name: another name for a file that is elsewhere too).
    At most MAX_NOTEBOOK_BYTES + 1 bytes are read. Never raises.
    """

    def refused(
        kind: str, advice: str = "not a regular file: hand in the notebook itself"
    ) -> HandIn:
        reason = f"{kind}, {advice}"
        return HandIn(None, digest(f"refused:{kind}".encode()), "refused", reason)

    try:
        kind = _not_regular(os.lstat(path).st_mode)
        if kind:
            return refused(f"it is {kind}")
        flags = os.O_RDONLY | os.O_NOFOLLOW | os.O_NONBLOCK | os.O_CLOEXEC | os.O_NOCTTY
        fd = os.open(path, flags)
    except OSError as error:
        if error.errno == errno.ELOOP:  # swapped for a link since lstat
            return refused("it is a symbolic link")
        reason = f"it cannot be opened ({error.strerror or type(error).__name__})"
        return HandIn(None, digest(f"unreadable:{reason}".encode()), "unreadable", reason)
    with os.fdopen(fd, "rb") as file:
        info = os.fstat(file.fileno())
        kind = _not_regular(info.st_mode)
        if kind:
            return refused(f"it is {kind}")
        if info.st_nlink > 1:
            return refused(
                "it is a hard link",
                f"the same file under {info.st_nlink} names: hand in a copy of the notebook",
            )
        try:
            data = file.read(MAX_NOTEBOOK_BYTES + 1)
        except OSError as error:
            reason = f"it cannot be read ({error.strerror or type(error).__name__})"
            return HandIn(None, digest(f"unreadable:{reason}".encode()), "unreadable", reason)
    if len(data) > MAX_NOTEBOOK_BYTES:
        reason = (
            f"the file is {info.st_size} bytes, more than the {MAX_NOTEBOOK_BYTES} a notebook may "
            "have"
        )
        return HandIn(None, digest(data + str(info.st_size).encode()), "unreadable", reason)
    return HandIn(data, digest(data))


def exercise_of(path: Path) -> str | None:
    """The exercise a submission belongs to: "ex03" from its file name ("ex03_contrastive.ipynb",
    "ex03.ipynb")."""
    match = re.match(r"(ex\d\d)", path.name)
    return match.group(1) if match else None


def read_submission(data: bytes) -> tuple[nbformat.NotebookNode | None, str]:
    """A learner's notebook, or None and the reason it cannot be read (empty, not JSON, nbformat 3,
    huge)."""
    if not data.strip():
        return None, "the file is empty"
    if len(data) > MAX_NOTEBOOK_BYTES:
        return (
            None,
            f"the file is {len(data)} bytes, more than the {MAX_NOTEBOOK_BYTES} a notebook may "
            "have",
        )
    try:
        raw = json.loads(data)
    except Exception as error:  # bad JSON, bad UTF-8, nesting too deep, a huge number
        return None, f"the file is not notebook JSON ({error.__class__.__name__})"
    if not isinstance(raw, dict) or raw.get("nbformat") != 4:
        return (
            None,
            "not an nbformat 4 notebook (nbformat "
            f"{raw.get('nbformat') if isinstance(raw, dict) else '?'}); save it from JupyterLab",
        )
    try:
        notebook = nbformat.reads(data.decode("utf-8"), as_version=4)
    except Exception as error:
        return None, f"the notebook is damaged ({error.__class__.__name__})"
    return notebook, ""


def answer_cells(notebook: nbformat.NotebookNode, qids: Iterable[str]) -> dict[str, str | None]:
    """The learner's source for each question: its one code cell tagged with the id, else None
    (missing)."""
    found: dict[str, list[str]] = {qid: [] for qid in qids}
    cells = notebook.get("cells") if isinstance(notebook, dict) else None
    # any JSON is possible here (nbformat only logs what does not validate): take only what has the
    # shape of a tagged code cell
    for cell in cells if isinstance(cells, list) else []:
        metadata = cell.get("metadata") if isinstance(cell, dict) else None
        tags = metadata.get("tags") if isinstance(metadata, dict) else None
        if not isinstance(tags, list):
            continue
        tags = [tag for tag in tags if isinstance(tag, str)]
        for qid in found:
            if (
                qid in tags
                and cell.get("cell_type") == "code"
                and isinstance(cell.get("source"), str)
            ):
                found[qid].append(cell["source"])
    return {qid: sources[0] if len(sources) == 1 else None for qid, sources in found.items()}


def digest(data: bytes) -> str:
    return hashlib.sha256(data).hexdigest()[:16]


def _clean(part: str) -> str:
    return re.sub(r"[^A-Za-z0-9_.-]+", "_", part).strip("._")[:40]


def safe_name(path: Path, name: str | None = None) -> str:
    """ "alice__ex03_contrastive" for alice/ex03_contrastive.ipynb: the folder names the student, so
    two students' identical files (both handed in the untouched exercise) stay two rows. The path is
    made absolute without following links, so a link is named as itself, never as its target.
    `name` (e.g. a hub user name) replaces the folder."""
    parent = _clean(name) if name is not None else _clean(Path(os.path.abspath(path)).parent.name)
    parts = [parent, _clean(Path(path).stem)]
    return "__".join(part for part in parts if part) or "submission"


def collect(paths: Iterable[Path]) -> list[Path]:
    """Every .ipynb given or inside the folders given, sorted, each once, never through a link.

    The folders given are walked without following links inside them. What is not a regular file
    but would be taken for a hand-in (a link, named pipe, device or socket named *.ipynb, a folder
    named *.ipynb, a link to a folder) is listed too, and not entered: grading then names it as
    `refused`, with the reason (`read_hand_in`), instead of grading what it points to.
    """
    found = set()
    for root in paths:
        root = Path(root)
        # given by name, a linked folder and a folder named *.ipynb are refused rows, not walked
        if root.is_symlink() or not root.is_dir() or root.name.endswith(".ipynb"):
            found.add(root)
            continue
        for folder, folders, files in os.walk(root, followlinks=False):
            for sub in list(folders):
                inside = Path(folder, sub)
                if inside.is_symlink() or sub.endswith(".ipynb"):
                    found.add(inside)
                    folders.remove(sub)
            found |= {Path(folder, file) for file in files if file.endswith(".ipynb")}
    return sorted(found)
