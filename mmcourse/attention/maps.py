"""Attention maps as pure functions on tensors: head fusion, one query's map, [CLS] maps, rollout,
upsampling.

Lesson 08 teaches it (the package doc, `mmcourse.attention`, has the whole picture). Every function
takes the stacked attention probabilities (L, K, T, T) of one image, [CLS] first, and works for any
square patch grid.
"""

from __future__ import annotations

import math

import torch
import torch.nn.functional as F

__all__ = [
    "FUSIONS",
    "UPSAMPLE_MODES",
    "as_attention_tensor",
    "cls_map",
    "fuse_heads",
    "grid_side",
    "layer_matrix",
    "query_map",
    "rollout",
    "row_to_grid",
    "upsample",
]

FUSIONS = ("mean", "max", "min")
UPSAMPLE_MODES = ("nearest", "bilinear")


# --- small parts: checks, the grid, head fusion
# -------------------------------------------------------------


def grid_side(n_patch_tokens: int) -> int:
    """Patches per side of a square grid: 81 -> 9, 49 -> 7, 196 -> 14, 1 -> 1. Raises unless n is a
    square."""
    if (
        not isinstance(n_patch_tokens, int)
        or isinstance(n_patch_tokens, bool)
        or n_patch_tokens < 1
    ):
        raise ValueError(
            f"the number of patch tokens must be a positive int, got {n_patch_tokens!r}."
        )
    side = math.isqrt(n_patch_tokens)
    if side * side != n_patch_tokens:
        raise ValueError(
            f"{n_patch_tokens} patch tokens do not form a square grid (nearest: {side}x{side} = "
            f"{side * side}). "
            "Did you keep [CLS] among the keys? A ViT has 1 + H*W tokens; the maps use the H*W "
            "after [CLS]."
        )
    return side


def as_attention_tensor(attentions) -> torch.Tensor:
    """One (L, K, T, T) tensor from a model output's `attentions` (a tuple of L (1, K, T, T)) or
    from a tensor.

    A tuple of per-layer tensors is stacked, and a batch dimension of 1 dropped. An empty tuple is
    what transformers 5 returns under `sdpa` attention: the error says so and how to fix it.
    """
    if isinstance(attentions, (tuple, list)):
        if len(attentions) == 0:
            raise ValueError(
                "got no attentions (an empty tuple): the model ran with `sdpa` attention, which in "
                "transformers 5 "
                "returns none even with output_attentions=True. Call "
                "attention.use_eager_attention(model) first, "
                "or load the model with attn_implementation='eager'."
            )
        if any(a is None for a in attentions):
            raise ValueError(
                "some layers returned no attention (None); switch the model to eager attention."
            )
        attentions = torch.stack(list(attentions))  # (L, B, K, T, T) or (L, K, T, T)
        if attentions.dim() == 5:
            if attentions.shape[1] != 1:
                raise ValueError(
                    f"attentions of a batch of {attentions.shape[1]} images; pick one (index dim "
                    "1)."
                )
            attentions = attentions[:, 0]  # (L, K, T, T)
    if not isinstance(attentions, torch.Tensor):
        raise ValueError(
            f"attentions must be a tensor (L, K, T, T) or a tuple of layers, "
            f"got {type(attentions).__name__}."
        )
    if attentions.dim() != 4 or attentions.shape[-1] != attentions.shape[-2]:
        raise ValueError(
            "attentions must have shape (layers, heads, tokens, tokens), got "
            f"{tuple(attentions.shape)}; "
            "for one layer use attentions[None], for a batch from a model output pick one image."
        )
    return attentions


def _check_layer(layer: int, n_layers: int) -> int:
    if not isinstance(layer, int) or isinstance(layer, bool) or not -n_layers <= layer < n_layers:
        raise ValueError(
            f"layer must be an int in [{-n_layers}, {n_layers - 1}] ({n_layers} layers; -1 is the "
            "last), "
            f"got {layer!r}."
        )
    return layer


