"""Figures of lesson 03: accuracies beside chance, similarity matrices, loss curves, temperature,
zero-shot
examples."""

from __future__ import annotations

from collections.abc import Mapping, Sequence

import matplotlib.pyplot as plt
import numpy as np
from matplotlib.figure import Figure

from .style import GROUP_COLORS, _hwc, _wrap

__all__ = [
    "accuracy_bars",
    "loss_curve",
    "similarity_matrices",
    "softmax_temperatures",
    "zero_shot_examples",
]


def accuracy_bars(
    scores: Mapping[str, float],
    chance: float | Mapping[str, float] | None = None,
    title: str = "",
    ylabel: str = "accuracy",
) -> Figure:
    """One bar per named score (0-1), its value on top; chance as a dashed line (one value, or one
    per bar)."""
    names = list(scores)
    fig, ax = plt.subplots(figsize=(1.3 * len(names) + 1.6, 3.0))
    colors = [GROUP_COLORS[i % len(GROUP_COLORS)] for i in range(len(names))]
    bars = ax.bar(range(len(names)), [scores[n] for n in names], color=colors)
    for bar, name in zip(bars, names):
        ax.text(
            bar.get_x() + bar.get_width() / 2,
            scores[name] + 0.02,
            f"{scores[name]:.0%}",
            ha="center",
            fontsize=9,
        )
    if isinstance(chance, Mapping):
        for i, name in enumerate([n for n in names if n in chance]):
            ax.plot(
                [names.index(name) - 0.45, names.index(name) + 0.45],
                [chance[name]] * 2,
                color="k",
                ls="--",
                lw=1,
                label="chance" if i == 0 else None,
            )
        ax.legend(fontsize=8, loc="upper left", bbox_to_anchor=(1.0, 1.0), frameon=False)
    elif chance is not None:
        ax.axhline(chance, color="k", ls="--", lw=1)
        ax.text(len(names) - 0.5, chance + 0.02, f"chance {chance:.0%}", ha="right", fontsize=8)
    ax.set_xticks(range(len(names)), [_wrap(n, 16) for n in names], fontsize=8)
    ax.set_ylim(0, 1.1)
    ax.set_ylabel(ylabel)
    if title:
        ax.set_title(title, fontsize=10)
    fig.tight_layout()
    return fig


# --- lesson 03: contrastive learning
# ---------------------------------------------------------------------


def similarity_matrices(
    matrices: Sequence,
    titles: Sequence[str],
    images: Sequence,
    texts: Sequence[str],
    label: str = "cosine similarity",
    limit: float | None = 1.0,
) -> Figure:
    """Image x text similarity matrices (B, B) side by side; images label the rows, texts the
    columns.

    The color scale runs from -limit to limit (cosines: 1); `limit=None` fits it to the largest
    value.
    """
    from matplotlib.offsetbox import AnnotationBbox, OffsetImage

    mats = [
        np.asarray(m.detach().cpu() if hasattr(m, "detach") else m, dtype=float) for m in matrices
    ]
    b = mats[0].shape[0]
    limit = limit if limit is not None else max(float(np.abs(m).max()) for m in mats)
    fig, axes = plt.subplots(
        1, len(mats), figsize=(0.62 * b * len(mats) + 2.2, 0.62 * b + 2.6), squeeze=False
    )
    for ax, m, title in zip(axes.flat, mats, titles):
        shown = ax.imshow(m, cmap="RdBu_r", vmin=-limit, vmax=limit)
        for i in range(m.shape[0]):
            for j in range(m.shape[1]):
                ax.text(
                    j,
                    i,
                    f"{m[i, j]:.2f}",
                    ha="center",
                    va="center",
                    fontsize=6,
                    color="w" if abs(m[i, j]) > 0.6 * limit else "k",
                )
            ax.add_patch(plt.Rectangle((i - 0.5, i - 0.5), 1, 1, fill=False, ec="k", lw=1.2))
        ax.set_xticks(range(m.shape[1]), [_wrap(t, 22) for t in texts], rotation=90, fontsize=6)
        ax.set_yticks(range(m.shape[0]), [""] * m.shape[0])
        ax.tick_params(axis="y", length=0, pad=26)
        for i, image in enumerate(images):
            thumb = OffsetImage(_hwc(image), zoom=0.45)
            ax.add_artist(
                AnnotationBbox(
                    thumb,
                    (-0.5, i),
                    xybox=(-19, 0),
                    xycoords="data",
                    boxcoords="offset points",
                    frameon=False,
                    annotation_clip=False,
                )
            )
        ax.set_title(title, fontsize=10)
    fig.colorbar(shown, ax=list(axes.flat), shrink=0.7, label=label)
    return fig


