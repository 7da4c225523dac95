"""A learner on a real JupyterHub, in a real browser: log in through the hub's login page, open
exercise 03 in their own server, save it, run the hand-in cell and see the receipt; then open the
exchange's own page (hub OAuth) and see only their own hand-ins.

The hub, its proxy and the exchange service come from `hub_harness` (a test authenticator and a
local spawner instead of the recipe's; everything on loopback, in a temporary folder). The receipt
is checked against what the test itself measures: the hub user name, the exercise, the sha256 of
the file on the learner's disk at the moment of the hand-in, and the service's own list of that
learner's submissions.
"""

from __future__ import annotations

import contextlib
import hashlib
import json
import re
import time
import warnings
from pathlib import Path
from urllib.parse import urlparse

import nbformat
import pytest
from conftest import ROOT
from hub_harness import require_hub_tools, running_hub
from test_browser import ARTIFACTS, browser

pytestmark = [
    pytest.mark.slow,
    pytest.mark.system("chromium"),
    pytest.mark.system("configurable-http-proxy"),
]

EXERCISE = "ex03"
HAND_IN_CELL = (
    "from mmcourse.exchange import submit\n"
    'submit("ex03")  # hands in this notebook\'s saved file; save it first (Ctrl-S)'
)
#: The status bar says "| Idle" only once the notebook has a kernel (see test_browser.py).
KERNEL_IDLE = """() => [...document.querySelectorAll('.jp-StatusBar-TextItem')].some(e =>
    e.textContent.trim().endsWith('| Idle') && !e.textContent.includes('No Kernel'))"""


def quiet_lab_settings(home: Path) -> None:
    """JupyterLab user settings in the learner's home, as tests/conftest.py's `jupyter_env` writes
    them for a local server: no news, and every cell kept in the page (no virtual scrolling), so
    the hand-in cell is there to find at the end of the notebook."""
    settings = home / ".jupyter" / "lab" / "user-settings" / "@jupyterlab"
    for extension, name, value in (
        ("apputils-extension", "notification", {"fetchNews": "false", "checkForUpdates": False}),
        ("notebook-extension", "tracker", {"windowingMode": "none"}),
    ):
        (settings / extension).mkdir(parents=True, exist_ok=True)
        (settings / extension / f"{name}.jupyterlab-settings").write_text(json.dumps(value))


def has_hand_in_cell(path: Path) -> bool:
    book = nbformat.read(path, as_version=4)
    return any(c.cell_type == "code" and f'submit("{EXERCISE}")' in c.source for c in book.cells)


def log_in(page, hub_url: str, user: str) -> None:
    """Through the hub's own login page (the test authenticator takes any password)."""
    page.goto(f"{hub_url}/hub/login", timeout=60_000)
    page.fill("#username_input", user)
    page.fill("#password_input", "any password")
    page.click("#login_submit")


def add_hand_in_cell(page) -> None:
    """As a learner would: select the last cell, insert a cell below it (B), type the hand-in."""
    page.locator(".jp-Notebook .jp-Cell").last.click()
    page.keyboard.press("Escape")  # command mode
    page.keyboard.press("b")
    page.keyboard.press("Enter")  # edit the new cell
    page.keyboard.insert_text(HAND_IN_CELL)  # no auto-closed brackets, as pasting it would be
    page.keyboard.press("Escape")


def save_and_wait(page, path: Path, seconds: float = 30) -> bytes:
    """Ctrl-S, then wait until the file on disk is newly written and the tab is no longer dirty;
    returns the bytes on disk."""
    before = path.stat().st_mtime_ns
    page.locator(".jp-Notebook .jp-Cell").first.click()
    page.keyboard.press("Escape")
    page.keyboard.press("Control+s")
    deadline = time.monotonic() + seconds
    while time.monotonic() < deadline:
        dirty = page.locator(".lm-TabBar-tab.jp-mod-current.jp-mod-dirty").count()
        if path.stat().st_mtime_ns != before and not dirty:
            data = path.read_bytes()
            with contextlib.suppress(ValueError):
                json.loads(data)
                return data
        page.wait_for_timeout(200)
    raise AssertionError(f"Ctrl-S did not save {path} within {seconds} s")


