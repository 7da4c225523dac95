"""A learner's server on the course hub: put the course in the learner's home, then become
`jupyterhub-singleuser`.

The hub (`mmcourse.hub.config`) starts `python -m mmcourse.hub.learner_server` as the learner, in
their home. It copies the lessons into `~/notebooks/` and the exercises into `~/workspace/` (the
learner's own copies, as `mmcourse start` makes them), never overwriting a file that is there, so a
restart or a course update never touches a learner's work; it sets `MMCOURSE_WORKSPACE` so that
`mmcourse start`, `submit` and `feedback` find that folder. The copy happens in the learner's own
server, not in the hub, so it works the same when the server is a Kubernetes pod.
"""

from __future__ import annotations

import os
import sys
from pathlib import Path

__all__ = ["main", "prepare_home"]


def prepare_home(home: Path, course: Path) -> list[Path]:
    """Copy the course's lessons and exercises into `home`; returns the files copied (a file
    that exists already is kept as it is)."""
    from ..course.release import copy_if_absent

    copied = []
    for source_dir, target_dir in (("notebooks", "notebooks"), ("exercises", "workspace")):
        target = home / target_dir
        target.mkdir(parents=True, exist_ok=True)
        for source in sorted((course / source_dir).glob("*.ipynb")):
            if copy_if_absent(source, target / source.name):
                copied.append(target / source.name)
    return copied


def main() -> None:
    from ..course.release import WORKSPACE_ENV, course_root

    home = Path(os.environ.get("HOME") or Path.cwd())
    copied = prepare_home(home, course_root())
    print(f"mmcourse: {len(copied)} course file(s) copied into {home}", file=sys.stderr, flush=True)
    env = {**os.environ, WORKSPACE_ENV: str(home / "workspace")}
    command = [sys.executable, "-m", "jupyterhub.singleuser", *sys.argv[1:]]
    os.chdir(home)
    os.execve(sys.executable, command, env)


if __name__ == "__main__":
    main()
