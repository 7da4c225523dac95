"""`mmcourse hub`: start the workshop's JupyterHub on this machine, with the course and the
exchange.

It checks what the recipe needs before starting (root, configurable-http-proxy, jupyterhub, a
system account per learner, a course that learners' accounts can read), saves the settings in
the state folder and becomes `jupyterhub -f mmcourse/hub/jupyterhub_config.py`.
"""

from __future__ import annotations

import os
import shutil
import stat
import sys
from pathlib import Path

from .config import HubSettings

__all__ = ["CONFIG_FILE", "hub_command", "names", "problems", "run"]

CONFIG_FILE = Path(__file__).with_name("jupyterhub_config.py")


def names(listed: str | None, file: str | None) -> tuple[str, ...]:
    """User names from "a,b,c" and from a file with one name a line (# starts a comment)."""
    found = [n.strip() for n in (listed or "").split(",")]
    if file:
        for line in Path(file).read_text(encoding="utf-8").splitlines():
            found.append(line.split("#", 1)[0].strip())
    return tuple(dict.fromkeys(n for n in found if n))


def _readable_by_others(path: Path) -> bool:
    """Whether an account other than the owner can reach `path` (every folder above it o+x)."""
    path = path.resolve()
    for part in [path, *path.parents]:
        mode = part.stat().st_mode
        if not mode & stat.S_IXOTH or (part == path and not mode & stat.S_IROTH):
            return False
    return True


def problems(settings: HubSettings, course: Path) -> list[str]:
    """What stops the workshop hub from working here, each with its fix (empty: ready)."""
    found = []
    if os.name != "posix" or os.geteuid() != 0:
        found.append(
            "the workshop hub runs each learner's server as that learner's system account, so it "
            "must run as root: sudo .venv/bin/mmcourse hub ..."
        )
    if shutil.which("configurable-http-proxy") is None:
        found.append(
            "configurable-http-proxy is not on PATH; install it with: "
            "npm install -g configurable-http-proxy@5.3.0"
        )
    try:
        import jupyterhub  # noqa: F401
    except ImportError:
        found.append("jupyterhub is not installed; run: pip install -c constraints.txt -e '.[hub]'")
    try:
        import pwd

        missing = [n for n in (*settings.instructors, *settings.learners) if not _account(pwd, n)]
    except ImportError:
        missing = []
    if missing:
        found.append(
            "no system account for " + ", ".join(missing) + "; create each one with a password, "
            "e.g.: sudo useradd -m NAME && sudo passwd NAME"
        )
    if not settings.instructors:
        found.append("no instructor: pass --instructors NAME[,NAME...]")
    python = Path(settings.python)
    if not all(_readable_by_others(p) for p in (course, python, Path(sys.base_prefix))):
        found.append(
            f"learners' accounts cannot read the course at {course} or run {python} (its Python "
            f"is in {sys.base_prefix}); install Python and the course where every account can "
            "read them (e.g. /opt/mmcourse with a system Python)"
        )
    return found


def _account(pwd, name: str) -> bool:
    try:
        pwd.getpwnam(name)
    except KeyError:
        return False
    return True


def hub_command(settings: HubSettings) -> list[str]:
    return [settings.python, "-m", "jupyterhub", "-f", str(CONFIG_FILE)]


def run(args) -> int:
    """The `mmcourse hub` command (arguments from mmcourse.exchange.commands)."""
    from ..course.release import course_root

    try:
        settings = HubSettings(
            state_dir=str(Path(args.state_dir).resolve()),
            ip=args.ip,
            port=args.port,
            instructors=names(args.instructors, None),
            learners=names(args.learners, args.learners_file),
        )
    except OSError as error:
        print(f"hub: cannot read the list of learners ({error})", file=sys.stderr)
        return 2
    found = problems(settings, course_root())
    if found:
        print("hub: not started:", *found, sep="\n  - ", file=sys.stderr)
        return 2
    state = Path(settings.state_dir)
    state.mkdir(parents=True, exist_ok=True, mode=0o700)
    settings_file = state / "settings.json"
    settings.save(settings_file)
    command = hub_command(settings)
    print(
        f"Starting the course hub at http://{settings.ip}:{settings.port}/ for "
        f"{len(settings.learners)} learner(s) and {len(settings.instructors)} instructor(s); "
        f"state in {state} (Ctrl-C stops it)",
        flush=True,
    )
    os.chdir(state)
    os.execve(command[0], command, {**os.environ, "MMCOURSE_HUB_SETTINGS": str(settings_file)})
