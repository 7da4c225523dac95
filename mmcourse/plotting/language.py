"""Figures of lesson 04b (the language-model primer): a causal attention matrix over the tokens,
and rotary-embedding scores over query and key positions; and accuracy against training-set size
(lesson 02's probes)."""

from __future__ import annotations

from collections.abc import Mapping, Sequence

import matplotlib.pyplot as plt
import numpy as np
from matplotlib.figure import Figure

from .style import GROUP_COLORS

__all__ = ["accuracy_curves", "causal_attention", "rope_scores"]


def causal_attention(weights, tokens: Sequence[str], title: str = "") -> Figure:
    """A (T, T) attention matrix, queries down and keys across, each labeled by its token; the
    exact zeros of the masked future are drawn white."""
    w = np.asarray(weights.detach().cpu() if hasattr(weights, "detach") else weights, dtype=float)
    fig, ax = plt.subplots(figsize=(5.2, 4.6))
    shown = np.ma.masked_where(w == 0, w)
    image = ax.imshow(shown, cmap="viridis", vmin=0, vmax=max(w.max(), 1e-9))
    ax.set_xticks(range(len(tokens)), tokens, rotation=90, fontsize=8)
    ax.set_yticks(range(len(tokens)), tokens, fontsize=8)
    ax.set_xlabel("key (read from)")
    ax.set_ylabel("query (reading)")
    ax.set_facecolor("white")
    fig.colorbar(image, ax=ax, fraction=0.046, label="attention weight (white: exactly 0)")
    ax.set_title(title, fontsize=10)
    fig.tight_layout()
    return fig


def rope_scores(scores, by_offset: Mapping[str, Sequence[float]], title: str = "") -> Figure:
    """Left: a (T, T) map of query-key scores over query position i and key position j. Right: the
    same score against the offset i - j, one curve per starting position (curves that lie on top of
    each other: the score depends only on the offset)."""
    s = np.asarray(scores.detach().cpu() if hasattr(scores, "detach") else scores, dtype=float)
    fig, (left, right) = plt.subplots(1, 2, figsize=(10.0, 3.8))
    image = left.imshow(s, cmap="coolwarm", vmin=-abs(s).max(), vmax=abs(s).max())
    left.set_xlabel("key position j")
    left.set_ylabel("query position i")
    left.set_title("q·k after rotation, by position", fontsize=10)
    fig.colorbar(image, ax=left, fraction=0.046)
    styles = ("-", "--", ":", "-.")
    for n, (name, values) in enumerate(by_offset.items()):
        right.plot(
            np.arange(len(values)),
            values,
            styles[n % len(styles)],
            color=GROUP_COLORS[n % len(GROUP_COLORS)],
            linewidth=2.5 - 0.4 * n,
            label=name,
        )
    right.set_xlabel("offset i - j (how far back the key is)")
    right.set_ylabel("score")
    right.set_title("the same score against the offset", fontsize=10)
    right.legend(fontsize=8)
    fig.suptitle(title, fontsize=11)
    fig.tight_layout()
    return fig


def accuracy_curves(
    sizes: Sequence[int],
    curves: Mapping[str, Sequence[float]],
    chance: float | None = None,
    xlabel: str = "training examples",
    title: str = "",
) -> Figure:
    """Learning curves: one line of accuracies (0-1) per named model against the training-set sizes,
    on a log axis; chance as a dashed line."""
    fig, ax = plt.subplots(figsize=(6.0, 3.4))
    for n, (name, values) in enumerate(curves.items()):
        ax.plot(sizes, values, "o-", color=GROUP_COLORS[n % len(GROUP_COLORS)], label=name)
        ax.annotate(
            f"{values[-1]:.0%}",
            (sizes[-1], values[-1]),
            xytext=(5, -3),
            textcoords="offset points",
            fontsize=8,
        )
    if chance is not None:
        ax.axhline(chance, color="k", ls="--", lw=1, label=f"chance {chance:.0%}")
    ax.set_xscale("log")
    ax.set_xticks(list(sizes), [f"{s:,}" for s in sizes])
    ax.minorticks_off()
    ax.set_ylim(0, 1.05)
    ax.set_xlabel(xlabel)
    ax.set_ylabel("accuracy")
    ax.legend(fontsize=8, loc="lower right")
    ax.set_title(title, fontsize=10)
    fig.tight_layout()
    return fig
