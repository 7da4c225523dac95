"""Lesson 00 in a real browser: JupyterLab serves it, Chromium runs every cell, nothing fails."""

import os
import shutil
from pathlib import Path

import nbformat
import pytest
from conftest import ROOT, jupyter_lab

CHROMIUM_ARGS = [
    "--no-sandbox",
    "--disable-gpu",
    "--disable-quic",
    "--no-first-run",
    "--disable-background-networking",
    "--disable-component-update",
    "--disable-sync",
    "--disable-dev-shm-usage",
]


@pytest.fixture
def lab(tmp_path):
    """A JupyterLab server on loopback over a temporary copy of the lessons."""
    root = tmp_path / "course"
    shutil.copytree(ROOT / "notebooks", root)
    token = "mmcourse-browser"
    with jupyter_lab(root, tmp_path / "jupyter", token) as base:
        yield base, token, root


def open_and_run_all(page, base: str, token: str, notebook: str, ready: str) -> None:
    """Open `notebook` in JupyterLab, wait for its kernel, run every cell, and wait until `ready`
    (JS) holds."""
    page.goto(f"{base}/lab/tree/{notebook}?token={token}&reset", timeout=60_000)
    # the toolbar says idle before the kernel exists:
    # wait for the status bar's "| Idle" with a kernel
    page.wait_for_function(
        """() => [...document.querySelectorAll('.jp-StatusBar-TextItem')].some(e =>
             e.textContent.trim().endsWith('| Idle') && !e.textContent.includes('No Kernel'))""",
        timeout=90_000,
    )
    page.evaluate("window.jupyterapp.commands.execute('notebook:run-all-cells')")
    page.wait_for_function(
        f"""() => [...document.querySelectorAll('.jp-InputArea-prompt')]
                 .every(e => !e.textContent.includes('*')) && ({ready})""",
        timeout=120_000,
    )


def browser(pw, chromium: str, profile):
    return pw.chromium.launch_persistent_context(
        str(profile), executable_path=chromium, headless=True, args=CHROMIUM_ARGS
    )


def test_lesson_00_runs_in_jupyterlab(chromium, lab, tmp_path):
    sync_api = pytest.importorskip(
        "playwright.sync_api", reason="pip install playwright (in the test extras)"
    )
    base, token, root = lab
    with sync_api.sync_playwright() as pw:
        context = browser(pw, chromium, tmp_path / "profile")
        try:
            page = context.new_page()
            open_and_run_all(
                page,
                base,
                token,
                "00_welcome.ipynb",
                "document.querySelectorAll('.jp-OutputArea-output img').length >= 4",
            )
            assert (
                page.locator(
                    ".jp-RenderedText[data-mime-type='application/vnd.jupyter.error']"
                ).count()
                == 0
            )
            page.locator(".jp-OutputArea-output img").first.screenshot(
                path=str(tmp_path / "pipeline.png")
            )
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


ARTIFACTS = Path(os.environ.get("MMCOURSE_ARTIFACTS", ROOT / "runs" / "test-artifacts")) / "browser"


def shown_digest(page, widget: str) -> str:
    return page.locator(f"{widget} .mmcourse-digest").inner_text().strip()


def wait_for_digest(page, widget: str, expected, seconds: float = 30) -> str:
    """Poll the digest the page shows until it describes `expected` (a (H, W) map); fail with the
    last one shown.

    Polling, not "wait for a change": ten key presses give ten updates, and the first change is not
    the last."""
    import time

    from mmcourse import widgets

    deadline = time.monotonic() + seconds
    while True:
        digest = shown_digest(page, widget)
        if widgets.digest_matches(digest, expected):
            return digest
        if time.monotonic() > deadline:
            raise AssertionError(
                f"{widget} shows {digest!r}, not the library's map {widgets.map_digest(expected)!r}"
            )
        page.wait_for_timeout(100)


