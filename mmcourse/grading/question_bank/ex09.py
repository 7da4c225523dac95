"""Exercise 09 (a pretrained, frozen language model): which parameters train in each stage, how many
LoRA adds, and a LoRA layer's forward pass by hand, equal to `peft`'s."""

from __future__ import annotations

import random

import numpy as np
import torch

from ... import frozen_lm
from ..judging import Close, Exact, Hint, Question, as_tensors

__all__ = ["QUESTIONS"]

# --- ex09_trainable -------------------------------------------------------------------------------


def _parameter_names(layers: int, lora: bool, projector: str, vision_layers: int) -> list[str]:
    """Parameter names as `MultimodalModel.named_parameters()` gives them (a Llama with or without
    `peft`'s adapters)."""
    names = ["vision_model.embeddings.patch_embedding.weight"]
    names += [
        f"vision_model.encoder.layers.{i}.self_attn.{m}.weight"
        for i in range(vision_layers)
        for m in ("q_proj", "v_proj")
    ]
    names += (
        ["projector.weight", "projector.bias"]
        if projector == "linear"
        else ["projector.0.weight", "projector.0.bias", "projector.2.weight", "projector.2.bias"]
    )
    prefix = "language_model.base_model.model." if lora else "language_model."
    names.append(prefix + "model.embed_tokens.weight")
    for i in range(layers):
        block = f"{prefix}model.layers.{i}."
        for module in ("self_attn.q_proj", "self_attn.v_proj", "mlp.down_proj"):
            if lora:
                names += [
                    f"{block}{module}.base_layer.weight",
                    f"{block}{module}.lora_A.default.weight",
                    f"{block}{module}.lora_B.default.weight",
                ]
            else:
                names.append(f"{block}{module}.weight")
        names.append(f"{block}input_layernorm.weight")
    names.append(prefix + "model.norm.weight")
    return names


def _trainable_case(tune: str, layers: int, projector: str, vision_layers: int = 1) -> dict:
    return {
        "names": _parameter_names(layers, tune == "lora", projector, vision_layers),
        "tune": tune,
    }


def _trainable_reference(names: list[str], tune: str) -> list[str]:
    return [name for name in names if frozen_lm.trains(name, tune)]


def _trainable_hidden(rng: random.Random, n: int) -> list[dict]:
    return [
        _trainable_case(
            frozen_lm.TUNES[i % 3],
            rng.randint(1, 4),
            rng.choice(["linear", "mlp"]),
            rng.randint(1, 3),
        )
        for i in range(n)
    ]


def _names_with(case: dict, predicate) -> list[str]:
    return [name for name in case["names"] if predicate(name)]


def _is_language(name: str) -> bool:
    return name.startswith("language_model.")


TRAINABLE = Question(
    qid="ex09_trainable",
    points=2,
    name="my_trainable",
    prompt="my_trainable(names, tune) -> list[str]: of a MultimodalModel's parameter names (in "
    "order), those that train when tune is 'projector' (stage 1), 'lora' or 'full' (stage 2); "
    "the vision tower is always frozen.",
    oracle=_trainable_reference,
    references=("mmcourse.frozen_lm.trains", "mmcourse.frozen_lm.freeze_for"),
    visible=(
        _trainable_case("projector", 2, "mlp"),
        _trainable_case("lora", 2, "mlp"),
        _trainable_case("full", 1, "linear"),
    ),
    hidden=_trainable_hidden,
    compare=Exact(),
    describe=lambda case: f"tune={case['tune']!r}, {len(case['names'])} parameter names",
    hints=(
        Hint(
            "The vision tower stays frozen in every stage: no name starting 'vision_model.' "
            "trains.",
            lambda case, expected, got: any(str(n).startswith("vision_model.") for n in got),
        ),
        Hint(
            "The projector trains in every stage: its names start with 'projector.'.",
            lambda case, expected, got: not any(str(n).startswith("projector.") for n in got),
        ),
        Hint(
            "With LoRA only the adapters train (names with 'lora_A' or 'lora_B'); the base "
            "weights, embeddings and norms stay as pretrained.",
            lambda case, expected, got: (
                case["tune"] == "lora"
                and any(_is_language(str(n)) and "lora_" not in str(n) for n in got)
            ),
        ),
        Hint(
            "Stage 1 trains the projector alone: nothing of the language model.",
            lambda case, expected, got: (
                case["tune"] == "projector" and any(_is_language(str(n)) for n in got)
            ),
        ),
        Hint(
            "Full fine-tuning trains every language-model parameter, embeddings and norms too.",
            lambda case, expected, got: (
                case["tune"] == "full" and got != expected and set(map(str, got)) < set(expected)
            ),
        ),
    ),
)

