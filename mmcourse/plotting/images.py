"""Figures of lessons 01 and 02: image sizes, channels, patches, highlighted cells, PCA of patch
tokens,
patch-similarity maps."""

from __future__ import annotations

from collections.abc import Mapping, Sequence

import matplotlib.pyplot as plt
import numpy as np
from matplotlib.figure import Figure

from .style import GROUP_COLORS, _hwc, _wrap

__all__ = [
    "highlight_patches",
    "pca_patch_images",
    "show_channels",
    "show_patches",
    "show_sizes",
    "similarity_maps",
]


def show_sizes(images: Sequence, titles: Sequence[str], scale: float = 1 / 80) -> Figure:
    """Images side by side, drawn at the same pixel scale, so that resizing and cropping are
    visible."""
    arrays = [_hwc(image) for image in images]
    widths = [a.shape[1] for a in arrays]
    top = max(a.shape[0] for a in arrays)
    fig, axes = plt.subplots(
        1,
        len(arrays),
        figsize=(sum(widths) * scale + 0.6, top * scale + 0.8),
        squeeze=False,
        gridspec_kw={"width_ratios": widths},
    )
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


def show_channels(
    pixel_values, image=None, names: Sequence[str] = ("red", "green", "blue")
) -> Figure:
    """What the model receives: the normalized channels (3, H, W) as heat maps on one color scale,
    after the image."""
    values = np.asarray(
        pixel_values.detach().cpu() if hasattr(pixel_values, "detach") else pixel_values,
        dtype=float,
    )
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
        ax.set_title(
            f"{name}: (x - mean) / std\nmean {channel.mean():+.2f}, std {channel.std():.2f}",
            fontsize=9,
        )
        ax.axis("off")
    fig.colorbar(shown, ax=axes[-3:], shrink=0.8, label="value the model sees")
    return fig


def show_patches(image, patch_size: int, gap: int = 1, label_every: int = 1) -> Figure:
    """The image and the same image cut into its patches, pulled apart, each numbered in reading
    order."""
    array = _hwc(image)
    size = array.shape[0]
    side = size // patch_size
    spread = side * patch_size + (side - 1) * gap
    # dark gaps between the patches
    canvas = np.full((spread, spread, array.shape[2]), 60, dtype=array.dtype)
    for row in range(side):
        for col in range(side):
            patch = array[
                row * patch_size : (row + 1) * patch_size, col * patch_size : (col + 1) * patch_size
            ]
            y, x = row * (patch_size + gap), col * (patch_size + gap)
            canvas[y : y + patch_size, x : x + patch_size] = patch
    fig, axes = plt.subplots(1, 2, figsize=(8.6, 4.4))
    axes[0].imshow(array, interpolation="nearest")
    axes[0].set_title(f"{size} x {size} px", fontsize=9)
    axes[1].imshow(canvas, interpolation="nearest")
    for n in range(0, side * side, label_every):
        row, col = divmod(n, side)
        axes[1].text(
            col * (patch_size + gap) - 0.3,
            row * (patch_size + gap) - 0.3,
            str(n),
            fontsize=5.5,
            va="top",
            ha="left",
            color="k",
            bbox=dict(boxstyle="square,pad=0.05", fc="white", ec="none", alpha=0.6),
        )
    axes[1].set_title(
        f"{side * side} patches of {patch_size} x {patch_size} px, numbered in reading order",
        fontsize=9,
    )
    for ax in axes:
        ax.axis("off")
    fig.tight_layout()
    return fig


# --- lesson 02: spatial patch features
# -------------------------------------------------------------------


def highlight_patches(image, patch_size: int, groups: Mapping[str, Sequence[int]]) -> Figure:
    """The image with its patch grid; the patches of each named group (indices in reading order)
    outlined."""
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
            ax.add_patch(
                Rectangle(
                    (col * patch_size + 0.6, row * patch_size + 0.6),
                    patch_size - 1.2,
                    patch_size - 1.2,
                    fill=False,
                    ec=color,
                    lw=2,
                    label=name if k == 0 else None,
                )
            )
            ax.text(
                col * patch_size + patch_size / 2,
                row * patch_size + patch_size / 2,
                str(n),
                fontsize=6,
                ha="center",
                va="center",
                color="k",
            )
    ax.set_xticks([])
    ax.set_yticks([])
    ax.legend(
        loc="upper center",
        bbox_to_anchor=(0.5, -0.02),
        ncol=min(len(groups), 3),
        fontsize=8,
        frameon=False,
    )
    ax.set_title(f"{side} x {side} patches; the patches of each object's cell", fontsize=9)
    fig.tight_layout()
    return fig


def pca_patch_images(images: Sequence, colors, ncols: int = 8) -> Figure:
    """Each image above its patch grid painted with colors (B, H, W, 3) in [0, 1], e.g. 3 principal
    components."""
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


def similarity_maps(
    images: Sequence,
    maps,
    chosen: Sequence[tuple[int, int, int]] = (),
    titles: Sequence[str] | None = None,
    vmin: float = -1.0,
) -> Figure:
    """Each image above its cosine-similarity map (H, W) on the patch grid; `chosen` (image, row,
    col) boxes queries."""
    from matplotlib.patches import Rectangle

    maps = np.asarray(maps.detach().cpu() if hasattr(maps, "detach") else maps, dtype=float)
    n = len(images)
    fig, axes = plt.subplots(2, n, figsize=(1.9 * n + 1.2, 4.1), squeeze=False)
    for i in range(n):
        axes[0, i].imshow(_hwc(images[i]), interpolation="nearest")
        shown = axes[1, i].imshow(
            maps[i], cmap="magma", vmin=vmin, vmax=1.0, interpolation="nearest"
        )
        for image_index, row, col in chosen:
            if image_index == i:
                patch = _hwc(images[i]).shape[0] / maps.shape[1]  # pixels per patch
                axes[0, i].add_patch(
                    Rectangle(
                        (col * patch - 0.5, row * patch - 0.5),
                        patch,
                        patch,
                        fill=False,
                        ec="#56B4E9",
                        lw=2.5,
                    )
                )
                axes[1, i].add_patch(
                    Rectangle((col - 0.5, row - 0.5), 1, 1, fill=False, ec="#56B4E9", lw=2.5)
                )
        if titles is not None:
            axes[0, i].set_title(_wrap(titles[i], 24), fontsize=7)
        for ax in axes[:, i]:
            ax.axis("off")
    fig.colorbar(
        shown, ax=list(axes[1]), shrink=0.9, label="cosine similarity\nto the chosen patch"
    )
    return fig