def loss_curve(
    losses: Sequence[float],
    chance: float | None = None,
    smooth: int = 10,
    title: str = "training loss",
) -> Figure:
    """The loss of each step (thin) and its running mean over `smooth` steps (thick), with chance as
    a dashed line."""
    losses = np.asarray(losses, dtype=float)
    steps = np.arange(1, len(losses) + 1)
    fig, ax = plt.subplots(figsize=(6.0, 3.2))
    ax.plot(steps, losses, color="#0072B2", lw=0.8, alpha=0.4, label="each step")
    if len(losses) >= smooth:
        mean = np.convolve(losses, np.ones(smooth) / smooth, mode="valid")
        ax.plot(steps[smooth - 1 :], mean, color="#0072B2", lw=2, label=f"mean of {smooth} steps")
    if chance is not None:
        ax.axhline(chance, color="k", ls="--", lw=1, label=f"chance {chance:.2f}")
    ax.set_xlabel("step")
    ax.set_ylabel("loss")
    ax.set_ylim(0, max(losses.max(), chance or 0) * 1.08)
    ax.legend(fontsize=8)
    ax.set_title(title, fontsize=10)
    fig.tight_layout()
    return fig


def softmax_temperatures(
    similarities,
    temperatures: Sequence[float],
    labels: Sequence[str],
    correct: int | None = None,
    titles: Sequence[str] | None = None,
) -> Figure:
    """softmax(similarity / T) of one row at several temperatures: one bar chart per T; the correct
    bar highlighted."""
    sims = np.asarray(
        similarities.detach().cpu() if hasattr(similarities, "detach") else similarities,
        dtype=float,
    )
    fig, axes = plt.subplots(
        1, len(temperatures), figsize=(2.7 * len(temperatures), 3.3), sharey=True, squeeze=False
    )
    for k, (ax, t) in enumerate(zip(axes.flat, temperatures)):
        z = sims / t
        p = np.exp(z - z.max())
        p /= p.sum()
        colors = ["#D55E00" if i == correct else "#0072B2" for i in range(len(sims))]
        ax.bar(range(len(sims)), p, color=colors)
        ax.set_title(titles[k] if titles is not None else f"T = {t:.2g}", fontsize=10)
        ax.set_xticks(
            range(len(sims)), [_wrap(label, 20) for label in labels], rotation=90, fontsize=6
        )
        ax.set_ylim(0, 1)
    axes.flat[0].set_ylabel("softmax probability")
    fig.tight_layout()
    return fig


def zero_shot_examples(
    images: Sequence,
    top_texts: Sequence[Sequence[str]],
    top_probs,
    truths: Sequence[str] | None = None,
) -> Figure:
    """Each image beside its best class prompts and their probabilities (correct prompt in
    orange)."""
    probs = np.asarray(
        top_probs.detach().cpu() if hasattr(top_probs, "detach") else top_probs, dtype=float
    )
    n = len(images)
    fig, axes = plt.subplots(
        n, 2, figsize=(6.4, 1.25 * n), squeeze=False, gridspec_kw={"width_ratios": [1, 3.2]}
    )
    for i in range(n):
        axes[i, 0].imshow(_hwc(images[i]), interpolation="nearest")
        axes[i, 0].axis("off")
        k = len(top_texts[i])
        colors = [
            "#D55E00" if truths is not None and t == truths[i] else "#0072B2" for t in top_texts[i]
        ]
        axes[i, 1].barh(range(k), probs[i][:k], color=colors)
        for j in range(k):
            axes[i, 1].text(
                min(probs[i][j], 0.86) + 0.02, j, f"{probs[i][j]:.2f}", va="center", fontsize=7
            )
        axes[i, 1].set_yticks(range(k), top_texts[i], fontsize=7)
        axes[i, 1].invert_yaxis()
        axes[i, 1].set_xlim(0, 1)
        axes[i, 1].tick_params(axis="x", labelsize=7)
    axes[-1, 1].set_xlabel("probability (softmax over all class prompts)", fontsize=8)
    fig.tight_layout()
    return fig


# --- lessons 04-07: the multimodal model
# --------------------------------------------------------------------
