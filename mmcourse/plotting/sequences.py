"""Figures of lessons 04-08: vector norms, embedding maps, the token sequence a VLM reads, accuracy
by object
count, attention overlays."""

from __future__ import annotations

from collections.abc import Mapping, Sequence

import matplotlib.pyplot as plt
import numpy as np
from matplotlib.figure import Figure

from .style import GROUP_COLORS, _hwc, _wrap

__all__ = [
    "TOKEN_KIND_COLORS",
    "accuracy_by_count",
    "attention_overlays",
    "embedding_map",
    "token_sequence",
    "vector_norms",
]


TOKEN_KIND_COLORS = {"image": "#56B4E9", "prompt": "#F0E442", "answer": "#009E73", "pad": "#DDDDDD"}


def vector_norms(groups: Mapping[str, Sequence[float]], title: str = "") -> Figure:
    """Histograms of vector lengths, one per named group (e.g. word embeddings vs image tokens), on
    a log axis."""
    fig, ax = plt.subplots(figsize=(6.0, 3.0))
    values = {name: np.asarray(v, dtype=float) for name, v in groups.items()}
    low = min(v.min() for v in values.values())
    high = max(v.max() for v in values.values())
    bins = np.geomspace(max(low, 1e-6) * 0.9, high * 1.1, 40)
    for i, (name, v) in enumerate(values.items()):
        ax.hist(
            v,
            bins=bins,
            alpha=0.6,
            color=GROUP_COLORS[i % len(GROUP_COLORS)],
            label=f"{name} (median {np.median(v):.3g})",
        )
    ax.set_xscale("log")
    ax.set_xlabel("vector length (L2 norm)")
    ax.set_ylabel("count")
    ax.legend(fontsize=8)
    if title:
        ax.set_title(title, fontsize=10)
    fig.tight_layout()
    return fig


def embedding_map(
    points,
    labels: Sequence[str],
    groups: Sequence[str],
    title: str = "",
    colors: Mapping[str, object] | None = None,
) -> Figure:
    """2-D points (n, 2) coloured by group (`colors`: a group's matplotlib color); points of the
    group "word" are
    black crosses labelled with their text."""
    points = np.asarray(points.detach().cpu() if hasattr(points, "detach") else points, dtype=float)
    fig, ax = plt.subplots(figsize=(7.6, 4.6))
    for i, group in enumerate(dict.fromkeys(groups)):
        idx = [k for k, g in enumerate(groups) if g == group]
        color = (
            "k"
            if group == "word"
            else (colors or {}).get(group, GROUP_COLORS[i % len(GROUP_COLORS)])
        )
        ax.scatter(
            points[idx, 0],
            points[idx, 1],
            s=26 if group == "word" else 18,
            color=color,
            label=group,
            alpha=0.85,
            marker="x" if group == "word" else "o",
            edgecolors="none" if group != "word" else None,
        )
        if group == "word":
            for k in idx:
                ax.annotate(
                    labels[k], points[k], fontsize=7, xytext=(2, 2), textcoords="offset points"
                )
    # off the points
    ax.legend(fontsize=8, loc="center left", bbox_to_anchor=(1.0, 0.5), frameon=False)
    ax.set_xticks([])
    ax.set_yticks([])
    if title:
        ax.set_title(title, fontsize=10)
    fig.tight_layout()
    return fig


