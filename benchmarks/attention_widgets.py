"""Latency of lesson 08's widgets: from moving a control to new map data, and to the new picture.

Target (the widgets' issue): median <= 50 ms from a control change to new map data on 2 CPU cores,
for the shipped tiny models. Prints Markdown tables:

1. **Python side** (the kernel's work). Per widget and control, the median and p90 over `--changes`
  changes
   (default 30) of the time from `control.value = ...` to (a) the new map returned by `current_map`
   ("map data") and (b) the end of the whole `update()` (PNG drawn, digest written; the observer
   runs synchronously, so this is when the assignment returns). Plus **first render** (constructing
   the widget, its first forward included, the model already loaded), **new scene** (one forward)
   and an **upload** (a 640 x 480 PNG decoded, center-cropped by `widgets.fit_image`, one forward).
   For the shipped models and for a random-weight CLIP with ViT-B/32's vision tower (224 px, patch
   32, hidden 768, 12 layers, 12 heads, MLP 3072; shapes-clip's small text tower), with torch's
   default thread count and with one thread.
2. **Browser side**: JupyterLab on loopback (as tests/test_browser.py starts it), Debian's Chromium
  driven by
   Playwright, a notebook showing `AttentionExplorer("shapes-clip")`. First render: run-all to the
   image on screen (kernel imports and model load included). Then the layer slider moved by the
   keyboard `--presses` times (default 20); in the page (performance.now()) the time from the
   keydown to the digest text changing, to the image's src changing and to the new image loaded: the
   kernel's work plus the widget messages both ways and the PNG decode.

Numbers are wall-clock on a shared machine (the load average is printed): read medians, not single
runs.

Run: `.venv/bin/python benchmarks/attention_widgets.py [--skip-browser] [--changes 30] [--presses
20]`.
"""

from __future__ import annotations

import argparse
import datetime
import io
import itertools
import os
import shutil
import statistics
import sys
import tempfile
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
import torch
from PIL import Image, ImageDraw
from timing import median_time

from mmcourse import checkpoints, vlm, widgets

ROOT = Path(__file__).resolve().parents[1]
TARGET_MS = 50.0
COLORS, SHAPES = (
    ("red", "green", "blue", "yellow", "purple", "orange"),
    ("circle", "square", "triangle", "diamond"),
)


# --- 1. Python side
# ----------------------------------------------------------------------------------------------


@dataclass
class Row:
    model: str
    widget: str
    change: str
    threads: int
    # to current_map returned; empty: not separable
    map_s: list[float] = field(default_factory=list)
    total_s: list[float] = field(default_factory=list)  # to update() done (PNG drawn)


def p90(values: Sequence[float]) -> float:
    return (
        statistics.quantiles(values, n=10, method="inclusive")[-1] if len(values) > 1 else values[0]
    )


def ms(values: Sequence[float]) -> str:
    return (
        f"{statistics.median(values) * 1e3:8.1f} | {p90(values) * 1e3:8.1f}"
        if values
        else f"{'-':>8} | {'-':>8}"
    )


def time_changes(
    widget, control, values: Sequence, before: Callable[[], None] | None = None
) -> tuple[list, list]:
    """Set `control.value` to each of `values`; per change, seconds to the map (current_map
    returned) and to the end of the synchronous observer (update() done). `before` runs untimed
    before each change (e.g. to
    empty a cache)."""
    stamps: list[float] = []
    compute = widget.current_map

    def stamped():
        grid_map = compute()
        stamps.append(time.perf_counter())
        return grid_map

    widget.current_map = stamped  # the instance attribute shadows the method that update() calls
    map_s, total_s = [], []
    try:
        for value in values:
            if before is not None:
                before()
            stamps.clear()
            start = time.perf_counter()
            control.value = value
            end = time.perf_counter()
            if not stamps:
                raise AssertionError(
                    f"setting {control.description} to {value!r} drew nothing (no change?)"
                )
            map_s.append(stamps[0] - start)
            total_s.append(end - start)
    finally:
        del widget.current_map
    return map_s, total_s


def cycle_from(options: Sequence, current, n: int) -> list:
    """n values from `options`, each different from the one before it, starting after `current`."""
    options = list(options)
    start = options.index(current)
    return [options[(start + 1 + i) % len(options)] for i in range(n)]


