"""What the figures share: the colorblind-safe colors of groups, text wrapping, images as (H, W, 3)
arrays."""

from __future__ import annotations

import numpy as np

__all__ = ["GROUP_COLORS"]

#: Okabe-Ito colors for groups of patches, curves and points, in this order.
GROUP_COLORS = ("#D55E00", "#0072B2", "#009E73", "#CC79A7", "#E69F00", "#56B4E9")


def _wrap(text: str, width: int) -> str:
    lines, line = [], ""
    for word in text.split():
        if line and len(line) + 1 + len(word) > width:
            lines.append(line)
            line = word
        else:
            line = f"{line} {word}".strip()
    return "\n".join([*lines, line])


def _hwc(image) -> np.ndarray:
    """A PIL image, an array (H, W, 3) or a tensor/array (3, H, W) -> an array (H, W, 3) for
    imshow."""
    array = np.asarray(image.detach().cpu() if hasattr(image, "detach") else image)
    if array.ndim == 3 and array.shape[0] == 3 and array.shape[-1] != 3:
        array = array.transpose(1, 2, 0)  # (3, H, W) -> (H, W, 3)
    return array