def token_sequence(
    tokens: Sequence[str],
    kinds: Sequence[str],
    attention_mask: Sequence[int],
    labels: Sequence[str],
    title: str = "",
) -> Figure:
    """The sequence the language model reads, one column per position: the token (coloured by kind:
    image,
    prompt, answer, pad), its attention-mask value and its label (a word, or -100)."""
    n = len(tokens)
    if not len(kinds) == len(attention_mask) == len(labels) == n:
        raise ValueError(
            "tokens, kinds, attention_mask and labels must have one entry per position."
        )
    fig, ax = plt.subplots(figsize=(max(6.0, 0.42 * n + 1.4), 2.3))
    rows = (
        ("token", tokens),
        ("attention_mask", [str(int(m)) for m in attention_mask]),
        ("labels", labels),
    )
    for r, (name, values) in enumerate(rows):
        y = 2 - r
        ax.text(-0.7, y, name, ha="right", va="center", fontsize=8)
        for x, (value, kind) in enumerate(zip(values, kinds)):
            face = (
                TOKEN_KIND_COLORS.get(kind, "w")
                if r == 0
                else ("#F5F5F5" if value in ("0", "-100") else "w")
            )
            ax.add_patch(
                plt.Rectangle(
                    (x - 0.45, y - 0.4), 0.9, 0.8, facecolor=face, edgecolor="#888888", lw=0.6
                )
            )
            ax.text(
                x,
                y,
                value,
                ha="center",
                va="center",
                fontsize=6.5,
                rotation=90 if len(value) > 4 else 0,
            )
    handles = [
        plt.Rectangle((0, 0), 1, 1, facecolor=c, edgecolor="#888888")
        for c in TOKEN_KIND_COLORS.values()
    ]
    ax.legend(
        handles,
        list(TOKEN_KIND_COLORS),
        ncol=4,
        fontsize=7,
        loc="lower center",
        bbox_to_anchor=(0.5, 1.0),
        frameon=False,
    )
    ax.set_xlim(-0.6, n - 0.4)
    ax.set_ylim(-0.6, 2.6)
    ax.axis("off")
    if title:
        ax.set_title(title, fontsize=10, pad=22)
    fig.tight_layout()
    return fig


def accuracy_by_count(
    table: Mapping[str, Mapping[int, float]],
    chance: float | None = None,
    title: str = "",
    xlabel: str = "objects in the scene",
) -> Figure:
    """Accuracy (0-1) against the number of objects, one line per model; chance as a dashed line."""
    fig, ax = plt.subplots(figsize=(5.2, 3.2))
    for i, (name, row) in enumerate(table.items()):
        counts = sorted(row)
        ax.plot(
            counts,
            [row[c] for c in counts],
            marker="o",
            color=GROUP_COLORS[i % len(GROUP_COLORS)],
            label=name,
        )
        for c in counts:
            ax.annotate(
                f"{row[c]:.0%}",
                (c, row[c]),
                xytext=(0, 6),
                textcoords="offset points",
                ha="center",
                fontsize=7,
            )
    if chance is not None:
        ax.axhline(chance, color="k", ls="--", lw=1, label=f"chance {chance:.0%}")
    ax.set_xticks(sorted({c for row in table.values() for c in row}))
    ax.set_ylim(0, 1.1)
    ax.set_xlabel(xlabel)
    ax.set_ylabel("accuracy")
    ax.legend(fontsize=8)
    if title:
        ax.set_title(title, fontsize=10)
    fig.tight_layout()
    return fig


def attention_overlays(
    images: Sequence,
    maps,
    titles: Sequence[str] | None = None,
    ncols: int = 6,
    alpha: float = 0.6,
    cmap: str = "inferno",
) -> Figure:
    """Each image with a (H, W) map over it, one flat square per cell; colors scaled per panel, min
    to max."""
    n = len(maps)
    images = list(images) if len(images) == n else list(images) * n
    ncols = min(ncols, n)
    nrows = -(-n // ncols)
    fig, axes = plt.subplots(nrows, ncols, figsize=(1.9 * ncols, 2.05 * nrows), squeeze=False)
    for ax in axes.flat:
        ax.axis("off")
    for i, ax in enumerate(axes.flat[:n]):
        pixels = _hwc(images[i])
        grid = np.asarray(
            maps[i].detach().cpu() if hasattr(maps[i], "detach") else maps[i], dtype=float
        )
        height, width = pixels.shape[:2]
        ax.imshow(pixels, interpolation="nearest")
        ax.imshow(
            grid,
            cmap=cmap,
            alpha=alpha,
            interpolation="nearest",
            extent=(-0.5, width - 0.5, height - 0.5, -0.5),
        )
        if titles is not None:
            ax.set_title(_wrap(titles[i], 26), fontsize=7)
    fig.tight_layout()
    return fig
