"""Drawing a scene: pixels, the grid cells and the ViT patches that cover them.

Lesson 00 teaches it. The default image is 72 px and the course's ViTs use 8 px patches, so the grid
is 9x9 patches and each of the 3x3 cells is exactly 3x3 patches (`cell_patches`). Objects fill 70-90
% of their cell and never leave it, so "where is the red circle?" has a clean answer in patch space.
Shapes are drawn `SUPERSAMPLE` times larger and box-filtered down: smooth edges, still
deterministic.
"""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np
import torch
from PIL import Image, ImageDraw

from .world import (
    BACKGROUND,
    DEFAULT_IMAGE_SIZE,
    GRID,
    MIN_IMAGE_SIZE,
    OUTLINE,
    PALETTE,
    PATCH_SIZE,
    POSITIONS,
    SUPERSAMPLE,
    Scene,
    _check_choice,
)

__all__ = ["cell_box", "cell_patches", "image_to_tensor", "render", "render_batch"]


def cell_box(position: str, size: int) -> tuple[int, int, int, int]:
    """Pixel box (left, top, right, bottom) of a grid cell in an image of `size` px; right/bottom
    exclusive."""
    _check_choice(position, POSITIONS, "position")
    row, col = divmod(POSITIONS.index(position), GRID)
    return (
        col * size // GRID,
        row * size // GRID,
        (col + 1) * size // GRID,
        (row + 1) * size // GRID,
    )


def cell_patches(
    position: str, image_size: int = DEFAULT_IMAGE_SIZE, patch_size: int = PATCH_SIZE
) -> list[int]:
    """Indices (row-major, without [CLS]) of the ViT patches that cover a grid cell.

    Needs an image whose cells are a whole number of patches (72 px / 8 px patches: 3x3 patches a
    cell).
    """
    if image_size % (GRID * patch_size):
        raise ValueError(
            f"an image of {image_size} px with {patch_size} px patches does not split each of the "
            f"{GRID}x{GRID} "
            "cells into whole patches; use an image size that is a multiple of "
            f"{GRID * patch_size}."
        )
    per_side = image_size // patch_size
    per_cell = per_side // GRID
    row, col = divmod(POSITIONS.index(position), GRID)
    return [
        (row * per_cell + r) * per_side + col * per_cell + c
        for r in range(per_cell)
        for c in range(per_cell)
    ]


def _polygon(
    shape: str, box: tuple[float, float, float, float]
) -> list[tuple[float, float]] | None:
    x0, y0, x1, y1 = box
    cx, cy = (x0 + x1) / 2, (y0 + y1) / 2
    if shape == "triangle":
        return [(cx, y0), (x1, y1), (x0, y1)]
    if shape == "diamond":
        return [(cx, y0), (x1, cy), (cx, y1), (x0, cy)]
    return None


def render(scene: Scene, size: int | None = None) -> Image.Image:
    """Draw `scene` as a PIL RGB image of `size` x `size` px (default `DEFAULT_IMAGE_SIZE`)."""
    size = DEFAULT_IMAGE_SIZE if size is None else size
    if not isinstance(size, (int, np.integer)) or isinstance(size, bool) or size < MIN_IMAGE_SIZE:
        raise ValueError(
            f"image size must be an int of at least {MIN_IMAGE_SIZE} px (each of the 3x3 cells "
            "needs 8 px "
            f"for a recognisable shape), got {size!r}."
        )
    big = int(size) * SUPERSAMPLE
    canvas = Image.new("RGB", (big, big), BACKGROUND)
    draw = ImageDraw.Draw(canvas)
    outline_width = max(1, big // 100)
    for obj in scene.objects:
        left, top, right, bottom = cell_box(obj.position, big)
        # PIL draws edges inclusively and outlines outward-ish: keep a margin so no pixel leaves the
        # cell
        margin = outline_width + 1
        usable = min(right - left, bottom - top) - 2 * margin
        side = obj.size * usable
        x0 = left + margin + obj.dx * (usable - side)
        y0 = top + margin + obj.dy * (usable - side)
        box = (x0, y0, x0 + side, y0 + side)
        fill = PALETTE[obj.color]
        polygon = _polygon(obj.shape, box)
        if obj.shape == "circle":
            draw.ellipse(box, fill=fill, outline=OUTLINE, width=outline_width)
        elif obj.shape == "square":
            draw.rectangle(box, fill=fill, outline=OUTLINE, width=outline_width)
        else:
            draw.polygon(polygon, fill=fill, outline=OUTLINE, width=outline_width)
    return canvas.resize((int(size), int(size)), Image.Resampling.BOX)


def image_to_tensor(image: Image.Image) -> torch.Tensor:
    """PIL RGB -> uint8 tensor (3, H, W); scaling and normalizing belong to the vision encoder
    (lesson 01)."""
    # (3, H, W)
    return torch.from_numpy(np.asarray(image.convert("RGB"), dtype=np.uint8).copy()).permute(
        2, 0, 1
    )


def render_batch(scenes: Sequence[Scene], size: int | None = None) -> torch.Tensor:
    """Draw scenes as one uint8 batch (B, 3, H, W)."""
    return torch.stack([image_to_tensor(scene.render(size)) for scene in scenes])  # (B, 3, H, W)
