"""Exercise 04 (the projection layer): a linear projector and LLaVA-1.5's MLP by hand, and their
parameter counts."""

from __future__ import annotations

import random

import numpy as np
import torch
import torch.nn.functional as F

from ... import projection
from ..judging import Close, Exact, Hint, Question, as_tensors

__all__ = ["QUESTIONS"]

# --- shared: weights loaded into the library's own modules
# ----------------------------------------------


def _project(kind: str, features: torch.Tensor, state: dict[str, torch.Tensor]) -> torch.Tensor:
    """The library's projector of `kind`, with the case's weights, applied to `features`."""
    first = state["weight" if kind == "linear" else "0.weight"]
    out_dim, in_dim = first.shape
    module = projection.make_projector(kind, in_dim, out_dim)
    module.load_state_dict(state)
    with torch.no_grad():
        return module(features)


def _weights(rng: np.random.Generator, out_dim: int, in_dim: int) -> tuple[np.ndarray, np.ndarray]:
    # scaled so the projected values spread over [-3, 3], where GELU, its tanh approximation and
    # ReLU differ
    weight = (rng.standard_normal((out_dim, in_dim)) * 1.5 / np.sqrt(in_dim)).astype(np.float32)
    bias = (rng.standard_normal(out_dim) * 0.5).astype(np.float32)
    return weight, bias


def _close(got, alternative: torch.Tensor) -> bool:
    alt = alternative.numpy()
    return got.shape == alt.shape and np.allclose(got, alt, rtol=1e-5, atol=1e-5)


def _describe_features(case: dict) -> str:
    return f"features of shape {tuple(case['features'].shape)}"


# --- ex04_linear_projection
# ------------------------------------------------------------------------------


def _linear_case(seed: int, batch: int, tokens: int, in_dim: int, out_dim: int) -> dict:
    rng = np.random.default_rng(seed)
    weight, bias = _weights(rng, out_dim, in_dim)
    return {
        "features": rng.standard_normal((batch, tokens, in_dim)).astype(np.float32),
        "weight": weight,
        "bias": bias,
    }


def _linear_reference(features, weight, bias):
    return _project("linear", features, {"weight": weight, "bias": bias})


def _linear_hidden(rng: random.Random, n: int) -> list[dict]:
    cases = []
    for i in range(n):
        in_dim = rng.choice([4, 8, 16, 32])
        # square ones too: x @ W runs there
        out_dim = in_dim if i % 3 == 0 else rng.choice([6, 12, 24, 48])
        cases.append(
            _linear_case(
                rng.randrange(2**31), rng.randint(1, 3), rng.randint(1, 9), in_dim, out_dim
            )
        )
    return cases


def _linear_variant(case: dict, transpose: bool = True, bias: bool = True) -> torch.Tensor:
    t = as_tensors(case)
    weight = t["weight"].T if transpose else t["weight"]
    return t["features"] @ weight + (t["bias"] if bias else 0)


LINEAR = Question(
    qid="ex04_linear_projection",
    points=2,
    name="my_linear_projection",
    prompt="my_linear_projection(features, weight, bias) -> (B, N, D_lm): what nn.Linear does with "
    "its weight "
    "(D_lm, D_v) and bias (D_lm,), applied to every image token of features (B, N, D_v).",
    oracle=_linear_reference,
    references=("mmcourse.projection.make_projector",),
    # the first case is square (D_v = D_lm): a forgotten transpose runs there and gives wrong
    # numbers
    visible=(
        _linear_case(0, 1, 4, 8, 8),
        _linear_case(1, 2, 9, 16, 24),
        _linear_case(2, 1, 81, 32, 48),
    ),
    hidden=_linear_hidden,
    prepare=as_tensors,
    compare=Close(rtol=1e-5, atol=1e-5),
    describe=lambda case: (
        f"{_describe_features(case)}, weight {tuple(case['weight'].shape)}, "
        f"bias {tuple(case['bias'].shape)}"
    ),
    hints=(
        Hint(
            "nn.Linear stores its weight as (out, in) = (D_lm, D_v): multiply by its transpose, "
            "features @ weight.T.",
            lambda case, e, got: _close(got, _linear_variant(case, transpose=False)),
        ),
        Hint(
            "Add the bias: nn.Linear computes features @ weight.T + bias.",
            lambda case, e, got: _close(got, _linear_variant(case, bias=False)),
        ),
    ),
)

# --- ex04_mlp_projection
# ---------------------------------------------------------------------------------


def _mlp_case(seed: int, batch: int, tokens: int, in_dim: int, out_dim: int) -> dict:
    rng = np.random.default_rng(seed)
    w1, b1 = _weights(rng, out_dim, in_dim)
    w2, b2 = _weights(rng, out_dim, out_dim)
    features = rng.standard_normal((batch, tokens, in_dim)).astype(np.float32)
    return {"features": features, "w1": w1, "b1": b1, "w2": w2, "b2": b2}


def _mlp_reference(features, w1, b1, w2, b2):
    return _project("mlp", features, {"0.weight": w1, "0.bias": b1, "2.weight": w2, "2.bias": b2})


def _mlp_hidden(rng: random.Random, n: int) -> list[dict]:
    return [
        _mlp_case(
            rng.randrange(2**31),
            rng.randint(1, 3),
            rng.randint(2, 9),
            rng.choice([4, 8, 16, 32]),
            rng.choice([8, 16, 24, 48]),
        )
        for _ in range(n)
    ]


