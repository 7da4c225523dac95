"""The projection layer: from the vision encoder's space into the language model's word-embedding space.

Lesson 04 teaches it. The vision tower's tokens live in its own space (width D_v, e.g. 128 for shapes-clip, 768
for ViT-B/32); the language model reads vectors of its hidden size D_lm. A projector maps each image token,
independently, from one to the other:

- `"linear"`: one `nn.Linear(D_v, D_lm)`, as in the tutorial and the first LLaVA;
- `"mlp"`: `Linear(D_v, D_lm) -> GELU -> Linear(D_lm, D_lm)`, LLaVA-1.5's 2-layer MLP.

Shapes: (B, N, D_v) -> (B, N, D_lm); any leading dimensions pass through.
"""

from __future__ import annotations

from torch import nn

KINDS = ("linear", "mlp")


def make_projector(kind: str, in_dim: int, out_dim: int) -> nn.Module:
    """A projector of `kind` ("linear" or "mlp") from `in_dim` (vision width) to `out_dim` (LM hidden size)."""
    if kind not in KINDS:
        raise ValueError(f"unknown projector kind {kind!r}; use one of {', '.join(KINDS)}.")
    for name, value in (("in_dim", in_dim), ("out_dim", out_dim)):
        if not isinstance(value, int) or isinstance(value, bool) or value < 1:
            raise ValueError(f"{name} must be a positive int (a hidden size), got {value!r}.")
    if kind == "linear":
        return nn.Linear(in_dim, out_dim)
    return nn.Sequential(nn.Linear(in_dim, out_dim), nn.GELU(), nn.Linear(out_dim, out_dim))


def parameter_count(module: nn.Module) -> int:
    """Number of trainable parameters: linear D_v*D_lm + D_lm; mlp adds D_lm*D_lm + D_lm."""
    return sum(p.numel() for p in module.parameters() if p.requires_grad)


def check_fits(projector: nn.Module, vision_width: int, lm_hidden: int) -> None:
    """Raise a ValueError that names both sizes when a projector does not connect this vision tower to this LM."""
    linears = [m for m in projector.modules() if isinstance(m, nn.Linear)]
    if not linears:
        return
    first, last = linears[0], linears[-1]
    if first.in_features != vision_width:
        raise ValueError(
            f"the projector takes {first.in_features}-wide tokens but the vision tower gives {vision_width}; "
            f"build it with make_projector(kind, {vision_width}, {lm_hidden})."
        )
    if last.out_features != lm_hidden:
        raise ValueError(
            f"the projector gives {last.out_features}-wide tokens but the language model's hidden size is "
            f"{lm_hidden}; build it with make_projector(kind, {vision_width}, {lm_hidden})."
        )
