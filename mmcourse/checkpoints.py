"""One resolver for every model name in the course.

A **shipped** name (`"shapes-clip"`, ...) is a folder inside the package, in Hugging Face format,
verified against its `manifest.json` (size and sha256 of every file) before use, so a damaged file
is reported as damaged rather than as a confusing shape mismatch. **Anything else** goes to
`from_pretrained` unchanged: a local folder in Hugging Face format, the Hugging Face cache, or a hub
id when you are online.
Nothing is downloaded unless you pass a hub id and have a network.
"""

from __future__ import annotations

import contextlib
import hashlib
import json
import os
import stat
from pathlib import Path

__all__ = [
    "MANIFEST",
    "WEIGHTS_DIR",
    "CheckpointError",
    "from_pretrained",
    "path",
    "quiet_transformers",
    "resolve",
    "sha256",
    "shipped",
    "verify",
    "write_manifest",
]

WEIGHTS_DIR = Path(__file__).resolve().parent / "weights"
MANIFEST = "manifest.json"


class CheckpointError(ValueError):
    """A model name that cannot be loaded; the message says why and what to do."""


def shipped() -> list[str]:
    """Names of the checkpoints shipped inside the package."""
    if not WEIGHTS_DIR.is_dir():
        return []
    return sorted(p.name for p in WEIGHTS_DIR.iterdir() if (p / MANIFEST).is_file())


def sha256(path: Path) -> str:
    digest = hashlib.sha256()
    with open(path, "rb") as f:
        for block in iter(lambda: f.read(1 << 20), b""):
            digest.update(block)
    return digest.hexdigest()


def write_manifest(folder: str | Path) -> dict:
    """Record size and sha256 of every file of `folder` in its manifest; make the files
    world-readable."""
    folder = Path(folder)
    files = {}
    for path in sorted(folder.rglob("*")):
        if path.is_file() and path.name != MANIFEST:
            # safetensors writes 0600; a course installed by one user is read by others
            path.chmod(path.stat().st_mode | stat.S_IRUSR | stat.S_IRGRP | stat.S_IROTH)
            # a VLM folder has subfolders (vision/, language/): keys are relative POSIX paths
            files[path.relative_to(folder).as_posix()] = {
                "size": path.stat().st_size,
                "sha256": sha256(path),
            }
    manifest = {"files": files}
    (folder / MANIFEST).write_text(json.dumps(manifest, indent=1) + "\n")
    (folder / MANIFEST).chmod(0o644)
    return manifest


def verify(folder: str | Path) -> None:
    """Raise CheckpointError naming every missing, truncated or altered file of a shipped folder."""
    folder = Path(folder)
    try:
        manifest = json.loads((folder / MANIFEST).read_text())
    except (OSError, json.JSONDecodeError) as error:
        raise CheckpointError(
            f"{folder.name}: its {MANIFEST} is missing or unreadable ({error}); reinstall the "
            "course."
        ) from error
    problems = []
    for name, expected in manifest["files"].items():
        path = folder / name
        if not path.is_file():
            problems.append(f"{name} is missing")
        elif path.stat().st_size != expected["size"]:
            problems.append(
                f"{name} has {path.stat().st_size} bytes, expected {expected['size']} (truncated "
                "or replaced)"
            )
        elif sha256(path) != expected["sha256"]:
            problems.append(f"{name} is corrupt (its sha256 does not match the manifest)")
    if problems:
        raise CheckpointError(
            f"the shipped checkpoint {folder.name!r} is damaged: {'; '.join(problems)}. Restore it "
            "with "
            f"`git checkout -- mmcourse/weights/{folder.name}` (or reinstall the course)."
        )


def path(name: str) -> Path:
    """The verified folder of a shipped checkpoint."""
    if name not in shipped():
        raise CheckpointError(
            f"{name!r} is not a shipped checkpoint; shipped: {', '.join(shipped()) or 'none'}."
        )
    folder = WEIGHTS_DIR / name
    verify(folder)
    return folder


def resolve(name: str | os.PathLike) -> str:
    """A shipped name -> its verified folder; anything else unchanged (for `from_pretrained`)."""
    if isinstance(name, str) and name in shipped():
        return str(path(name))
    return os.fspath(name)


def _unknown(name: str, error: Exception) -> CheckpointError:
    return CheckpointError(
        f"cannot load {name!r}: it is not a shipped checkpoint ({', '.join(shipped()) or 'none'}), "
        "not a local "
        "folder in Hugging Face format, and not in the Hugging Face cache (and the Hub cannot be "
        "reached). "
        "To use real weights, download them once on a machine with a network "
        f"(`hf download {name} --local-dir models/NAME`) and pass that folder. "
        f"({type(error).__name__}: {error})"
    )


@contextlib.contextmanager
def quiet_transformers():
    """Silence transformers' harmless notices: the text-tower keys listed as unexpected when a
    CLIPVisionModel loads from a full CLIP folder, the CLIPImageProcessor -> CLIPImageProcessorPil
    fallback without torchvision, and
    loading/saving progress bars."""
    from transformers.utils import logging

    level = logging.get_verbosity()
    bars = logging.is_progress_bar_enabled()
    logging.set_verbosity_error()
    logging.disable_progress_bar()
    try:
        yield
    finally:
        logging.set_verbosity(level)
        if bars:
            logging.enable_progress_bar()


def from_pretrained(cls, name: str | os.PathLike, **kwargs):
    """`cls.from_pretrained` on the resolved name, offline-friendly, with one clear error for
    unknown names."""
    resolved = resolve(name)
    local = Path(resolved).is_dir()
    if not local and Path(resolved).exists():
        raise CheckpointError(f"{resolved!r} is a file; pass the folder that holds config.json.")
    try:
        with quiet_transformers():
            return cls.from_pretrained(resolved, **kwargs)
    except OSError as error:
        if local:
            raise CheckpointError(
                f"{resolved!r} is not a complete Hugging Face folder for {cls.__name__}: {error}"
            ) from error
        raise _unknown(str(name), error) from error
