"""Figures of lesson 06 (decoding): time per generated token, one next-token distribution with the
top-k and top-p cut-offs, the beams of a beam search. Each takes data (numbers, token texts), never
a model."""

from __future__ import annotations

from collections.abc import Mapping, Sequence

import matplotlib.pyplot as plt
import numpy as np
from matplotlib.figure import Figure

from .style import GROUP_COLORS

__all__ = ["beam_search_tree", "next_token_cutoffs", "step_times_plot", "top_p_count"]


def step_times_plot(
    curves: Mapping[str, Sequence[float]], first_position: int = 0, title: str = ""
) -> Figure:
    """Milliseconds per generated token against the position it is generated at, one curve per
    name (e.g. "with KV cache": seconds per step)."""
    fig, ax = plt.subplots(figsize=(6.4, 3.2))
    for i, (name, seconds) in enumerate(curves.items()):
        ms = 1000 * np.asarray(seconds, dtype=float)
        positions = first_position + np.arange(len(ms))
        ax.plot(positions, ms, color=GROUP_COLORS[i % len(GROUP_COLORS)], lw=1.5, label=name)
    ax.set_xlabel("position of the token being generated")
    ax.set_ylabel("ms per step")
    ax.set_ylim(bottom=0)
    ax.grid(alpha=0.3)
    ax.legend(fontsize=8)
    if title:
        ax.set_title(title, fontsize=10)
    fig.tight_layout()
    return fig


def top_p_count(probs: Sequence[float], top_p: float) -> int:
    """How many tokens top-p (nucleus) sampling keeps: the fewest most likely ones whose
    probabilities sum to at least `top_p`."""
    ranked = np.sort(np.asarray(probs, dtype=float))[::-1]
    return int(min(np.searchsorted(np.cumsum(ranked), top_p - 1e-12) + 1, len(ranked)))


def next_token_cutoffs(
    probs: Sequence[float],
    tokens: Sequence[str],
    top_k: int,
    top_p: float,
    shown: int = 20,
    title: str = "",
) -> Figure:
    """One next-token distribution, most likely first (the `shown` first tokens), with the
    cumulative probability and where top-k and top-p cut it: what is right of a line can never be
    sampled."""
    probs = np.asarray(probs, dtype=float)
    order = np.argsort(-probs)[:shown]
    p, labels = probs[order], [tokens[i] for i in order]
    kept_p = top_p_count(probs, top_p)
    fig, ax = plt.subplots(figsize=(7.2, 3.4))
    x = np.arange(len(p))
    ax.bar(x, p, color=GROUP_COLORS[1], label="p(next token)")
    ax.plot(x, np.cumsum(p), color="k", lw=1, marker=".", label="cumulative")
    for cut, name, color in ((top_k, f"top_k={top_k}", 0), (kept_p, f"top_p={top_p}", 2)):
        label = f"{name}: keeps {cut}"
        ax.axvline(cut - 0.5, color=GROUP_COLORS[color], ls="--", lw=1.5, label=label)
    ax.set_xticks(x, labels, rotation=60, fontsize=8)
    ax.set_ylim(0, 1.05)
    ax.set_ylabel("probability")
    ax.legend(fontsize=8, loc="center right")
    if title:
        ax.set_title(title, fontsize=10)
    fig.tight_layout()
    return fig


def beam_search_tree(
    steps: Sequence[Sequence[tuple[str, float, int]]], prompt: str = "", title: str = ""
) -> Figure:
    """The beams kept at each step: `steps[t]` lists (new token's text, summed log-probability,
    index of the parent beam in step t - 1), best first. Edges join each beam to the beam it
    extends; the final best beam's path is drawn bold."""
    fig, ax = plt.subplots(figsize=(1.9 * (len(steps) + 1), 0.9 * max(len(s) for s in steps) + 1.2))
    ax.text(0, 0, prompt or "start", ha="center", va="center", fontsize=8,
            bbox=dict(boxstyle="round", fc="#EEEEEE", ec="0.5"))  # fmt: skip
    best = {(len(steps), 0)}  # (column, row) of the beams on the best path
    row = 0
    for t in range(len(steps) - 1, -1, -1):
        best.add((t + 1, row))
        row = steps[t][row][2]
    for t, beams in enumerate(steps, start=1):
        for r, (text, logprob, parent) in enumerate(beams):
            on_path = (t, r) in best
            ax.plot([t - 1, t], [-max(parent, 0), -r], color="k" if on_path else "0.6",
                    lw=2.2 if on_path else 1, zorder=1)  # fmt: skip
            ax.text(t, -r, f"{text}\n{logprob:.2f}", ha="center", va="center", fontsize=8, zorder=2,
                    bbox=dict(boxstyle="round", fc=GROUP_COLORS[2] if on_path else "white",
                              ec="0.4", alpha=0.9))  # fmt: skip
    ax.set_xlim(-0.6, len(steps) + 0.6)
    ax.set_ylim(-max(len(s) for s in steps) + 0.4, 0.6)
    names = ["prompt", *[f"step {t}" for t in range(1, len(steps) + 1)]]
    ax.set_xticks(range(len(steps) + 1), names)
    ax.set_yticks([])
    for side in ("left", "right", "top"):
        ax.spines[side].set_visible(False)
    ax.set_title(title or "beam search: kept beams, summed log-probability", fontsize=10)
    fig.tight_layout()
    return fig
