"""The loss a VLM learns from, and the log-probability of an answer under it.

Lesson 05 teaches `answer_loss`; lesson 06 scores decoders with `answer_logprobs`.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

import torch
from torch import nn

from .inputs import IGNORE_INDEX

__all__ = ["answer_logprobs", "answer_loss"]

if TYPE_CHECKING:
    from .model import MultimodalModel


def answer_loss(logits: torch.Tensor, labels: torch.Tensor, per: str = "example") -> torch.Tensor:
    """Next-token cross-entropy on the labelled positions. logits (B, T, V), labels (B, T), image
    positions included.

    `per="token"` is Hugging Face's mean over every labelled token of the batch: a 3-object caption
    (24 labels with its [EOS]) then outweighs a one-word answer (2 labels) 12 to 1, and the model
    learns to caption long before it learns to answer. `per="example"` averages within each example
    first, so every caption and every answer counts the same.
    """
    if per not in ("token", "example"):
        raise ValueError(f"per must be 'token' or 'example', got {per!r}.")
    targets = labels[:, 1:].to(logits.device)  # (B, T-1): position t predicts token t+1
    # (B, T-1)
    losses = nn.functional.cross_entropy(
        logits[:, :-1].transpose(1, 2).float(), targets, ignore_index=IGNORE_INDEX, reduction="none"
    )
    counted = (targets != IGNORE_INDEX).float()
    if counted.sum() == 0:
        raise ValueError(
            "every label is -100: there is nothing to learn from (the loss would be 0 or NaN)."
        )
    if per == "token":
        return (losses * counted).sum() / counted.sum()
    per_example = (losses * counted).sum(1) / counted.sum(1).clamp(min=1)  # (B,)
    has_labels = counted.sum(1) > 0
    return per_example[has_labels].mean()


@torch.no_grad()
def answer_logprobs(
    model: MultimodalModel, images, questions: list[str], answers: list[str]
) -> torch.Tensor:
    """log p(answer + [EOS] | image, question) under the model, one per example: (B,). Lesson 06
    scores decoders."""
    batch = model.training_batch(questions, answers)
    labels = model.full_labels(batch.pop("labels"))
    logits = model(model.pixel_values(images), **batch).logits.float()  # (B, L, V)
    targets = labels[:, 1:]
    # (B, L-1)
    logp = torch.log_softmax(logits[:, :-1], dim=-1).gather(-1, targets.clamp(min=0)[..., None])[
        ..., 0
    ]
    return (logp * (targets != IGNORE_INDEX)).sum(dim=1).cpu()
