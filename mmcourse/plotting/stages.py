"""Figures of lesson 09: accuracy per question kind for several models, and image tokens read back
as words, cell by cell."""

from __future__ import annotations

from collections.abc import Mapping, Sequence

import matplotlib.pyplot as plt
from matplotlib.figure import Figure

from .style import GROUP_COLORS, _hwc

__all__ = ["cells_read_back", "kind_bars"]


def kind_bars(
    scores: Mapping[str, Mapping[str, float]],
    kinds: Sequence[str],
    baselines: Mapping[str, float] | None = None,
    title: str = "",
) -> Figure:
    """Grouped bars: per question kind, one bar per model (`scores[model][kind]`, 0-1); the best
    baseline of each kind as a dashed line over its group."""
    models = list(scores)
    width = 0.8 / len(models)
    fig, ax = plt.subplots(figsize=(1.4 * len(kinds) + 2.4, 3.2))
    for m, model in enumerate(models):
        xs = [k + (m - (len(models) - 1) / 2) * width for k in range(len(kinds))]
        values = [scores[model].get(kind, 0.0) for kind in kinds]
        ax.bar(xs, values, width, color=GROUP_COLORS[m % len(GROUP_COLORS)], label=model)
    if baselines:
        for k, kind in enumerate(kinds):
            if kind in baselines:
                ax.plot([k - 0.42, k + 0.42], [baselines[kind]] * 2, color="k", ls="--", lw=1)
        ax.plot([], [], color="k", ls="--", lw=1, label="best baseline")
    ax.set_xticks(range(len(kinds)), kinds, fontsize=9)
    ax.set_ylim(0, 1.05)
    ax.set_ylabel("exact match")
    ax.legend(fontsize=8, loc="upper left", bbox_to_anchor=(1.0, 1.0), frameon=False)
    if title:
        ax.set_title(title, fontsize=10)
    fig.tight_layout()
    return fig


def cells_read_back(
    images: Sequence, readings: Sequence[Sequence[str]], titles: Sequence[str] | None = None
) -> Figure:
    """Each image with a 3 x 3 grid of texts over it: what its image token of each cell reads as
    (e.g. "red circle top left"); a text shown in red where it is wrong (prefix "!")."""
    fig, axes = plt.subplots(1, len(images), figsize=(3.2 * len(images), 3.6), squeeze=False)
    for ax, image, cells, i in zip(axes[0], images, readings, range(len(images))):
        array = _hwc(image)
        size = array.shape[0]
        ax.imshow(array, interpolation="nearest", alpha=0.55)
        ax.axis("off")
        for c, text in enumerate(cells):
            wrong = text.startswith("!")
            ax.text(
                (c % 3 + 0.5) * size / 3,
                (c // 3 + 0.5) * size / 3,
                text.lstrip("!").replace(" ", "\n", 1),
                ha="center",
                va="center",
                fontsize=7,
                color="#D55E00" if wrong else "#222222",
                weight="bold" if wrong else "normal",
            )
        if titles is not None:
            ax.set_title(titles[i], fontsize=9)
    fig.tight_layout()
    return fig