# --- ex09_lora_parameters -------------------------------------------------------------------------

_WIDTHS = (32, 64, 96, 128, 192, 256, 576, 768, 1536, 2048, 4096)


def _lora_count_reference(shapes: list[list[int]], rank: int) -> int:
    with torch.device("meta"):  # peft's own adapters, counted without allocating them
        return sum(
            _lora_numel(out_features, in_features, rank) for out_features, in_features in shapes
        )


def _lora_numel(out_features: int, in_features: int, rank: int) -> int:
    """The parameters `peft` adds to one nn.Linear(in, out) at `rank`."""
    from peft import LoraConfig, get_peft_model

    model = torch.nn.Sequential()
    model.add_module("q_proj", torch.nn.Linear(in_features, out_features))
    adapted = get_peft_model(model, LoraConfig(r=rank, target_modules=["q_proj"]))
    return sum(p.numel() for n, p in adapted.named_parameters() if "lora_" in n)


def _lora_count_hidden(rng: random.Random, n: int) -> list[dict]:
    cases = []
    for _ in range(n):
        shapes = []
        for _ in range(rng.randint(1, 4)):
            out_features, in_features = rng.sample(_WIDTHS, 2)
            shapes.append([out_features, in_features])
        cases.append({"shapes": shapes, "rank": rng.choice([1, 2, 4, 8, 16, 64])})
    return cases


def _sum_over(case: dict, per_layer) -> int:
    return sum(per_layer(o, i, case["rank"]) for o, i in case["shapes"])


LORA_PARAMETERS = Question(
    qid="ex09_lora_parameters",
    points=1,
    name="my_lora_parameters",
    prompt="my_lora_parameters(shapes, rank) -> int: the parameters LoRA adds at `rank` to linear "
    "layers whose weights are (out_features, in_features), one pair per layer in `shapes`.",
    oracle=_lora_count_reference,
    visible=(
        {"shapes": [[128, 128]], "rank": 8},
        {"shapes": [[576, 576], [192, 576], [1536, 576], [576, 1536]], "rank": 8},
        {"shapes": [[4096, 4096]], "rank": 16},
    ),
    hidden=_lora_count_hidden,
    compare=Exact(),
    describe=lambda case: f"shapes={case['shapes']}, rank={case['rank']}",
    hints=(
        Hint(
            "LoRA adds two small matrices, A (rank, in) and B (out, rank), not a full out x in "
            "matrix per rank.",
            lambda case, expected, got: got == _sum_over(case, lambda o, i, r: o * i * r),
        ),
        Hint(
            "Count both matrices: A (rank x in) and B (out x rank).",
            lambda case, expected, got: (
                got
                in (_sum_over(case, lambda o, i, r: r * i), _sum_over(case, lambda o, i, r: o * r))
            ),
        ),
        Hint(
            "Only the adapters are new: the frozen base weight (out x in) is not part of the "
            "count.",
            lambda case, expected, got: got == expected + _sum_over(case, lambda o, i, r: o * i),
        ),
    ),
)

# --- ex09_lora_forward ----------------------------------------------------------------------------


def _lora_case(seed: int, batch: int, in_features: int, out_features: int, rank: int, alpha: int):
    rng = np.random.default_rng(seed)
    f32 = np.float32
    return {
        "x": rng.standard_normal((batch, 3, in_features)).astype(f32),
        "weight": (rng.standard_normal((out_features, in_features)) / np.sqrt(in_features)).astype(
            f32
        ),
        "bias": rng.standard_normal(out_features).astype(f32) * f32(0.1),
        # B is zero when training starts; a trained one is not, and only then is the path checked
        "lora_a": (rng.standard_normal((rank, in_features)) / np.sqrt(in_features)).astype(f32),
        "lora_b": (rng.standard_normal((out_features, rank)) * 0.5).astype(f32),
        "alpha": alpha,
    }