def _mlp_variant(
    case: dict, activation=F.gelu, bias1: bool = True, bias2: bool = True
) -> torch.Tensor:
    t = as_tensors(case)
    b1, b2 = (t["b1"] if bias1 else 0), (t["b2"] if bias2 else 0)
    return activation(t["features"] @ t["w1"].T + b1) @ t["w2"].T + b2


def _mlp_hint(*variants: dict):
    return lambda case, expected, got: any(_close(got, _mlp_variant(case, **v)) for v in variants)


MLP = Question(
    qid="ex04_mlp_projection",
    points=3,
    name="my_mlp_projection",
    prompt="my_mlp_projection(features, w1, b1, w2, b2) -> (B, N, D_lm): LLaVA-1.5's projector, "
    "Linear(D_v, D_lm) -> GELU (exact, erf) -> Linear(D_lm, D_lm), weights stored as nn.Linear "
    "does.",
    oracle=_mlp_reference,
    references=("mmcourse.projection.make_projector",),
    visible=(_mlp_case(0, 1, 4, 8, 16), _mlp_case(1, 2, 9, 16, 24), _mlp_case(2, 1, 81, 32, 48)),
    hidden=_mlp_hidden,
    prepare=as_tensors,
    # tight: the tanh approximation of GELU is off by up to ~5e-4 and must not pass
    compare=Close(rtol=1e-5, atol=1e-5),
    describe=lambda case: (
        f"{_describe_features(case)}, w1 {tuple(case['w1'].shape)}, w2 {tuple(case['w2'].shape)}"
    ),
    hints=(
        Hint(
            "That is ReLU; LLaVA-1.5's projector uses GELU (torch.nn.functional.gelu).",
            _mlp_hint({"activation": F.relu}),
        ),
        Hint(
            "That is GELU's tanh approximation; nn.GELU() is the exact one, x * Phi(x) with the "
            "erf: "
            "F.gelu(x) without approximate='tanh'.",
            _mlp_hint({"activation": lambda x: F.gelu(x, approximate="tanh")}),
        ),
        Hint(
            "There is no activation between the two layers: without GELU, two linear layers are "
            "just one "
            "linear layer.",
            _mlp_hint({"activation": lambda x: x}),
        ),
        Hint(
            "Both layers have a bias: x @ w.T + b, twice.",
            _mlp_hint({"bias1": False}, {"bias2": False}, {"bias1": False, "bias2": False}),
        ),
    ),
)

# --- ex04_parameter_count
# --------------------------------------------------------------------------------


def _count_reference(kind: str, in_dim: int, out_dim: int) -> int:
    with torch.device("meta"):  # the library's own module, counted without allocating its weights
        return projection.parameter_count(projection.make_projector(kind, in_dim, out_dim))


_SIZES = (8, 32, 64, 128, 192, 256, 512, 768, 1024, 2048, 4096, 5120)


def _count_hidden(rng: random.Random, n: int) -> list[dict]:
    cases = []
    for i in range(n):
        in_dim, out_dim = rng.sample(_SIZES, 2)  # distinct, so no two mistakes give the same number
        cases.append({"kind": "mlp" if i % 3 else "linear", "in_dim": in_dim, "out_dim": out_dim})
    return cases


def _no_biases(case, expected, got) -> bool:
    o = case["out_dim"]
    return got in ((expected - o, expected - 2 * o) if case["kind"] == "mlp" else (expected - o,))


def _two_in_out_layers(case, expected, got) -> bool:
    i, o = case["in_dim"], case["out_dim"]
    return case["kind"] == "mlp" and got in (2 * (i * o + o), 2 * i * o)


def _one_layer_only(case, expected, got) -> bool:
    i, o = case["in_dim"], case["out_dim"]
    return case["kind"] == "mlp" and got in (i * o + o, o * o + o)


COUNT = Question(
    qid="ex04_parameter_count",
    points=1,
    name="my_parameter_count",
    prompt="my_parameter_count(kind, in_dim, out_dim) -> int: the trainable parameters of "
    "make_projector(kind, in_dim, out_dim), 'linear' or 'mlp', computed from the sizes alone.",
    oracle=_count_reference,
    references=("mmcourse.projection.parameter_count", "mmcourse.projection.make_projector"),
    visible=(
        {"kind": "linear", "in_dim": 128, "out_dim": 192},
        {"kind": "mlp", "in_dim": 128, "out_dim": 192},
        {"kind": "mlp", "in_dim": 1024, "out_dim": 4096},
    ),
    hidden=_count_hidden,
    compare=Exact(),
    describe=lambda case: (
        f"kind={case['kind']!r}, in_dim={case['in_dim']}, out_dim={case['out_dim']}"
    ),
    hints=(
        Hint(
            "The second layer of the MLP maps D_lm to D_lm (out_dim x out_dim), not in_dim to "
            "out_dim.",
            _two_in_out_layers,
        ),
        Hint("Every nn.Linear has a bias too: out_features more parameters per layer.", _no_biases),
        Hint("The MLP has two Linear layers (with GELU between): count both.", _one_layer_only),
    ),
)

QUESTIONS = (LINEAR, MLP, COUNT)
