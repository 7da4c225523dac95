"""Lesson 00 in a real browser: JupyterLab serves it, Chromium runs every cell, nothing fails."""

import shutil
import subprocess
import sys

import nbformat
import pytest

from conftest import ROOT, free_port, jupyter_env, lab_server_args, wait_for_server

CHROMIUM_ARGS = ["--no-sandbox", "--disable-gpu", "--disable-quic", "--no-first-run", "--disable-background-networking",
                 "--disable-component-update", "--disable-sync", "--disable-dev-shm-usage"]  # fmt: skip


@pytest.fixture
def lab(tmp_path):
    """A JupyterLab server on loopback over a temporary copy of the lessons."""
    root = tmp_path / "course"
    shutil.copytree(ROOT / "notebooks", root)
    port, token = free_port(), "mmcourse-browser"
    process = subprocess.Popen(
        [sys.executable, "-m", "jupyter", "lab", f"--ServerApp.root_dir={root}", *lab_server_args(port, token)],
        env=jupyter_env(tmp_path / "jupyter"), stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL,
    )  # fmt: skip
    base = f"http://127.0.0.1:{port}"
    try:
        wait_for_server(f"{base}/api/status?token={token}", process)
        yield base, token, root
    finally:
        process.terminate()
        process.wait(timeout=30)


def test_lesson_00_runs_in_jupyterlab(chromium, lab, tmp_path):
    sync_api = pytest.importorskip("playwright.sync_api", reason="pip install playwright (in the test extras)")
    base, token, root = lab
    with sync_api.sync_playwright() as pw:
        context = pw.chromium.launch_persistent_context(
            str(tmp_path / "profile"), executable_path=chromium, headless=True, args=CHROMIUM_ARGS
        )
        try:
            page = context.new_page()
            page.goto(f"{base}/lab/tree/00_welcome.ipynb?token={token}&reset", timeout=60_000)
            # the toolbar says idle before the kernel exists: wait for the status bar's "| Idle" with a kernel
            page.wait_for_function(
                """() => [...document.querySelectorAll('.jp-StatusBar-TextItem')].some(
                     e => e.textContent.trim().endsWith('| Idle') && !e.textContent.includes('No Kernel'))""",
                timeout=90_000,
            )
            page.evaluate("window.jupyterapp.commands.execute('notebook:run-all-cells')")
            page.wait_for_function(
                """() => [...document.querySelectorAll('.jp-InputArea-prompt')].every(
                     e => !e.textContent.includes('*'))
                   && document.querySelectorAll('.jp-OutputArea-output img').length >= 4""",
                timeout=90_000,
            )
            assert page.locator(".jp-RenderedText[data-mime-type='application/vnd.jupyter.error']").count() == 0
            page.locator(".jp-OutputArea-output img").first.screenshot(path=str(tmp_path / "pipeline.png"))
            page.evaluate("window.jupyterapp.commands.execute('docmanager:save')")
            page.wait_for_timeout(1000)
        finally:
            context.close()
    book = nbformat.read(root / "00_welcome.ipynb", as_version=4)
    outputs = [o for c in book.cells if c.cell_type == "code" for o in c.outputs]
    assert not [o for o in outputs if o.output_type == "error"]
    text = "".join(o.get("text", "") for o in outputs)
    assert "round trip OK" in text and "balanced: no baseline gets far above chance" in text
    assert (tmp_path / "pipeline.png").stat().st_size > 1000