def test_lesson_08_widgets_show_the_library_maps_in_a_real_browser(chromium, lab, tmp_path):
    """Run lesson 08 in JupyterLab; move the layer and query sliders, click a patch, type a phrase:
    each time the digest the page shows must describe the map `mmcourse.attention` computes for that
    setting,
    here, in the test."""
    sync_api = pytest.importorskip(
        "playwright.sync_api", reason="pip install playwright (in the test extras)"
    )
    from transformers import AutoTokenizer, CLIPModel

    from mmcourse import attention, checkpoints, data, vlm, widgets

    clip = checkpoints.from_pretrained(CLIPModel, "shapes-clip").eval()
    tokenizer = checkpoints.from_pretrained(AutoTokenizer, "shapes-clip")
    explorer_scene = data.random_scene(3).render()  # the lesson's AttentionExplorer(clip, seed=3)
    attentions = attention.vision_attentions(clip, explorer_scene)
    text_scene = data.random_scene(
        11, n_objects=1
    ).render()  # TextPatchMap(clip, tokenizer, seed=11): one object
    # CrossModalAttention(vqa_model, seed=5, ...)
    looked = attention.cross_modal_attention(
        vlm.load("shapes-vlm-patches"), data.random_scene(5).render(), "Where is the red circle?"
    )
    base, token, root = lab
    ARTIFACTS.mkdir(parents=True, exist_ok=True)
    explorer, text_map, looking = ".mmcourse-explorer", ".mmcourse-textmap", ".mmcourse-crossmodal"
    with sync_api.sync_playwright() as pw:
        context = browser(pw, chromium, tmp_path / "profile")
        try:
            page = context.new_page()
            page.set_viewport_size({"width": 1400, "height": 1000})
            open_and_run_all(
                page,
                base,
                token,
                "08_attention.ipynb",
                " && ".join(
                    f"(document.querySelector('{w} .mmcourse-digest') || "
                    f"{{}}).textContent?.includes('peak')"
                    for w in (explorer, text_map, looking)
                ),
            )
            assert (
                page.locator(
                    ".jp-RenderedText[data-mime-type='application/vnd.jupyter.error']"
                ).count()
                == 0
            )

            # after run-all: last layer, mean of heads, query [CLS]
            wait_for_digest(page, explorer, attention.query_map(attentions, 3, "mean", 0))
            page.locator(explorer).screenshot(path=str(ARTIFACTS / "explorer-layer3-cls.png"))

            # layer 3 -> 2
            page.locator(f"{explorer} .mmcourse-layer .noUi-handle").press("ArrowLeft")
            wait_for_digest(page, explorer, attention.query_map(attentions, 2, "mean", 0))

            for _ in range(10):  # query [CLS] -> patch 10, i.e. (1, 1)
                page.locator(f"{explorer} .mmcourse-query .noUi-handle").press("ArrowRight")
            wait_for_digest(page, explorer, attention.query_map(attentions, 2, "mean", 10))

            # the middle of patch (7, 5)
            x, y = (5.5 * widgets.DISPLAY_SIZE / 9, 7.5 * widgets.DISPLAY_SIZE / 9)
            page.locator(f"{explorer} .mmcourse-attention-image").click(position={"x": x, "y": y})
            wait_for_digest(
                page, explorer, attention.query_map(attentions, 2, "mean", 1 + 7 * 9 + 5)
            )
            page.locator(explorer).screenshot(path=str(ARTIFACTS / "explorer-layer2-patch-7-5.png"))

            wait_for_digest(
                page,
                text_map,
                attention.text_patch_similarity(clip, tokenizer, text_scene, "red circle"),
            )
            phrase = page.locator(f"{text_map} .mmcourse-phrase input")
            phrase.fill("blue square")
            phrase.press("Enter")
            wait_for_digest(
                page,
                text_map,
                attention.text_patch_similarity(clip, tokenizer, text_scene, "blue square"),
            )
            page.locator(text_map).screenshot(path=str(ARTIFACTS / "text-patch-blue-square.png"))
            # the answer's first token, mean of the LM layers
            wait_for_digest(page, looking, looked.maps[0].mean(0))
            page.locator(looking).screenshot(
                path=str(ARTIFACTS / "cross-modal-where-is-the-red-circle.png")
            )
        finally:
            context.close()
    for name in (
        "explorer-layer3-cls",
        "explorer-layer2-patch-7-5",
        "text-patch-blue-square",
        "cross-modal-where-is-the-red-circle",
    ):
        assert (ARTIFACTS / f"{name}.png").stat().st_size > 5_000
