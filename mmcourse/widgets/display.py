"""Data -> pictures and text for the widgets, with no model and no widget: heatmaps over an image,
the digest line a test reads back, the image as the model sees it, which cell a click hit, a small
cache.

Lesson 08's widgets draw with these; they are tested without a browser.
"""

from __future__ import annotations

import hashlib
import io
import re
from collections import OrderedDict
from collections.abc import Callable

import numpy as np
import torch
from PIL import Image, ImageDraw

from .. import attention, vision

__all__ = [
    "CACHE_IMAGES",
    "DIGEST",
    "DISPLAY_SIZE",
    "cell_of_click",
    "digest_matches",
    "fit_image",
    "heatmap_overlay",
    "image_key",
    "map_digest",
    "png",
]

DISPLAY_SIZE = (
    288  # pixels on screen: the 72 px scenes at 4x, big enough to click one 8 px patch (32 px)
)
CACHE_IMAGES = 16  # forwards kept per widget; a learner flips between a few scenes
DIGEST = re.compile(
    r"(?P<h>\d+)x(?P<w>\d+) peak \((?P<r>\d+), (?P<c>\d+)\) max (?P<max>[-\d.e]+) mean "
    r"(?P<mean>[-\d.e]+) min (?P<min>[-\d.e]+)"
)


def map_digest(grid_map: torch.Tensor) -> str:
    """A short, exact-enough summary of a (H, W) map: its size, the peak cell (row, col), max, mean
    and min."""
    grid = grid_map.detach().float().cpu()
    row, col = divmod(int(grid.argmax()), grid.shape[1])
    return (
        f"{grid.shape[0]}x{grid.shape[1]} peak ({row}, {col}) max {grid.max().item():.4f} "
        f"mean {grid.mean().item():.4f} min {grid.min().item():.4f}"
    )


def digest_matches(text: str, grid_map: torch.Tensor, tolerance: float = 2e-3) -> bool:
    """Does a digest (as shown in a widget) describe `grid_map`? Same size and peak, statistics
    within `tolerance`.

    A tolerance, not string equality: the browser's kernel and a test process may round the last
    digit apart.
    """
    shown, expected = DIGEST.search(text), DIGEST.search(map_digest(grid_map))
    if shown is None:
        return False
    same = all(shown[k] == expected[k] for k in ("h", "w", "r", "c"))
    return same and all(
        abs(float(shown[k]) - float(expected[k])) <= tolerance for k in ("max", "mean", "min")
    )


def _colormap(name: str = "inferno") -> np.ndarray:
    import matplotlib

    # (256, 3)
    return (matplotlib.colormaps[name](np.linspace(0.0, 1.0, 256))[:, :3] * 255).astype(np.uint8)


_LUT = _colormap()


def heatmap_overlay(
    image: Image.Image,
    grid_map: torch.Tensor,
    size: int = DISPLAY_SIZE,
    alpha: float = 0.6,
    mark: tuple[int, int] | None = None,
) -> Image.Image:
    """The image at `size` x `size` with a (H, W) map over it, one flat square per cell (nearest
    up-sampling: a patch's value is not smeared onto its neighbours). Colors are scaled from the
    map's min (dark) to its max
    (bright); `mark` outlines one cell (the query patch)."""
    grid = grid_map.detach().float().cpu()
    low, high = grid.min(), grid.max()
    scaled = (grid - low) / (high - low) if high > low else torch.zeros_like(grid)
    pixels = attention.upsample(scaled, size)  # (S, S), nearest
    colors = _LUT[(pixels.numpy() * 255).round().astype(np.uint8)]  # (S, S, 3)
    base = np.asarray(image.convert("RGB").resize((size, size), Image.NEAREST), dtype=np.float32)
    blended = Image.fromarray(((1 - alpha) * base + alpha * colors).round().astype(np.uint8))
    if mark is not None:
        cell_h, cell_w = size / grid.shape[0], size / grid.shape[1]
        row, col = mark
        box = (col * cell_w, row * cell_h, (col + 1) * cell_w - 1, (row + 1) * cell_h - 1)
        ImageDraw.Draw(blended).rectangle(box, outline=(0, 255, 255), width=3)
    return blended


def png(image: Image.Image) -> bytes:
    buffer = io.BytesIO()
    # speed over size: it only travels to the browser
    image.save(buffer, format="PNG", compress_level=1)
    return buffer.getvalue()


def fit_image(image, size: int) -> Image.Image:
    """Any image (PIL, array; any mode or size) as the `size` x `size` RGB picture the model sees:
    CLIP's own
    preprocessing (`vision.model_view`), so the heatmap lies over exactly what the tower read."""
    rgb = vision.to_rgb(image)
    if rgb.size == (size, size):
        return rgb
    return vision.model_view(rgb, vision.default_processor(size))


def image_key(image: Image.Image) -> str:
    return hashlib.sha256(image.tobytes() + repr(image.size).encode()).hexdigest()[:16]


def cell_of_click(x: float, y: float, grid: int, size: int = DISPLAY_SIZE) -> tuple[int, int]:
    """The (row, col) of the grid cell under a click at pixel (x, y) of the displayed image."""
    clamp = lambda v: min(max(int(v * grid // size), 0), grid - 1)
    return clamp(y), clamp(x)


class _LRU(OrderedDict):
    def get_or(self, key, compute: Callable):
        if key in self:
            self.move_to_end(key)
            return self[key]
        value = self[key] = compute()
        if len(self) > CACHE_IMAGES:
            self.popitem(last=False)
        return value