def _lora_forward_reference(x, weight, bias, lora_a, lora_b, alpha):
    """`peft`'s LoRA layer with the case's weights, applied to x."""
    from peft import LoraConfig, get_peft_model

    rank, in_features = lora_a.shape
    model = torch.nn.Sequential()
    model.add_module("q_proj", torch.nn.Linear(in_features, weight.shape[0]))
    adapted = get_peft_model(
        model, LoraConfig(r=rank, lora_alpha=alpha, target_modules=["q_proj"], lora_dropout=0.0)
    )
    layer = adapted.base_model.model.q_proj
    with torch.no_grad():
        layer.base_layer.weight.copy_(weight)
        layer.base_layer.bias.copy_(bias)
        layer.lora_A["default"].weight.copy_(lora_a)
        layer.lora_B["default"].weight.copy_(lora_b)
        return layer(x)


def _lora_hidden(rng: random.Random, n: int) -> list[dict]:
    cases = []
    for _ in range(n):
        rank = rng.choice([1, 2, 4, 8])
        cases.append(
            _lora_case(
                rng.randrange(2**31),
                rng.randint(1, 3),
                rng.choice([8, 16, 24]),
                rng.choice([4, 12, 20]),
                rank,
                # never alpha == rank: a forgotten scale would pass
                rng.choice([a for a in (1, 2, 4, 16, 32) if a != rank]),
            )
        )
    return cases


def _lora_variant(case: dict, scale=None, bias: bool = True, base: bool = True) -> torch.Tensor:
    t = as_tensors(case)
    rank = t["lora_a"].shape[0]
    s = t["alpha"] / rank if scale is None else scale(t["alpha"], rank)
    out = s * (t["x"] @ t["lora_a"].T) @ t["lora_b"].T
    if base:
        out = out + t["x"] @ t["weight"].T
    return out + t["bias"] if bias else out


def _lora_close(got, alternative: torch.Tensor) -> bool:
    alt = alternative.numpy()
    return getattr(got, "shape", None) == alt.shape and np.allclose(got, alt, rtol=1e-4, atol=1e-5)


def _lora_hint(**variant):
    return lambda case, expected, got: _lora_close(got, _lora_variant(case, **variant))


LORA_FORWARD = Question(
    qid="ex09_lora_forward",
    points=3,
    name="my_lora_forward",
    prompt="my_lora_forward(x, weight, bias, lora_a, lora_b, alpha) -> (..., out): a LoRA linear "
    "layer as peft computes it, with the frozen nn.Linear weight (out, in) and bias, and the "
    "adapters A (rank, in) and B (out, rank).",
    oracle=_lora_forward_reference,
    references=("mmcourse.frozen_lm.lora_forward",),
    visible=(
        _lora_case(0, 1, 8, 4, 2, 16),
        _lora_case(1, 2, 16, 12, 4, 8),
        _lora_case(2, 1, 24, 20, 8, 32),
    ),
    hidden=_lora_hidden,
    prepare=as_tensors,
    compare=Close(rtol=1e-4, atol=1e-5),
    describe=lambda case: (
        f"x {tuple(case['x'].shape)}, weight {tuple(case['weight'].shape)}, "
        f"lora_a {tuple(case['lora_a'].shape)}, alpha={case['alpha']}"
    ),
    hints=(
        Hint(
            "The adapter's output is scaled by alpha / rank (peft's `scaling`), not by alpha.",
            _lora_hint(scale=lambda alpha, rank: alpha),
        ),
        Hint(
            "Scale the adapter's output by alpha / rank: without it, changing the rank changes "
            "how much the adapter weighs.",
            _lora_hint(scale=lambda alpha, rank: 1.0),
        ),
        Hint(
            "The frozen layer still runs: the output is x W^T + b plus the adapter's part.",
            lambda case, expected, got: (
                _lora_close(got, _lora_variant(case, base=False))
                or _lora_close(got, _lora_variant(case, base=False, bias=False))
            ),
        ),
        Hint("The frozen layer has a bias: add it once.", _lora_hint(bias=False)),
    ),
)

QUESTIONS = (TRAINABLE, LORA_PARAMETERS, LORA_FORWARD)