def photos(n: int, size: tuple[int, int] = (640, 480)) -> list[tuple[dict, ...]]:
    """n different photo-sized PNG uploads (a FileUpload value each): noise with a disk, like a
    camera picture."""
    rng, now = np.random.default_rng(0), datetime.datetime.now(datetime.timezone.utc)
    uploads = []
    for i in range(n):
        image = Image.fromarray(rng.integers(0, 256, (size[1], size[0], 3), dtype=np.uint8))
        ImageDraw.Draw(image).ellipse((200 + i, 120, 440 + i, 360), fill=(213, 94, 0))
        buffer = io.BytesIO()
        image.save(buffer, format="PNG")
        content = buffer.getvalue()
        uploads.append(
            (
                {
                    "name": f"photo{i}.png",
                    "type": "image/png",
                    "size": len(content),
                    "content": memoryview(content),
                    "last_modified": now,
                },
            )
        )
    return uploads


def first_renders(make: Callable[[int], object], n: int) -> list[float]:
    """Seconds to construct n widgets (scenes 1..n): each its own first forward, the model already
    loaded."""
    return [median_time(lambda: make(seed), 1) for seed in range(1, n + 1)]


def explorer_rows(name: str, clip, threads: int, n: int, heavy: int) -> list[Row]:
    def row(change: str, control, values: Sequence, before=None) -> Row:
        return Row(
            name,
            "AttentionExplorer",
            change,
            threads,
            *time_changes(explorer, control, values, before),
        )

    first = first_renders(lambda seed: widgets.AttentionExplorer(clip, seed=seed), heavy)
    explorer = widgets.AttentionExplorer(clip, seed=0)
    explorer.layer.value = 0  # warm-up: the first draw after construction
    rng, queries = np.random.default_rng(0), [explorer.query.value]
    while len(queries) <= n:  # random tokens, [CLS] included, each different from the one before
        query = int(rng.integers(0, explorer.query.max + 1))
        queries += [query] if query != queries[-1] else []

    def rollout_off_and_forgotten():
        explorer.rollout.value = False
        explorer.rollout_cache.clear()

    rows = [
        Row(name, "AttentionExplorer", "first render (1 forward)", threads, [], first),
        row(
            "layer slider",
            explorer.layer,
            cycle_from(range(explorer.layer.max + 1), explorer.layer.value, n),
        ),
        row(
            "head / fusion",
            explorer.head,
            cycle_from(explorer.head.options, explorer.head.value, n),
        ),
    ]
    explorer.head.value = "mean"
    rows.append(row("query slider / click", explorer.query, queries[1:]))
    explorer.layer.value = explorer.layer.max
    rows.append(
        row(
            "rollout on (all layers, recomputed)",
            explorer.rollout,
            [True] * n,
            rollout_off_and_forgotten,
        )
    )
    explorer.rollout.value = False
    # new to this widget's cache: one forward each
    seeds = [10_000 + threads * 1000 + i for i in range(heavy)]
    rows.append(row("new scene (1 forward)", explorer.picker.seed, seeds))
    rows.append(row("upload 640x480 PNG (1 forward)", explorer.picker.upload, photos(heavy)))
    return rows


