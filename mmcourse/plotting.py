"""Figures for the lessons. Each takes data (images, texts, counts), never a model, and returns a Figure."""

from __future__ import annotations

from collections import Counter
from collections.abc import Mapping, Sequence

import matplotlib.pyplot as plt
import numpy as np
from matplotlib.figure import Figure
from matplotlib.patches import FancyArrowPatch, FancyBboxPatch
from PIL import Image


def show_scenes(images: Sequence[Image.Image], titles: Sequence[str] | None = None, ncols: int = 4,
                scale: float = 2.4) -> Figure:  # fmt: skip
    """A grid of images, each with its (wrapped) title underneath."""
    n = len(images)
    nrows = -(-n // ncols)
    fig, axes = plt.subplots(nrows, ncols, figsize=(ncols * scale, nrows * (scale + 0.9)), squeeze=False)
    for ax in axes.flat:
        ax.axis("off")
    for i, image in enumerate(images):
        ax = axes.flat[i]
        ax.imshow(image, interpolation="nearest")
        if titles is not None:
            ax.set_title(_wrap(titles[i], 30), fontsize=8, y=-0.02, va="top")
    fig.tight_layout()
    return fig


def _wrap(text: str, width: int) -> str:
    lines, line = [], ""
    for word in text.split():
        if line and len(line) + 1 + len(word) > width:
            lines.append(line)
            line = word
        else:
            line = f"{line} {word}".strip()
    return "\n".join([*lines, line])


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
    ax.set_title(f"{size} px, {patch_size} px patches: {size // patch_size}x{size // patch_size} patches", fontsize=9)
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
    """Boxes and arrows: the stages of the vision-language model the course builds, with their shapes."""
    fig, ax = plt.subplots(figsize=(11, 2.4))
    ax.set_xlim(0, len(stages) * 2.2)
    ax.set_ylim(0, 2)
    ax.axis("off")
    for i, (name, shape, color) in enumerate(stages):
        x = 0.2 + i * 2.2
        ax.add_patch(FancyBboxPatch((x, 0.8), 1.7, 0.9, boxstyle="round,pad=0.05", fc=color, ec="k", alpha=0.85))
        ax.text(x + 0.85, 1.25, name, ha="center", va="center", fontsize=10, weight="bold")
        ax.text(x + 0.85, 0.45, shape, ha="center", va="center", fontsize=8, family="monospace")
        if i:
            ax.add_patch(FancyArrowPatch((x - 0.45, 1.25), (x - 0.05, 1.25), arrowstyle="-|>", mutation_scale=15))
    ax.text(0.2 + 3 * 2.2 + 0.85, 1.9, 'question: "Where is the red circle?"', ha="center", fontsize=8)
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


# --- lesson 01: preprocessing and patches ----------------------------------------------------------------


def _hwc(image) -> np.ndarray:
    """A PIL image, an array (H, W, 3) or a tensor/array (3, H, W) -> an array (H, W, 3) for imshow."""
    array = np.asarray(image.detach().cpu() if hasattr(image, "detach") else image)
    if array.ndim == 3 and array.shape[0] == 3 and array.shape[-1] != 3:
        array = array.transpose(1, 2, 0)  # (3, H, W) -> (H, W, 3)
    return array


def show_sizes(images: Sequence, titles: Sequence[str], scale: float = 1 / 80) -> Figure:
    """Images side by side, drawn at the same pixel scale, so that resizing and cropping are visible."""
    arrays = [_hwc(image) for image in images]
    widths = [a.shape[1] for a in arrays]
    top = max(a.shape[0] for a in arrays)
    fig, axes = plt.subplots(1, len(arrays), figsize=(sum(widths) * scale + 0.6, top * scale + 0.8), squeeze=False,
                             gridspec_kw={"width_ratios": widths})  # fmt: skip
    for ax, array, title in zip(axes.flat, arrays, titles):
        h, w = array.shape[:2]
        ax.imshow(array, extent=(0, w, h, 0))
        ax.set_xlim(0, w)
        ax.set_ylim(top, 0)
        ax.set_title(f"{title}\n{w} x {h} px", fontsize=9)
        ax.set_xticks([])
        ax.set_yticks([])
        for side in ("right", "bottom"):
            ax.spines[side].set_visible(False)
    fig.tight_layout()
    return fig


def show_channels(pixel_values, image=None, names: Sequence[str] = ("red", "green", "blue")) -> Figure:
    """What the model receives: the normalized channels (3, H, W) as heat maps on one color scale, after the image."""
    values = np.asarray(pixel_values.detach().cpu() if hasattr(pixel_values, "detach") else pixel_values, dtype=float)
    panels = 3 + (image is not None)
    fig, axes = plt.subplots(1, panels, figsize=(2.7 * panels + 0.6, 2.9), squeeze=False)
    axes = list(axes.flat)
    if image is not None:
        axes[0].imshow(_hwc(image), interpolation="nearest")
        axes[0].set_title("the image", fontsize=9)
        axes[0].axis("off")
    limit = float(np.abs(values).max())
    for ax, channel, name in zip(axes[-3:], values, names):
        shown = ax.imshow(channel, cmap="RdBu_r", vmin=-limit, vmax=limit, interpolation="nearest")
        ax.set_title(f"{name}: (x - mean) / std\nmean {channel.mean():+.2f}, std {channel.std():.2f}", fontsize=9)
        ax.axis("off")
    fig.colorbar(shown, ax=axes[-3:], shrink=0.8, label="value the model sees")
    return fig


def show_patches(image, patch_size: int, gap: int = 1, label_every: int = 1) -> Figure:
    """The image and the same image cut into its patches, pulled apart, each numbered in reading order."""
    array = _hwc(image)
    size = array.shape[0]
    side = size // patch_size
    spread = side * patch_size + (side - 1) * gap
    canvas = np.full((spread, spread, array.shape[2]), 60, dtype=array.dtype)  # dark gaps between the patches
    for row in range(side):
        for col in range(side):
            patch = array[row * patch_size : (row + 1) * patch_size, col * patch_size : (col + 1) * patch_size]
            y, x = row * (patch_size + gap), col * (patch_size + gap)
            canvas[y : y + patch_size, x : x + patch_size] = patch
    fig, axes = plt.subplots(1, 2, figsize=(8.6, 4.4))
    axes[0].imshow(array, interpolation="nearest")
    axes[0].set_title(f"{size} x {size} px", fontsize=9)
    axes[1].imshow(canvas, interpolation="nearest")
    for n in range(0, side * side, label_every):
        row, col = divmod(n, side)
        axes[1].text(col * (patch_size + gap) - 0.3, row * (patch_size + gap) - 0.3, str(n), fontsize=5.5, va="top",
                     ha="left", color="k",
                     bbox=dict(boxstyle="square,pad=0.05", fc="white", ec="none", alpha=0.6))  # fmt: skip
    axes[1].set_title(f"{side * side} patches of {patch_size} x {patch_size} px, numbered in reading order", fontsize=9)
    for ax in axes:
        ax.axis("off")
    fig.tight_layout()
    return fig


# --- lesson 02: spatial patch features -------------------------------------------------------------------

GROUP_COLORS = ("#D55E00", "#0072B2", "#009E73", "#CC79A7", "#E69F00", "#56B4E9")


def highlight_patches(image, patch_size: int, groups: Mapping[str, Sequence[int]]) -> Figure:
    """The image with its patch grid; the patches of each named group (indices in reading order) outlined."""
    from matplotlib.patches import Rectangle

    array = _hwc(image)
    size = array.shape[0]
    side = size // patch_size
    fig, ax = plt.subplots(figsize=(4.6, 4.6))
    ax.imshow(array, interpolation="nearest", extent=(0, size, size, 0))
    for x in range(0, size + 1, patch_size):
        ax.axhline(x, color="0.6", lw=0.5)
        ax.axvline(x, color="0.6", lw=0.5)
    for (name, indices), color in zip(groups.items(), GROUP_COLORS):
        for k, n in enumerate(indices):
            row, col = divmod(n, side)
            ax.add_patch(Rectangle((col * patch_size + 0.6, row * patch_size + 0.6), patch_size - 1.2, patch_size - 1.2,
                                   fill=False, ec=color, lw=2, label=name if k == 0 else None))  # fmt: skip
            ax.text(col * patch_size + patch_size / 2, row * patch_size + patch_size / 2, str(n), fontsize=6,
                    ha="center", va="center", color="k")  # fmt: skip
    ax.set_xticks([])
    ax.set_yticks([])
    ax.legend(loc="upper center", bbox_to_anchor=(0.5, -0.02), ncol=min(len(groups), 3), fontsize=8, frameon=False)
    ax.set_title(f"{side} x {side} patches; the patches of each object's cell", fontsize=9)
    fig.tight_layout()
    return fig


def pca_patch_images(images: Sequence, colors, ncols: int = 8) -> Figure:
    """Each image above its patch grid painted with colors (B, H, W, 3) in [0, 1], e.g. 3 principal components."""
    colors = np.asarray(colors.detach().cpu() if hasattr(colors, "detach") else colors, dtype=float)
    n = len(images)
    ncols = min(ncols, n)
    nrows = -(-n // ncols)
    fig, axes = plt.subplots(2 * nrows, ncols, figsize=(1.55 * ncols, 3.2 * nrows), squeeze=False)
    for ax in axes.flat:
        ax.axis("off")
    for i in range(n):
        row, col = divmod(i, ncols)
        axes[2 * row, col].imshow(_hwc(images[i]), interpolation="nearest")
        axes[2 * row + 1, col].imshow(np.clip(colors[i], 0, 1), interpolation="nearest")
    axes[0, 0].set_title("scene", fontsize=8, loc="left")
    axes[1, 0].set_title("patches: 3 principal\ncomponents as RGB", fontsize=8, loc="left")
    fig.tight_layout()
    return fig


def similarity_maps(images: Sequence, maps, chosen: Sequence[tuple[int, int, int]] = (),
                    titles: Sequence[str] | None = None, vmin: float = -1.0) -> Figure:  # fmt: skip
    """Each image above its cosine-similarity map (H, W) on the patch grid; `chosen` (image, row, col) boxes queries."""
    from matplotlib.patches import Rectangle

    maps = np.asarray(maps.detach().cpu() if hasattr(maps, "detach") else maps, dtype=float)
    n = len(images)
    fig, axes = plt.subplots(2, n, figsize=(1.9 * n + 1.2, 4.1), squeeze=False)
    for i in range(n):
        axes[0, i].imshow(_hwc(images[i]), interpolation="nearest")
        shown = axes[1, i].imshow(maps[i], cmap="magma", vmin=vmin, vmax=1.0, interpolation="nearest")
        for image_index, row, col in chosen:
            if image_index == i:
                patch = _hwc(images[i]).shape[0] / maps.shape[1]  # pixels per patch
                axes[0, i].add_patch(Rectangle((col * patch - 0.5, row * patch - 0.5), patch, patch, fill=False,
                                               ec="#56B4E9", lw=2.5))  # fmt: skip
                axes[1, i].add_patch(Rectangle((col - 0.5, row - 0.5), 1, 1, fill=False, ec="#56B4E9", lw=2.5))
        if titles is not None:
            axes[0, i].set_title(_wrap(titles[i], 24), fontsize=7)
        for ax in axes[:, i]:
            ax.axis("off")
    fig.colorbar(shown, ax=list(axes[1]), shrink=0.9, label="cosine similarity\nto the chosen patch")
    return fig


def accuracy_bars(scores: Mapping[str, float], chance: float | Mapping[str, float] | None = None, title: str = "",
                  ylabel: str = "accuracy") -> Figure:  # fmt: skip
    """One bar per named score (0-1), its value on top; chance as a dashed line (one value, or one per bar)."""
    names = list(scores)
    fig, ax = plt.subplots(figsize=(1.3 * len(names) + 1.6, 3.0))
    colors = [GROUP_COLORS[i % len(GROUP_COLORS)] for i in range(len(names))]
    bars = ax.bar(range(len(names)), [scores[n] for n in names], color=colors)
    for bar, name in zip(bars, names):
        ax.text(bar.get_x() + bar.get_width() / 2, scores[name] + 0.02, f"{scores[name]:.0%}", ha="center", fontsize=9)
    if isinstance(chance, Mapping):
        for i, name in enumerate([n for n in names if n in chance]):
            ax.plot([names.index(name) - 0.45, names.index(name) + 0.45], [chance[name]] * 2, color="k", ls="--", lw=1,
                    label="chance" if i == 0 else None)  # fmt: skip
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


# --- lesson 03: contrastive learning ---------------------------------------------------------------------


def similarity_matrices(matrices: Sequence, titles: Sequence[str], images: Sequence, texts: Sequence[str],
                        label: str = "cosine similarity", limit: float | None = 1.0) -> Figure:  # fmt: skip
    """Image x text similarity matrices (B, B) side by side; images label the rows, texts the columns.

    The color scale runs from -limit to limit (cosines: 1); `limit=None` fits it to the largest value.
    """
    from matplotlib.offsetbox import AnnotationBbox, OffsetImage

    mats = [np.asarray(m.detach().cpu() if hasattr(m, "detach") else m, dtype=float) for m in matrices]
    b = mats[0].shape[0]
    limit = limit if limit is not None else max(float(np.abs(m).max()) for m in mats)
    fig, axes = plt.subplots(1, len(mats), figsize=(0.62 * b * len(mats) + 2.2, 0.62 * b + 2.6), squeeze=False)
    for k, (ax, m, title) in enumerate(zip(axes.flat, mats, titles)):
        shown = ax.imshow(m, cmap="RdBu_r", vmin=-limit, vmax=limit)
        for i in range(m.shape[0]):
            for j in range(m.shape[1]):
                ax.text(j, i, f"{m[i, j]:.2f}", ha="center", va="center", fontsize=6,
                        color="w" if abs(m[i, j]) > 0.6 * limit else "k")  # fmt: skip
            ax.add_patch(plt.Rectangle((i - 0.5, i - 0.5), 1, 1, fill=False, ec="k", lw=1.2))
        ax.set_xticks(range(m.shape[1]), [_wrap(t, 22) for t in texts], rotation=90, fontsize=6)
        ax.set_yticks(range(m.shape[0]), [""] * m.shape[0])
        ax.tick_params(axis="y", length=0, pad=26)
        for i, image in enumerate(images):
            thumb = OffsetImage(_hwc(image), zoom=0.45)
            ax.add_artist(AnnotationBbox(thumb, (-0.5, i), xybox=(-19, 0), xycoords="data", boxcoords="offset points",
                                         frameon=False, annotation_clip=False))  # fmt: skip
        ax.set_title(title, fontsize=10)
    fig.colorbar(shown, ax=list(axes.flat), shrink=0.7, label=label)
    return fig


def loss_curve(losses: Sequence[float], chance: float | None = None, smooth: int = 10,
               title: str = "training loss") -> Figure:  # fmt: skip
    """The loss of each step (thin) and its running mean over `smooth` steps (thick), with chance as a dashed line."""
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


def softmax_temperatures(similarities, temperatures: Sequence[float], labels: Sequence[str], correct: int | None = None,
                         titles: Sequence[str] | None = None) -> Figure:  # fmt: skip
    """softmax(similarity / T) of one row at several temperatures: one bar chart per T; the correct bar highlighted."""
    sims = np.asarray(similarities.detach().cpu() if hasattr(similarities, "detach") else similarities, dtype=float)
    fig, axes = plt.subplots(1, len(temperatures), figsize=(2.7 * len(temperatures), 3.3), sharey=True, squeeze=False)
    for k, (ax, t) in enumerate(zip(axes.flat, temperatures)):
        z = sims / t
        p = np.exp(z - z.max())
        p /= p.sum()
        colors = ["#D55E00" if i == correct else "#0072B2" for i in range(len(sims))]
        ax.bar(range(len(sims)), p, color=colors)
        ax.set_title(titles[k] if titles is not None else f"T = {t:.2g}", fontsize=10)
        ax.set_xticks(range(len(sims)), [_wrap(label, 20) for label in labels], rotation=90, fontsize=6)
        ax.set_ylim(0, 1)
    axes.flat[0].set_ylabel("softmax probability")
    fig.tight_layout()
    return fig


def zero_shot_examples(images: Sequence, top_texts: Sequence[Sequence[str]], top_probs,
                       truths: Sequence[str] | None = None) -> Figure:  # fmt: skip
    """Each image beside its best class prompts and their probabilities (correct prompt in orange)."""
    probs = np.asarray(top_probs.detach().cpu() if hasattr(top_probs, "detach") else top_probs, dtype=float)
    n = len(images)
    fig, axes = plt.subplots(n, 2, figsize=(6.4, 1.25 * n), squeeze=False, gridspec_kw={"width_ratios": [1, 3.2]})
    for i in range(n):
        axes[i, 0].imshow(_hwc(images[i]), interpolation="nearest")
        axes[i, 0].axis("off")
        k = len(top_texts[i])
        colors = ["#D55E00" if truths is not None and t == truths[i] else "#0072B2" for t in top_texts[i]]
        axes[i, 1].barh(range(k), probs[i][:k], color=colors)
        for j in range(k):
            axes[i, 1].text(min(probs[i][j], 0.86) + 0.02, j, f"{probs[i][j]:.2f}", va="center", fontsize=7)
        axes[i, 1].set_yticks(range(k), top_texts[i], fontsize=7)
        axes[i, 1].invert_yaxis()
        axes[i, 1].set_xlim(0, 1)
        axes[i, 1].tick_params(axis="x", labelsize=7)
    axes[-1, 1].set_xlabel("probability (softmax over all class prompts)", fontsize=8)
    fig.tight_layout()
    return fig


# --- lessons 04-07: the multimodal model --------------------------------------------------------------------

TOKEN_KIND_COLORS = {"image": "#56B4E9", "prompt": "#F0E442", "answer": "#009E73", "pad": "#DDDDDD"}


def vector_norms(groups: Mapping[str, Sequence[float]], title: str = "") -> Figure:
    """Histograms of vector lengths, one per named group (e.g. word embeddings vs image tokens), on a log axis."""
    fig, ax = plt.subplots(figsize=(6.0, 3.0))
    values = {name: np.asarray(v, dtype=float) for name, v in groups.items()}
    low = min(v.min() for v in values.values())
    high = max(v.max() for v in values.values())
    bins = np.geomspace(max(low, 1e-6) * 0.9, high * 1.1, 40)
    for i, (name, v) in enumerate(values.items()):
        ax.hist(v, bins=bins, alpha=0.6, color=GROUP_COLORS[i % len(GROUP_COLORS)], label=f"{name} (median {np.median(v):.3g})")
    ax.set_xscale("log")
    ax.set_xlabel("vector length (L2 norm)")
    ax.set_ylabel("count")
    ax.legend(fontsize=8)
    if title:
        ax.set_title(title, fontsize=10)
    fig.tight_layout()
    return fig


def embedding_map(points, labels: Sequence[str], groups: Sequence[str], title: str = "",
                  colors: Mapping[str, object] | None = None) -> Figure:  # fmt: skip
    """2-D points (n, 2) coloured by group (`colors`: a group's matplotlib color); points of the group "word" are
    black crosses labelled with their text."""
    points = np.asarray(points.detach().cpu() if hasattr(points, "detach") else points, dtype=float)
    fig, ax = plt.subplots(figsize=(7.6, 4.6))
    for i, group in enumerate(dict.fromkeys(groups)):
        idx = [k for k, g in enumerate(groups) if g == group]
        color = "k" if group == "word" else (colors or {}).get(group, GROUP_COLORS[i % len(GROUP_COLORS)])
        ax.scatter(points[idx, 0], points[idx, 1], s=26 if group == "word" else 18, color=color, label=group,
                   alpha=0.85, marker="x" if group == "word" else "o", edgecolors="none" if group != "word" else None)  # fmt: skip
        if group == "word":
            for k in idx:
                ax.annotate(labels[k], points[k], fontsize=7, xytext=(2, 2), textcoords="offset points")
    ax.legend(fontsize=8, loc="center left", bbox_to_anchor=(1.0, 0.5), frameon=False)  # off the points
    ax.set_xticks([])
    ax.set_yticks([])
    if title:
        ax.set_title(title, fontsize=10)
    fig.tight_layout()
    return fig


def token_sequence(tokens: Sequence[str], kinds: Sequence[str], attention_mask: Sequence[int],
                   labels: Sequence[str], title: str = "") -> Figure:  # fmt: skip
    """The sequence the language model reads, one column per position: the token (coloured by kind: image,
    prompt, answer, pad), its attention-mask value and its label (a word, or -100)."""
    n = len(tokens)
    if not len(kinds) == len(attention_mask) == len(labels) == n:
        raise ValueError("tokens, kinds, attention_mask and labels must have one entry per position.")
    fig, ax = plt.subplots(figsize=(max(6.0, 0.42 * n + 1.4), 2.3))
    rows = (("token", tokens), ("attention_mask", [str(int(m)) for m in attention_mask]), ("labels", labels))
    for r, (name, values) in enumerate(rows):
        y = 2 - r
        ax.text(-0.7, y, name, ha="right", va="center", fontsize=8)
        for x, (value, kind) in enumerate(zip(values, kinds)):
            face = TOKEN_KIND_COLORS.get(kind, "w") if r == 0 else ("#F5F5F5" if value in ("0", "-100") else "w")
            ax.add_patch(plt.Rectangle((x - 0.45, y - 0.4), 0.9, 0.8, facecolor=face, edgecolor="#888888", lw=0.6))
            ax.text(x, y, value, ha="center", va="center", fontsize=6.5, rotation=90 if len(value) > 4 else 0)
    handles = [plt.Rectangle((0, 0), 1, 1, facecolor=c, edgecolor="#888888") for c in TOKEN_KIND_COLORS.values()]
    ax.legend(handles, list(TOKEN_KIND_COLORS), ncol=4, fontsize=7, loc="lower center", bbox_to_anchor=(0.5, 1.0),
              frameon=False)  # fmt: skip
    ax.set_xlim(-0.6, n - 0.4)
    ax.set_ylim(-0.6, 2.6)
    ax.axis("off")
    if title:
        ax.set_title(title, fontsize=10, pad=22)
    fig.tight_layout()
    return fig


def accuracy_by_count(table: Mapping[str, Mapping[int, float]], chance: float | None = None, title: str = "",
                      xlabel: str = "objects in the scene") -> Figure:  # fmt: skip
    """Accuracy (0-1) against the number of objects, one line per model; chance as a dashed line."""
    fig, ax = plt.subplots(figsize=(5.2, 3.2))
    for i, (name, row) in enumerate(table.items()):
        counts = sorted(row)
        ax.plot(counts, [row[c] for c in counts], marker="o", color=GROUP_COLORS[i % len(GROUP_COLORS)], label=name)
        for c in counts:
            ax.annotate(f"{row[c]:.0%}", (c, row[c]), xytext=(0, 6), textcoords="offset points", ha="center", fontsize=7)
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


def attention_overlays(images: Sequence, maps, titles: Sequence[str] | None = None, ncols: int = 6,
                       alpha: float = 0.6, cmap: str = "inferno") -> Figure:  # fmt: skip
    """Each image with a (H, W) map over it, one flat square per cell; colors scaled per panel, min to max."""
    n = len(maps)
    images = list(images) if len(images) == n else list(images) * n
    ncols = min(ncols, n)
    nrows = -(-n // ncols)
    fig, axes = plt.subplots(nrows, ncols, figsize=(1.9 * ncols, 2.05 * nrows), squeeze=False)
    for ax in axes.flat:
        ax.axis("off")
    for i, ax in enumerate(axes.flat[:n]):
        pixels = _hwc(images[i])
        grid = np.asarray(maps[i].detach().cpu() if hasattr(maps[i], "detach") else maps[i], dtype=float)
        height, width = pixels.shape[:2]
        ax.imshow(pixels, interpolation="nearest")
        ax.imshow(grid, cmap=cmap, alpha=alpha, interpolation="nearest", extent=(-0.5, width - 0.5, height - 0.5, -0.5))
        if titles is not None:
            ax.set_title(_wrap(titles[i], 26), fontsize=7)
    fig.tight_layout()
    return fig
