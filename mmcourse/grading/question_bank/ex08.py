"""Exercise 08 (seeing attention): the [CLS] map on the patch grid, and attention rollout, by
hand."""

from __future__ import annotations

import random

import numpy as np
import torch

from ... import attention
from ..judging import Close, Hint, Question, as_tensors

__all__ = ["QUESTIONS"]

# --- shared: random attention tensors whose rows are distributions
# -------------------------------------------


def _attentions(
    seed: int, layers: int, heads: int, side: int, sharpness: float = 2.0
) -> np.ndarray:
    """(L, K, T, T) softmax rows, T = 1 + side * side; sharp enough that heads and layers differ
    visibly."""
    rng = np.random.default_rng(seed)
    tokens = 1 + side * side
    logits = rng.standard_normal((layers, heads, tokens, tokens)) * sharpness
    weights = np.exp(logits - logits.max(-1, keepdims=True))
    return (weights / weights.sum(-1, keepdims=True)).astype(np.float32)


def _close(got, alternative: torch.Tensor) -> bool:
    alt = alternative.numpy()
    return (
        isinstance(got, np.ndarray)
        and got.shape == alt.shape
        and np.allclose(got, alt, rtol=1e-4, atol=1e-6)
    )


def _describe(case: dict) -> str:
    layers, heads, tokens, _ = case["attentions"].shape
    extra = ", ".join(f"{k}={case[k]!r}" for k in ("layer", "fusion") if k in case)
    return f"attentions of {layers} layers, {heads} heads, {tokens} tokens ({extra})"


# --- ex08_cls_map
# ------------------------------------------------------------------------------------------


def _cls_case(seed: int, layers: int, heads: int, side: int, layer: int) -> dict:
    return {"attentions": _attentions(seed, layers, heads, side), "layer": layer}


def _cls_hidden(rng: random.Random, n: int) -> list[dict]:
    cases = []
    for _ in range(n):
        layers = rng.randint(1, 5)
        layer = rng.randrange(-layers, layers)  # negative layers count from the last, as in Python
        cases.append(
            _cls_case(
                rng.randrange(2**31), layers, rng.randint(1, 4), rng.choice([2, 3, 5, 7]), layer
            )
        )
    return cases


def _cls_reference(attentions, layer):
    return attention.cls_map(attentions, layer, "mean")


def _cls_column(case, expected, got) -> bool:
    t = as_tensors(case)
    fused = t["attentions"][t["layer"]].mean(0)  # (T, T)
    return _close(got, fused[1:, 0].reshape(expected.shape))


def _cls_transposed(case, expected, got) -> bool:
    return _close(got, torch.from_numpy(expected).T)


def _cls_one_head(case, expected, got) -> bool:
    t = as_tensors(case)
    heads = t["attentions"][t["layer"]][:, 0, 1:]  # (K, N)
    return any(_close(got, row.reshape(expected.shape)) for row in heads)


CLS_MAP = Question(
    qid="ex08_cls_map",
    points=2,
    name="my_cls_map",
    prompt="my_cls_map(attentions, layer) -> (H, W): where [CLS] looks in one layer, heads fused "
    "by their mean, "
    "the [CLS] key dropped and the patch weights laid out on the grid.",
    oracle=_cls_reference,
    references=(
        "mmcourse.attention.cls_map",
        "mmcourse.attention.query_map",
        "mmcourse.attention.row_to_grid",
    ),
    visible=(_cls_case(0, 2, 2, 3, 0), _cls_case(1, 4, 4, 9, -1), _cls_case(2, 3, 1, 7, 1)),
    hidden=_cls_hidden,
    prepare=as_tensors,
    compare=Close(rtol=1e-4, atol=1e-6),
    describe=_describe,
    hints=(
        Hint(
            "That is the [CLS] *column*: what every patch reads from [CLS]. Take the [CLS] *row*, "
            "attentions[layer, :, 0, 1:]: what [CLS] reads from every patch.",
            _cls_column,
        ),
        Hint(
            "Rows and columns are swapped: patch n sits at (n // W, n % W), as reshape(H, W) lays "
            "it out.",
            _cls_transposed,
        ),
        Hint(
            "That is one head; fuse the heads by their mean first (dim 0 of one layer's (K, T, "
            "T)).",
            _cls_one_head,
        ),
    ),
)


# --- ex08_rollout
# ------------------------------------------------------------------------------------------


def _rollout_case(seed: int, layers: int, heads: int, side: int, fusion: str) -> dict:
    return {"attentions": _attentions(seed, layers, heads, side), "fusion": fusion}


def _rollout_hidden(rng: random.Random, n: int) -> list[dict]:
    return [
        _rollout_case(
            rng.randrange(2**31),
            rng.randint(2, 6),
            rng.randint(1, 4),
            rng.choice([2, 3, 5]),
            rng.choice(["mean", "max"]),
        )
        for _ in range(n)
    ]


def _rollout_reference(attentions, fusion):
    return attention.rollout(attentions, residual=True, fusion=fusion)


def _rollout_variant(
    case: dict, residual: bool = True, renormalize: bool = True, reverse: bool = False
) -> torch.Tensor:
    t = as_tensors(case)
    fused = attention.fuse_heads(t["attentions"], t["fusion"])  # (L, T, T)
    eye = torch.eye(fused.shape[-1])
    result = eye
    for layer in fused:
        a = 0.5 * layer + 0.5 * eye if residual else layer
        a = a / a.sum(-1, keepdim=True) if renormalize else a
        result = result @ a if reverse else a @ result
    return result


ROLLOUT = Question(
    qid="ex08_rollout",
    points=3,
    name="my_rollout",
    prompt="my_rollout(attentions, fusion) -> (T, T): attention rollout (Abnar & Zuidema 2020): "
    "fuse each layer's "
    "heads (mean or max), add the residual as 0.5 W + 0.5 I, re-normalize the rows, and multiply "
    "the "
    "layers, last layer on the left.",
    oracle=_rollout_reference,
    references=("mmcourse.attention.rollout",),
    visible=(
        _rollout_case(0, 2, 2, 2, "mean"),
        _rollout_case(1, 4, 4, 3, "mean"),
        _rollout_case(2, 3, 2, 3, "max"),
    ),
    hidden=_rollout_hidden,
    prepare=as_tensors,
    compare=Close(rtol=1e-4, atol=1e-6),
    describe=_describe,
    hints=(
        Hint(
            "The residual connection is missing: each layer is 0.5 * W + 0.5 * I before the "
            "product.",
            lambda case, e, got: _close(got, _rollout_variant(case, residual=False)),
        ),
        Hint(
            "The layers are multiplied in the wrong order: the last layer goes on the left, "
            "A_L @ ... @ A_2 @ A_1 (i.e. result = a @ result as you go up).",
            lambda case, e, got: _close(got, _rollout_variant(case, reverse=True)),
        ),
        Hint(
            "Re-normalize each layer's rows to sum to 1 after adding the residual: with max fusion "
            "they do not.",
            lambda case, e, got: _close(got, _rollout_variant(case, renormalize=False)),
        ),
    ),
)

QUESTIONS = (CLS_MAP, ROLLOUT)