def fuse_heads(attn: torch.Tensor, fusion: str = "mean") -> torch.Tensor:
    """Merge the heads: (..., K, T, T) -> (..., T, T), by the elementwise mean, max or min over K.

    "mean" keeps rows summing to 1 (a mean of distributions is one); "max" shows what *any* head
    looks at, "min" what *every* head looks at; their rows do not sum to 1 (`rollout` renormalizes
    them).
    """
    if fusion not in FUSIONS:
        raise ValueError(f"fusion must be one of {FUSIONS}, got {fusion!r}.")
    if attn.dim() < 3:
        raise ValueError(
            f"fuse_heads needs (..., heads, tokens, tokens), got shape {tuple(attn.shape)}."
        )
    if fusion == "mean":
        return attn.mean(dim=-3)
    if fusion == "max":
        return attn.amax(dim=-3)
    return attn.amin(dim=-3)


def layer_matrix(attentions, layer: int = -1, head: int | str = "mean") -> torch.Tensor:
    """One layer's (T, T) attention: one head (`head` an int) or the heads fused (`head` "mean",
    "max", "min")."""
    attentions = as_attention_tensor(attentions)
    n_layers, n_heads = attentions.shape[:2]
    per_head = attentions[_check_layer(layer, n_layers)]  # (K, T, T)
    if isinstance(head, str):
        return fuse_heads(per_head, head)  # (T, T)
    if not isinstance(head, int) or isinstance(head, bool) or not -n_heads <= head < n_heads:
        raise ValueError(
            f"head must be an int in [{-n_heads}, {n_heads - 1}] or one of {FUSIONS}, got {head!r}."
        )
    return per_head[head]  # (T, T)


def _query_index(query: int | tuple[int, int], n_tokens: int, side: int) -> int:
    if isinstance(query, tuple):  # (row, col) of a patch -> its token index, after [CLS]
        row, col = query
        if not (0 <= row < side and 0 <= col < side):
            raise ValueError(f"patch ({row}, {col}) is outside the {side}x{side} grid.")
        return 1 + row * side + col
    if not isinstance(query, int) or isinstance(query, bool) or not -n_tokens <= query < n_tokens:
        raise ValueError(
            f"query_index must be a token index in [0, {n_tokens - 1}] (0 is [CLS], 1 + n is patch "
            "n) "
            f"or a (row, col) patch, got {query!r}."
        )
    return query % n_tokens


def row_to_grid(matrix: torch.Tensor, query_index: int | tuple[int, int] = 0) -> torch.Tensor:
    """The row of one query token of a (T, T) matrix over the patch keys, as the patch grid: -> (H,
    W).

    [CLS] (key 0) is dropped, so the map shows how much of the query's attention went to each patch;
    the weights are not renormalized (what went to [CLS] is simply missing). `query_index`: 0 is
    [CLS], 1 + n is patch n, or give a patch as (row, col).
    """
    if matrix.dim() != 2 or matrix.shape[0] != matrix.shape[1]:
        raise ValueError(
            f"expected a square (tokens, tokens) matrix, got shape {tuple(matrix.shape)}."
        )
    n_tokens = matrix.shape[0]
    side = grid_side(n_tokens - 1)
    row = matrix[_query_index(query_index, n_tokens, side), 1:]  # (N,): keys without [CLS]
    return row.reshape(side, side)  # (H, W)


def query_map(
    attentions, layer: int = -1, head: int | str = "mean", query_index: int | tuple[int, int] = 0
) -> torch.Tensor:
    """Where one query token looks in one layer: (L, K, T, T) -> (H, W) over the patch grid.

    `head`: an int for one head, or "mean" / "max" / "min" to fuse them. `query_index`: 0 is [CLS],
    1 + n is patch n (row n // W, column n % W), or a (row, col) patch.
    """
    return row_to_grid(layer_matrix(attentions, layer, head), query_index)


