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
