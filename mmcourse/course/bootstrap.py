"""Set up the course's own virtual environment, with nothing but the standard library.

`make lab`, `make test` and `python -m mmcourse lab` all come here, so a fresh machine that has only
Python and pip needs no other step. The environment is `.venv/` at the course root; it is
(re)installed through `constraints.txt` whenever `pyproject.toml`, the constraints or the requested
extras change.
"""

from __future__ import annotations

import hashlib
import os
import subprocess
import sys
import venv
from pathlib import Path

__all__ = ["ROOT", "STAMP_NAME", "VENV", "ensure_venv", "in_course_venv", "main", "venv_python"]

ROOT = Path(__file__).resolve().parents[2]  # the course clone: mmcourse/course/bootstrap.py -> ./
VENV = ROOT / ".venv"
STAMP_NAME = ".mmcourse-installed"


def venv_python(venv_dir: Path = VENV) -> Path:
    sub = "Scripts/python.exe" if os.name == "nt" else "bin/python"
    return venv_dir / sub


def in_course_venv() -> bool:
    return Path(sys.prefix).resolve() == VENV.resolve()


def _fingerprint() -> str:
    digest = hashlib.sha256()
    for name in ("pyproject.toml", "constraints.txt"):
        digest.update((ROOT / name).read_bytes())
    return digest.hexdigest()


def ensure_venv(extras: tuple[str, ...] = ()) -> Path:
    """Create `.venv` if needed, install the course into it if out of date; return its python."""
    if sys.version_info < (3, 10):  # noqa: UP036 - this runs on whatever Python a newcomer has
        sys.exit(f"mmcourse needs Python 3.10 or newer; this is {sys.version.split()[0]}.")
    python = venv_python()
    if not python.exists():
        print(f"Creating the course environment in {VENV.name}/ ...", flush=True)
        venv.create(VENV, with_pip=True)
    stamp = VENV / STAMP_NAME
    fingerprint = _fingerprint()
    # The stamp holds the fingerprint of the set-up files, then the extras installed with them; an
    # environment installed with more extras also serves a request for fewer.
    stamped = stamp.read_text().split() if stamp.exists() else []
    if stamped[:1] == [fingerprint] and set(extras) <= set(stamped[1:]):
        return python
    extras = tuple(sorted(set(extras) | set(stamped[1:] if stamped[:1] == [fingerprint] else ())))
    target = "." + (f"[{','.join(extras)}]" if extras else "")
    print(
        f"Installing the course ({target}) into {VENV.name}/; the first time takes a few minutes "
        "...",
        flush=True,
    )
    pip = [str(python), "-m", "pip", "--disable-pip-version-check"]
    subprocess.run([*pip, "install", "--quiet", "--upgrade", "pip"], check=True, cwd=ROOT)
    subprocess.run(
        [*pip, "install", "--quiet", "-c", "constraints.txt", "-e", target], check=True, cwd=ROOT
    )
    stamp.write_text(" ".join((fingerprint, *extras)) + "\n")
    return python


def main(argv: list[str] | None = None) -> int:
    """`python -m mmcourse.course.bootstrap [EXTRA...]`: used by the Makefile."""
    extras = tuple(argv if argv is not None else sys.argv[1:])
    try:
        ensure_venv(extras)
    except subprocess.CalledProcessError as error:
        print(
            f"Installing the course failed ({error}). See 'Troubleshooting' in README.md.",
            file=sys.stderr,
        )
        return 1
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