def cls_map(attentions, layer: int = -1, head: int | str = "mean") -> torch.Tensor:
    """The [CLS] row over the patches, as the grid (H, W).

    `attentions` is either the stacked (L, K, T, T) attentions (then `layer` and `head` pick the
    matrix), or an already-reduced (T, T) matrix such as `rollout(...)`:
    `cls_map(rollout(attentions))`.
    """
    if isinstance(attentions, torch.Tensor) and attentions.dim() == 2:
        if layer != -1 or head != "mean":
            raise ValueError(
                "a (T, T) matrix has no layers or heads to pick; call cls_map(matrix) alone."
            )
        return row_to_grid(attentions, 0)
    return query_map(attentions, layer, head, 0)


# --- attention rollout
# -------------------------------------------------------------------------------------


def _residual_ratio(residual: bool | float) -> float:
    ratio = (0.5 if residual else 0.0) if isinstance(residual, bool) else float(residual)
    if not 0.0 <= ratio <= 1.0:
        raise ValueError(
            f"residual must be True (0.5), False (0) or a ratio in [0, 1], got {residual!r}."
        )
    return ratio


def rollout(attentions, residual: bool | float = True, fusion: str = "mean") -> torch.Tensor:
    """Attention rollout (Abnar & Zuidema 2020): (L, K, T, T) -> (T, T), rows summing to 1.

    Per layer: fuse the heads, add the residual connection as an identity term, A = (1 - r) W + r I
    with r = 0.5 for `residual=True` (a float sets r, False drops it), renormalize each row to sum
    1.
    Then multiply the layers, R = A_L ... A_2 A_1: row i of R says how much each input token flowed
    into output token i.
    Roll out fewer layers with `rollout(attentions[:k])`.
    """
    attentions = as_attention_tensor(attentions)
    ratio = _residual_ratio(residual)
    fused = fuse_heads(attentions, fusion).float()  # (L, T, T)
    eye = torch.eye(fused.shape[-1], dtype=fused.dtype, device=fused.device)  # (T, T)
    mixed = (1 - ratio) * fused + ratio * eye  # (L, T, T)
    # rows sum to 1
    mixed = mixed / mixed.sum(dim=-1, keepdim=True).clamp(min=torch.finfo(mixed.dtype).tiny)
    flow = eye
    for layer in mixed:  # first layer first: each new layer multiplies on the left
        flow = layer @ flow  # (T, T)
    return flow


# --- onto the image
# ----------------------------------------------------------------------------------------


def upsample(
    grid_map: torch.Tensor, image_size: int | tuple[int, int], mode: str = "nearest"
) -> torch.Tensor:
    """A grid map onto the image's pixels: (H, W) -> (S, S), or (..., H, W) -> (..., S_h, S_w).

    "nearest" (the default) paints each patch's value over the pixels the patch covers: it is
    exactly what the model saw, one number per patch, and the peak stays in its patch. "bilinear"
    (align_corners=False) looks smoother but invents values between patch centres and smears a peak
    into its neighbours; use it for display.
    """
    if mode not in UPSAMPLE_MODES:
        raise ValueError(f"mode must be one of {UPSAMPLE_MODES}, got {mode!r}.")
    if grid_map.dim() < 2:
        raise ValueError(f"upsample needs a map (..., H, W), got shape {tuple(grid_map.shape)}.")
    size = (image_size, image_size) if isinstance(image_size, int) else tuple(image_size)
    lead = grid_map.shape[:-2]
    flat = grid_map.reshape(-1, 1, *grid_map.shape[-2:]).float()  # (B, 1, H, W)
    kwargs = {"align_corners": False} if mode == "bilinear" else {}
    out = F.interpolate(flat, size=size, mode=mode, **kwargs)  # (B, 1, S_h, S_w)
    return out.reshape(*lead, *size)
