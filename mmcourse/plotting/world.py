"""Figures of lesson 00: scenes in a grid, the patch grid over a scene, the course's pipeline,
answer counts."""

from __future__ import annotations

from collections import Counter
from collections.abc import Mapping, Sequence

import matplotlib.pyplot as plt
import numpy as np
from matplotlib.figure import Figure
from matplotlib.patches import FancyArrowPatch, FancyBboxPatch
from PIL import Image

from .style import _wrap

__all__ = ["PIPELINE", "answer_counts", "pipeline_diagram", "show_patch_grid", "show_scenes"]


def show_scenes(
    images: Sequence[Image.Image],
    titles: Sequence[str] | None = None,
    ncols: int = 4,
    scale: float = 2.4,
) -> Figure:
    """A grid of images, each with its (wrapped) title underneath."""
    n = len(images)
    nrows = -(-n // ncols)
    fig, axes = plt.subplots(
        nrows, ncols, figsize=(ncols * scale, nrows * (scale + 0.9)), squeeze=False
    )
    for ax in axes.flat:
        ax.axis("off")
    for i, image in enumerate(images):
        ax = axes.flat[i]
        ax.imshow(image, interpolation="nearest")
        if titles is not None:
            ax.set_title(_wrap(titles[i], 30), fontsize=8, y=-0.02, va="top")
    fig.tight_layout()
    return fig


def show_patch_grid(image: Image.Image, patch_size: int, cells: int = 3) -> Figure:
    """An image with its ViT patch grid (thin lines) and the scene's 3x3 cells (thick lines)."""
    size = image.size[0]
    fig, ax = plt.subplots(figsize=(4, 4))
    ax.imshow(image, interpolation="nearest", extent=(0, size, size, 0))
    for x in range(0, size + 1, patch_size):
        ax.axhline(x, color="0.5", lw=0.5)
        ax.axvline(x, color="0.5", lw=0.5)
    for i in range(cells + 1):
        ax.axhline(i * size / cells, color="k", lw=2)
        ax.axvline(i * size / cells, color="k", lw=2)
    ax.set_title(
        f"{size} px, {patch_size} px patches: {size // patch_size}x{size // patch_size} patches",
        fontsize=9,
    )
    ax.set_xticks([])
    ax.set_yticks([])
    fig.tight_layout()
    return fig


PIPELINE = (
    ("image", "72x72 px\n(B, 3, H, W)", "#E69F00"),
    ("CLIP vision\nencoder", "patch tokens\n(B, N, D_v)", "#56B4E9"),
    ("projection", "(B, N, D_lm)", "#009E73"),
    ("Llama\nlanguage model", "image tokens +\nquestion tokens", "#CC79A7"),
    ("answer", '"top left"', "#D55E00"),
)


def pipeline_diagram(stages: Sequence[tuple[str, str, str]] = PIPELINE) -> Figure:
    """Boxes and arrows: the stages of the vision-language model the course builds, with their
    shapes."""
    fig, ax = plt.subplots(figsize=(11, 2.4))
    ax.set_xlim(0, len(stages) * 2.2)
    ax.set_ylim(0, 2)
    ax.axis("off")
    for i, (name, shape, color) in enumerate(stages):
        x = 0.2 + i * 2.2
        ax.add_patch(
            FancyBboxPatch(
                (x, 0.8), 1.7, 0.9, boxstyle="round,pad=0.05", fc=color, ec="k", alpha=0.85
            )
        )
        ax.text(x + 0.85, 1.25, name, ha="center", va="center", fontsize=10, weight="bold")
        ax.text(x + 0.85, 0.45, shape, ha="center", va="center", fontsize=8, family="monospace")
        if i:
            ax.add_patch(
                FancyArrowPatch(
                    (x - 0.45, 1.25), (x - 0.05, 1.25), arrowstyle="-|>", mutation_scale=15
                )
            )
    ax.text(
        0.2 + 3 * 2.2 + 0.85, 1.9, 'question: "Where is the red circle?"', ha="center", fontsize=8
    )
    fig.tight_layout()
    return fig


def answer_counts(counts: Mapping[str, Counter], title: str = "") -> Figure:
    """One bar chart per question kind: how often each answer occurs."""
    kinds = list(counts)
    fig, axes = plt.subplots(1, len(kinds), figsize=(2.6 * len(kinds), 2.6), squeeze=False)
    for ax, kind in zip(axes.flat, kinds):
        answers = sorted(counts[kind])
        values = np.array([counts[kind][a] for a in answers], dtype=float)
        ax.bar(range(len(answers)), values / max(values.sum(), 1), color="#0072B2")
        ax.set_xticks(range(len(answers)), answers, rotation=60, ha="right", fontsize=7)
        ax.set_title(kind, fontsize=9)
        ax.set_ylim(0, 1)
    axes.flat[0].set_ylabel("share of answers")
    if title:
        fig.suptitle(title, fontsize=10)
    fig.tight_layout()
    return fig


# --- lesson 01: preprocessing and patches
# ----------------------------------------------------------------