def text_rows(name: str, clip, tokenizer, threads: int, n: int, heavy: int) -> list[Row]:
    def row(change: str, control, values: Sequence, before=None) -> Row:
        return Row(
            name, "TextPatchMap", change, threads, *time_changes(text_map, control, values, before)
        )

    first = first_renders(lambda seed: widgets.TextPatchMap(clip, tokenizer, seed=seed), heavy)
    text_map = widgets.TextPatchMap(clip, tokenizer, seed=0)
    phrases = [f"{color} {shape}" for color, shape in itertools.product(COLORS, SHAPES)]
    phrases = (phrases * (n // len(phrases) + 1))[1 : n + 1]  # never "red circle", the start
    return [
        Row(name, "TextPatchMap", "first render (2 forwards)", threads, [], first),
        row("phrase (new: 1 text forward)", text_map.phrase, phrases, text_map.text_cache.clear),
        row(
            "new scene (1 forward)",
            text_map.picker.seed,
            [20_000 + threads * 1000 + i for i in range(heavy)],
        ),
    ]


def cross_modal_rows(model, threads: int, n: int, heavy: int) -> list[Row]:
    name, widget = "shapes-vlm-patches", "CrossModalAttention"

    def row(change: str, control, values: Sequence) -> Row:
        return Row(name, widget, change, threads, *time_changes(looking, control, values))

    first = first_renders(lambda seed: widgets.CrossModalAttention(model, seed=seed), heavy)
    # a caption: ~20 tokens to pick from
    looking = widgets.CrossModalAttention(model, seed=5, question="")
    questions = [
        f"Is there a {color} {shape}?" for color, shape in itertools.product(COLORS, SHAPES)
    ][:heavy]
    seeds = [30_000 + threads * 1000 + i for i in range(heavy)]
    return [
        Row(name, widget, "first render (generate + 1 forward)", threads, [], first),
        row("token", looking.token, cycle_from(looking.token.options, looking.token.value, n)),
        row("LM layer", looking.layer, cycle_from(looking.layer.options, looking.layer.value, n)),
        row("new question (generate + 1 forward)", looking.question, questions),
        row("new scene (generate + 1 forward)", looking.picker.seed, seeds),
    ]


def vit_b32_sized(clip):
    """A random-weight CLIPModel with ViT-B/32's vision tower and shapes-clip's small text tower (no
    download)."""
    from transformers import CLIPConfig, CLIPModel

    torch.manual_seed(0)
    config = CLIPConfig(
        text_config=clip.config.text_config.to_dict(),
        vision_config=dict(
            image_size=224,
            patch_size=32,
            hidden_size=768,
            num_hidden_layers=12,
            num_attention_heads=12,
            intermediate_size=3072,
        ),
        projection_dim=512,
    )
    return CLIPModel(config).eval()


def print_table(rows: list[Row]) -> None:
    print(
        "| model | widget | change | threads | map data median ms | p90 ms | to PNG median ms | "
        "p90 ms | n |"
    )
    print("|---|---|---|---:|---:|---:|---:|---:|---:|")
    for r in rows:
        cells = (r.model, r.widget, r.change, r.threads, ms(r.map_s), ms(r.total_s), len(r.total_s))
        print("| " + " | ".join(map(str, cells)) + " |")


def python_side(changes: int) -> None:
    from transformers import AutoTokenizer, CLIPModel

    default_threads = torch.get_num_threads()
    thread_counts = sorted({default_threads, 1}, reverse=True)
    heavy = max(5, changes // 3)  # changes that run a model: fewer
    clip = checkpoints.from_pretrained(CLIPModel, "shapes-clip").eval()
    tokenizer = checkpoints.from_pretrained(AutoTokenizer, "shapes-clip")
    model = vlm.load("shapes-vlm-patches", "cpu")
    big = vit_b32_sized(clip)
    print(
        "\n## 1. Python side: control change -> map data, -> PNG drawn (median and p90 of "
        f"{changes} changes; "
        f"{heavy} for the changes that run a model)\n"
    )
    print(
        f"CPU cores: {os.cpu_count()}, torch default threads: {default_threads}, device cpu, "
        f"load average at start: {os.getloadavg()[0]:.1f}\n"
    )
    rows = []
    for threads in thread_counts:
        torch.set_num_threads(threads)
        rows += explorer_rows("shapes-clip", clip, threads, changes, heavy)
        rows += text_rows("shapes-clip", clip, tokenizer, threads, changes, heavy)
        rows += cross_modal_rows(model, threads, changes, heavy)
    for threads in thread_counts:
        torch.set_num_threads(threads)
        rows += explorer_rows("ViT-B/32-sized (random)", big, threads, changes, heavy)
        rows += text_rows("ViT-B/32-sized (random)", big, tokenizer, threads, changes, heavy)
    torch.set_num_threads(default_threads)
    print_table(rows)
    print(f"\nload average at end: {os.getloadavg()[0]:.1f}\n")
    # not a control that slices a cache
    model_runs = ("first render", "new scene", "new question", "upload")
    for threads in thread_counts:
        controls = [
            r
            for r in rows
            if r.model.startswith("shapes")
            and r.threads == threads
            and not any(k in r.change for k in model_runs)
        ]
        worst = max(controls, key=lambda r: statistics.median(r.map_s))
        worst_ms, worst_png_ms = (
            statistics.median(worst.map_s) * 1e3,
            statistics.median(worst.total_s) * 1e3,
        )
        print(
            f"target: median control change -> map data <= {TARGET_MS:.0f} ms on the shipped "
            f"models, {threads} "
            f"thread(s): {'met' if worst_ms <= TARGET_MS else 'NOT met'} (slowest: {worst.widget} "
            f"{worst.change}, "
            f"{worst_ms:.1f} ms; to PNG {worst_png_ms:.1f} ms)"
        )


# --- 2. browser side
# -----------------------------------------------------------------------------------------------

NOTEBOOK_CELL = """\
import time
start = time.perf_counter()
import sys
import torch
from mmcourse import widgets
{setup}explorer = widgets.AttentionExplorer({model}, seed=3)
print(f"kernel: imports + model load + first render {time.perf_counter() - start:.2f} s, "
      f"{torch.get_num_threads()} torch threads")
explorer
"""
IMAGE = "img.mmcourse-attention-image, .mmcourse-attention-image img"
WATCH = """([image, digest]) => {
    const img = document.querySelector(image), text = document.querySelector(digest);
    window.__lat = {key: null, digest: null, src: null, loaded: null};
    document.addEventListener('keydown', () => {
        window.__lat = {key: performance.now(), digest: null, src: null, loaded: null};
    }, true);
    new MutationObserver(() => { if (window.__lat.key !== null && window.__lat.digest === null)
        window.__lat.digest = performance.now(); })
        .observe(text, {subtree: true, childList: true, characterData: true});
    new MutationObserver(() => { if (window.__lat.key !== null && window.__lat.src === null)
        window.__lat.src = performance.now(); })
        .observe(img, {attributes: true, attributeFilter: ['src']});
    img.addEventListener('load', () => {
        if (window.__lat.src !== null && window.__lat.loaded === null)
            window.__lat.loaded = performance.now(); });
}"""


def chromium_path() -> str:
    sys.path.insert(0, str(ROOT / "tests"))
    from conftest import CHROMIUM_PATHS

    path = next((p for p in CHROMIUM_PATHS if Path(p).exists()), None) or shutil.which("chromium")
    if path is None:
        raise SystemExit(
            "needs Chromium: apt-get install -y --no-install-recommends chromium fonts-dejavu-core"
        )
    return path


BROWSER_MODELS = (  # name, setup code, model expression, patches per side
    ("shapes-clip", "", '"shapes-clip"', 9),
    (
        "ViT-B/32-sized (random)",
        "sys.path.insert(0, {here!r})\nfrom attention_widgets import vit_b32_sized\n"
        "from mmcourse import checkpoints\nfrom transformers import CLIPModel\n",
        'vit_b32_sized(checkpoints.from_pretrained(CLIPModel, "shapes-clip"))',
        7,
    ),
)


def browser_side(presses: int) -> None:
    import nbformat
    from playwright.sync_api import sync_playwright

    executable = chromium_path()
    from conftest import jupyter_lab
    from test_browser import CHROMIUM_ARGS

    print(
        f"\n## 2. Browser side: JupyterLab + Chromium, AttentionExplorer, {presses} layer-slider "
        "key presses\n"
    )
    with tempfile.TemporaryDirectory() as folder:
        tmp = Path(folder)
        root = tmp / "course"
        root.mkdir()
        for i, (name, setup, model, side) in enumerate(BROWSER_MODELS):
            # the kernel imports vit_b32_sized from this file
            here = str(Path(__file__).resolve().parent)
            cell = NOTEBOOK_CELL.replace("{setup}", setup.format(here=here)).replace(
                "{model}", model
            )
            book = nbformat.v4.new_notebook(cells=[nbformat.v4.new_code_cell(cell)])
            book.metadata["kernelspec"] = {
                "name": "python3",
                "display_name": "Python 3",
                "language": "python",
            }
            nbformat.write(book, root / f"latency{i}.ipynb")
        token = "mmcourse-bench"
        with jupyter_lab(root, tmp / "jupyter", token) as base, sync_playwright() as pw:
            for i, (name, _, _, side) in enumerate(BROWSER_MODELS):
                print(f"\n### {name}\n")
                context = pw.chromium.launch_persistent_context(
                    str(tmp / f"profile{i}"),
                    executable_path=executable,
                    headless=True,
                    args=CHROMIUM_ARGS,
                )
                try:
                    measure_in_page(
                        context.new_page(), base, token, presses, f"latency{i}.ipynb", side
                    )
                finally:
                    context.close()


def measure_in_page(page, base: str, token: str, presses: int, notebook: str, side: int) -> None:
    page.goto(f"{base}/lab/tree/{notebook}?token={token}&reset", timeout=60_000)
    # the toolbar says idle before the kernel exists:
    # wait for the status bar's "| Idle" with a kernel
    page.wait_for_function(
        """() => [...document.querySelectorAll('.jp-StatusBar-TextItem')].some(e =>
             e.textContent.trim().endsWith('| Idle') && !e.textContent.includes('No Kernel'))""",
        timeout=90_000,
    )
    page.evaluate(
        "() => { window.__run = performance.now(); "
        "window.jupyterapp.commands.execute('notebook:run-all-cells'); }"
    )
    first_ms = page.wait_for_function(
        """([image]) => {
            const img = document.querySelector(image);
            const d = document.querySelector('.mmcourse-digest');
            return img && img.complete && img.naturalWidth > 0
                && d && d.textContent.includes('peak')
                ? performance.now() - window.__run : false; }""",
        arg=[IMAGE],
        timeout=120_000,
    ).json_value()
    kernel_line = (
        page.locator(".jp-OutputArea-output", has_text="kernel:").first.inner_text().strip()
    )
    box = page.locator(IMAGE).first.bounding_box()

    readout = page.locator(".mmcourse-layer .widget-readout").first
    page.evaluate(WATCH, [IMAGE, ".mmcourse-digest"])
    page.locator(".mmcourse-layer .noUi-handle").first.focus()
    low, high, value = 0, int(readout.inner_text()), int(readout.inner_text())
    direction = "ArrowLeft"
    to_digest, to_src, to_loaded = [], [], []
    for _ in range(presses):
        if value == low:
            direction = "ArrowRight"
        elif value == high:
            direction = "ArrowLeft"
        page.keyboard.press(direction)
        value += 1 if direction == "ArrowRight" else -1
        page.wait_for_function(
            "() => window.__lat.digest !== null && window.__lat.loaded !== null", timeout=30_000
        )
        lat = page.evaluate("() => window.__lat")
        to_digest.append((lat["digest"] - lat["key"]) / 1e3)
        to_src.append((lat["src"] - lat["key"]) / 1e3)
        to_loaded.append((lat["loaded"] - lat["key"]) / 1e3)
        page.wait_for_timeout(100)  # let the caption's message land before the next press
        if int(readout.inner_text()) != value:
            raise AssertionError(f"the layer slider reads {readout.inner_text()}, expected {value}")

    # a click on the image picks the patch under it (ipyevents' dataX/dataY, in the PNG's pixels)
    page.locator(IMAGE).first.click(position={"x": 100, "y": 40})
    scale = widgets.DISPLAY_SIZE / box["width"]  # PNG pixels per CSS pixel
    row, col = widgets.cell_of_click(100 * scale, 40 * scale, side)
    expected_query = 1 + row * side + col
    page.wait_for_function(
        "([q]) => document.querySelector('.mmcourse-query .widget-readout').textContent.trim() == "
        "q",
        arg=[str(expected_query)],
        timeout=10_000,
    )
    errors = page.locator(
        ".jp-RenderedText[data-mime-type='application/vnd.jupyter.stderr']"
    ).count()

    print("| browser measurement | median ms | p90 ms | n |")
    print("|---|---:|---:|---:|")
    print(
        f"| run-all -> first image on screen (imports, model load, first render) | {first_ms:8.0f} "
        "| | 1 |"
    )
    for label, values in (
        ("key press -> digest text changed", to_digest),
        ("key press -> image src changed", to_src),
        ("key press -> new image loaded", to_loaded),
    ):
        print(f"| {label} | {ms(values)} | {len(values)} |")
    print(
        f"\n{kernel_line}; image shown at {box['width']:.0f} x {box['height']:.0f} CSS px; a click "
        "at (100, 40) "
        f"of it picked query {expected_query} as expected; stderr outputs: {errors}; "
        f"load average {os.getloadavg()[0]:.1f}"
    )


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument(
        "--changes", type=int, default=30, help="control changes per row (Python side)"
    )
    parser.add_argument(
        "--presses", type=int, default=20, help="layer-slider key presses (browser side)"
    )
    parser.add_argument("--skip-browser", action="store_true", help="only the Python side")
    args = parser.parse_args()
    os.environ.setdefault("HF_HUB_OFFLINE", "1")
    python_side(args.changes)
    if not args.skip_browser:
        browser_side(args.presses)


if __name__ == "__main__":
    main()
