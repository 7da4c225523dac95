"""The projection layer: from the vision encoder's space into the language model's word-embedding
space.

Lesson 04 teaches it. The vision tower's tokens live in its own space (width D_v, e.g. 128 for
shapes-clip, 768 for ViT-B/32); the language model reads vectors of its hidden size D_lm. A
projector maps each image token, independently, from one to the other:

- `"linear"`: one `nn.Linear(D_v, D_lm)`, as in the tutorial and the first LLaVA;
- `"mlp"`: `Linear(D_v, D_lm) -> GELU -> Linear(D_lm, D_lm)`, LLaVA-1.5's 2-layer MLP.

Shapes: (B, N, D_v) -> (B, N, D_lm); any leading dimensions pass through.

`pixel_shuffle(tokens, merge)` comes before the projector when a model merges neighbouring patches
into one image token (nanoVLM, SmolVLM, Idefics3): each merge x merge block of patch tokens is
concatenated into one token of width D_v * merge^2, so the language model reads merge^2 times fewer
tokens and nothing is averaged away.
The projector then takes D_v * merge^2 inputs.
"""

from __future__ import annotations

import torch
from torch import nn

__all__ = ["KINDS", "check_fits", "make_projector", "parameter_count", "pixel_shuffle"]

KINDS = ("linear", "mlp")


def make_projector(kind: str, in_dim: int, out_dim: int) -> nn.Module:
    """A projector of `kind` ("linear" or "mlp") from `in_dim` (vision width) to `out_dim` (LM
    hidden size)."""
    if kind not in KINDS:
        raise ValueError(f"unknown projector kind {kind!r}; use one of {', '.join(KINDS)}.")
    for name, value in (("in_dim", in_dim), ("out_dim", out_dim)):
        if not isinstance(value, int) or isinstance(value, bool) or value < 1:
            raise ValueError(f"{name} must be a positive int (a hidden size), got {value!r}.")
    if kind == "linear":
        return nn.Linear(in_dim, out_dim)
    return nn.Sequential(nn.Linear(in_dim, out_dim), nn.GELU(), nn.Linear(out_dim, out_dim))


def pixel_shuffle(tokens: torch.Tensor, merge: int) -> torch.Tensor:
    """Concatenate each merge x merge block of a square patch grid: (B, N, D) -> (B, N / merge^2, D
    * merge^2).

    Blocks come in reading order, and inside a block the patches too, so block k of a 9 x 9 grid
    with merge=3 is the k-th cell of the shapes world's 3 x 3 layout.
    """
    if merge == 1:
        return tokens
    b, n, d = tokens.shape
    side = round(n**0.5)
    if side * side != n or side % merge:
        raise ValueError(
            f"pixel_shuffle needs a square grid whose side divides by merge={merge}; got {n} "
            "tokens."
        )
    blocks = side // merge
    # (B, block row, row in block, block col, col in block, D)
    grid = tokens.reshape(b, blocks, merge, blocks, merge, d)
    # (B, N / m^2, m^2 D)
    return grid.permute(0, 1, 3, 2, 4, 5).reshape(b, blocks * blocks, merge * merge * d)


def parameter_count(module: nn.Module) -> int:
    """Number of trainable parameters: linear D_v*D_lm + D_lm; mlp adds D_lm*D_lm + D_lm."""
    return sum(p.numel() for p in module.parameters() if p.requires_grad)


def check_fits(projector: nn.Module, vision_width: int, lm_hidden: int, merge: int = 1) -> None:
    """Raise a ValueError that names both sizes when a projector does not connect this vision tower
    to this LM.

    `vision_width` is what one image token is wide before projecting: the tower's width times
    merge^2.
    """
    linears = [m for m in projector.modules() if isinstance(m, nn.Linear)]
    if not linears:
        return
    first, last = linears[0], linears[-1]
    gives = (
        f"{vision_width}"
        if merge == 1
        else f"{vision_width // merge**2} ({vision_width} once {merge}x{merge} blocks are merged)"
    )
    if first.in_features != vision_width:
        raise ValueError(
            f"the projector takes {first.in_features}-wide tokens but the vision tower gives "
            f"{gives}; "
            f"build it with make_projector(kind, {vision_width}, {lm_hidden})."
        )
    if last.out_features != lm_hidden:
        raise ValueError(
            f"the projector gives {last.out_features}-wide tokens but the language model's hidden "
            "size is "
            f"{lm_hidden}; build it with make_projector(kind, {vision_width}, {lm_hidden})."
        )
