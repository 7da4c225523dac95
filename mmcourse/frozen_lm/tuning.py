"""What trains in each stage, and LoRA: by hand and through `peft` (lesson 09)."""

from __future__ import annotations

from dataclasses import dataclass

import torch
from torch import nn

from ..vlm import MultimodalModel

__all__ = [
    "LORA_TARGETS",
    "TUNES",
    "LoraSettings",
    "add_lora",
    "count_parameters",
    "freeze_for",
    "lora_forward",
    "merge_lora",
    "trains",
]


# --- freezing and counting ------------------------------------------------------------------------

#: What trains besides the projector: nothing (stage 1), LoRA adapters, or the whole language model.
TUNES = ("projector", "lora", "full")


def trains(name: str, tune: str) -> bool:
    """Whether the parameter `name` of a `MultimodalModel` trains when tuning `tune`: the projector
    always; the vision tower never; the language model wholly ("full"), only its LoRA adapters
    ("lora", never a base weight), or not at all ("projector")."""
    if tune not in TUNES:
        raise ValueError(f"tune must be one of {', '.join(TUNES)}, got {tune!r}.")
    part = name.split(".", 1)[0]
    if part == "projector":
        return True
    if part != "language_model" or tune == "projector":
        return False
    return tune == "full" or ".lora_" in name


def freeze_for(model: MultimodalModel, tune: str) -> MultimodalModel:
    """Set `requires_grad` on every parameter by `trains`; returns the model."""
    for name, parameter in model.named_parameters():
        parameter.requires_grad_(trains(name, tune))
    return model


def count_parameters(model: MultimodalModel) -> dict[str, tuple[int, int]]:
    """Per part ("vision", "projector", "language", "all"): (trainable, total) parameter counts."""
    parts = {
        "vision": model.vision_model,
        "projector": model.projector,
        "language": model.language_model,
        "all": model,
    }
    return {
        name: (
            sum(p.numel() for p in part.parameters() if p.requires_grad),
            sum(p.numel() for p in part.parameters()),
        )
        for name, part in parts.items()
    }


# --- LoRA -----------------------------------------------------------------------------------------

#: Every linear layer of a Llama block: attention and MLP (QLoRA's finding: adapt all of them).
LORA_TARGETS = ("q_proj", "k_proj", "v_proj", "o_proj", "gate_proj", "up_proj", "down_proj")


@dataclass(frozen=True)
class LoraSettings:
    """Low-rank adapters (Hu et al., 2021): W x + (alpha / rank) B A x, with A (rank, in) and B
    (out, rank); B starts at zero, so training starts from the pretrained model exactly."""

    rank: int = 8
    alpha: int = 16
    dropout: float = 0.0
    targets: tuple[str, ...] = LORA_TARGETS


def add_lora(language_model: nn.Module, settings: LoraSettings = LoraSettings()):
    """`peft`'s LoRA on `language_model`: every base weight frozen, the adapters trainable."""
    import warnings

    from peft import LoraConfig, get_peft_model

    config = LoraConfig(
        r=settings.rank,
        lora_alpha=settings.alpha,
        lora_dropout=settings.dropout,
        target_modules=list(settings.targets),
        bias="none",
        task_type="CAUSAL_LM",
    )
    with warnings.catch_warnings():
        # peft asks transformers 5 a deprecated question (is_gradient_checkpointing); harmless
        warnings.filterwarnings("ignore", "`is_gradient_checkpointing`", FutureWarning)
        return get_peft_model(language_model, config)


def merge_lora(peft_model: nn.Module) -> nn.Module:
    """The plain model with each adapter folded into its weight: W + (alpha / rank) B A."""
    return peft_model.merge_and_unload()


def lora_forward(
    x: torch.Tensor,
    weight: torch.Tensor,
    bias: torch.Tensor | None,
    lora_a: torch.Tensor,
    lora_b: torch.Tensor,
    scale: float,
) -> torch.Tensor:
    """A LoRA linear layer by hand: (..., in) -> (..., out) = x W^T + b + scale (x A^T) B^T."""
    out = x @ weight.T + scale * (x @ lora_a.T) @ lora_b.T
    return out if bias is None else out + bias