def test_a_learner_logs_in_hands_in_from_the_notebook_and_sees_the_receipt(chromium, tmp_path):
    sync_api = pytest.importorskip(
        "playwright.sync_api", reason="pip install playwright (in the test extras)"
    )
    require_hub_tools()
    with running_hub(tmp_path / "hub") as hub:
        for user in ("alice", "bob"):
            hub.add_user(user, groups=["learners"])
        # bob has handed in already: the page alice sees must not show it
        bob = hub.exchange_call(
            "POST",
            f"api/submissions/{EXERCISE}",
            hub.token("bob"),
            data=(ROOT / "solutions" / "ex03_contrastive.ipynb").read_bytes(),
        )
        assert bob.status_code == 201, bob.text
        bob_sha = bob.json()["sha256"]
        home = hub.homes / "alice"
        quiet_lab_settings(home)
        notebook = home / "workspace" / "ex03_contrastive.ipynb"

        with sync_api.sync_playwright() as pw:
            context = browser(pw, chromium, tmp_path / "profile")
            try:
                page = context.new_page()
                page.set_viewport_size({"width": 1400, "height": 1000})
                log_in(page, hub.url, "alice")
                # the hub starts alice's server, which opens at lesson 00
                page.wait_for_url(re.compile(r"/user/alice/lab"), timeout=180_000)
                page.locator(".lm-TabBar-tabLabel", has_text="00_welcome.ipynb").wait_for(
                    timeout=90_000
                )
                server = hub.start_server("alice")  # already running: its pid and environment
                assert server.home == home and notebook.is_file()

                page.goto(
                    f"{hub.url}/user/alice/lab/tree/workspace/{notebook.name}?reset", timeout=60_000
                )
                page.wait_for_function(KERNEL_IDLE, timeout=90_000)
                added = not has_hand_in_cell(notebook)
                if added:  # until the exercises carry the hand-in cell
                    add_hand_in_cell(page)
                saved = save_and_wait(page, notebook)
                assert has_hand_in_cell(notebook)
                disk_sha = hashlib.sha256(saved).hexdigest()

                cell = page.locator(".jp-CodeCell", has_text=f'submit("{EXERCISE}")').last
                cell.locator(".jp-InputArea-editor").click()
                page.keyboard.press("Control+Enter")  # run it, stay on it
                output = cell.locator(".jp-OutputArea-output")
                output.filter(has_text=re.compile("Received|Not submitted")).first.wait_for(
                    timeout=60_000
                )
                receipt_shown = output.all_inner_texts()
                ARTIFACTS.mkdir(parents=True, exist_ok=True)
                cell.screenshot(path=str(ARTIFACTS / "hub-hand-in-receipt.png"))

                # the exchange's own page: hub OAuth, then only alice's hand-ins
                page.goto(hub.exchange_url, timeout=60_000)
                page.locator("h1", has_text="Hand-ins of alice").wait_for(timeout=30_000)
                assert urlparse(page.url).path == "/services/exchange/"
                page_text = page.locator("body").inner_text()
                page_rows = page.locator("table tr").count() - 1  # minus the header
                page.screenshot(path=str(ARTIFACTS / "hub-exchange-page.png"))

                # someone who is not logged in is sent to the hub's login, not shown anything
                stranger = browser(pw, chromium, tmp_path / "stranger-profile")
                try:
                    stranger_page = stranger.new_page()
                    stranger_page.goto(hub.exchange_url, timeout=60_000)
                    stranger_url = stranger_page.url
                    stranger_text = stranger_page.locator("body").inner_text()
                finally:
                    stranger.close()
            finally:
                context.close()

        text = "\n".join(receipt_shown)
        assert "Not submitted" not in text and "Traceback" not in text, text
        assert f"Received {EXERCISE} from alice" in text, text
        assert f"sha256 {disk_sha}" in text and f"{len(saved)} bytes" in text, text
        assert "(on time)" in text and notebook.name in text, text

        listed = hub.exchange_call("GET", "api/submissions", hub.token("alice"))
        assert listed.status_code == 200, listed.text
        (receipt,) = listed.json()  # exactly one: this one
        assert (receipt["user"], receipt["exercise"], receipt["sha256"], receipt["size"]) == (
            "alice",
            EXERCISE,
            disk_sha,
            len(saved),
        )
        assert receipt["id"] in text
        stored = hub.exchange_call("GET", f"api/submissions/{receipt['id']}", hub.token("alice"))
        assert stored.status_code == 200 and stored.content == saved

        assert disk_sha in page_text and bob_sha not in page_text and "bob" not in page_text
        assert page_rows == 1, page_text
        assert "/hub/login" in stranger_url and disk_sha not in stranger_text, stranger_url
    if added:
        warnings.warn(
            f"the test typed the hand-in cell into {notebook.name}: the exercise lacks it",
            stacklevel=1,
        )
