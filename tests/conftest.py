"""Shared fixtures. Tests that need a system package skip when it is absent, unless CI demands it."""

from __future__ import annotations

import os
import shutil
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parent.parent
REQUIRE_SYSTEM = os.environ.get("MMCOURSE_REQUIRE_SYSTEM") == "1"
CHROMIUM_PATHS = ("/usr/lib/chromium/chromium", "/usr/bin/chromium", "/usr/bin/chromium-browser")


def need_system(what: str, found: bool, install: str) -> None:
    """Skip (or fail under MMCOURSE_REQUIRE_SYSTEM=1) when a system package is missing."""
    if found:
        return
    message = f"needs {what}; install it with: {install}"
    if REQUIRE_SYSTEM:
        pytest.fail(f"MMCOURSE_REQUIRE_SYSTEM=1 and this test {message}")
    pytest.skip(message)


@pytest.fixture
def chromium() -> str:
    path = next((p for p in CHROMIUM_PATHS if Path(p).exists()), None) or shutil.which("chromium")
    need_system("Chromium", path is not None,
                "apt-get install -y --no-install-recommends chromium fonts-dejavu-core")  # fmt: skip
    return path


@pytest.fixture
def course_root() -> Path:
    return ROOT


def free_port() -> int:
    import socket

    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def jupyter_env(tmp: Path) -> dict:
    """An environment whose Jupyter config, runtime and settings all live in `tmp` (no user state, no news)."""
    import json
    import sys

    env = dict(os.environ)
    for var, sub in [("JUPYTER_CONFIG_DIR", "config"), ("JUPYTER_RUNTIME_DIR", "runtime"),
                     ("JUPYTER_DATA_DIR", "data"), ("JUPYTERLAB_SETTINGS_DIR", "settings"),
                     ("JUPYTERLAB_WORKSPACES_DIR", "workspaces"), ("IPYTHONDIR", "ipython"),
                     ("MPLCONFIGDIR", "mpl")]:  # fmt: skip
        (tmp / sub).mkdir(parents=True, exist_ok=True)
        env[var] = str(tmp / sub)
    notification = tmp / "settings" / "@jupyterlab" / "apputils-extension"
    notification.mkdir(parents=True, exist_ok=True)
    (notification / "notification.jupyterlab-settings").write_text(
        json.dumps({"fetchNews": "false", "checkForUpdates": False})
    )
    # the venv's own kernel, whatever a user's machine has registered
    env["PATH"] = str(Path(sys.executable).parent) + os.pathsep + env.get("PATH", "")
    return env


def lab_server_args(port: int, token: str) -> list[str]:
    return [
        "--no-browser", "--allow-root", "--ServerApp.ip=127.0.0.1", f"--ServerApp.port={port}",
        "--ServerApp.port_retries=0", f"--IdentityProvider.token={token}", "--LabApp.news_url=None",
        "--LabApp.check_for_updates_class=jupyterlab.NeverCheckForUpdate", "--expose-app-in-browser",
    ]  # fmt: skip


def wait_for_server(url: str, process, seconds: float = 60) -> None:
    import time
    import urllib.request

    deadline = time.monotonic() + seconds
    while time.monotonic() < deadline:
        if process.poll() is not None:
            raise AssertionError(f"the Jupyter server exited with code {process.returncode}")
        try:
            with urllib.request.urlopen(url, timeout=2) as response:
                if response.status == 200:
                    return
        except OSError:
            time.sleep(0.3)
    raise AssertionError(f"the Jupyter server did not answer {url} within {seconds} s")
