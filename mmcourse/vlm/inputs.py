"""What the language model reads: image tokens, then the text, with the attention mask and the
labels.

Lesson 05 builds it step by step. For one example:

    [image tokens: N projected vectors] [BOS] question [EOS] answer [EOS]
     attention mask: 1 on every one of them (the image positions too), 0 on padding
     labels:         -100 on the image and the prompt; the answer's ids and its [EOS] (the loss is
     only there)
"""

from __future__ import annotations

from typing import TYPE_CHECKING

import torch

__all__ = ["IGNORE_INDEX", "join_inputs", "sequence_table", "text_row"]

if TYPE_CHECKING:
    from .model import MultimodalModel

IGNORE_INDEX = -100


def join_inputs(
    image_embeds: torch.Tensor,
    text_embeds: torch.Tensor,
    attention_mask: torch.Tensor,
    labels: torch.Tensor | None = None,
) -> dict[str, torch.Tensor]:
    """What the language model reads: image tokens first, then the text. Lesson 05 builds it step by
    step.

    image_embeds (B, N, D) and text_embeds (B, T, D) -> `inputs_embeds` (B, N + T, D); the text's
    attention_mask (B, T) -> (B, N + T) with 1 on every image position (the tutorial forgets them:
    the model then cannot see the image); labels (B, T) -> (B, N + T) with -100 on the image
    positions (nothing to predict there).
    """
    if image_embeds.shape[-1] != text_embeds.shape[-1]:
        raise ValueError(
            f"image tokens are {image_embeds.shape[-1]} wide but the word embeddings are "
            f"{text_embeds.shape[-1]}: project the image tokens to the LM's hidden size first."
        )
    b, n_img, _ = image_embeds.shape
    device = text_embeds.device
    # (B, N + T, D)
    inputs_embeds = torch.cat([image_embeds.to(device, text_embeds.dtype), text_embeds], dim=1)
    ones = torch.ones(b, n_img, dtype=attention_mask.dtype, device=device)
    joined = {
        "inputs_embeds": inputs_embeds,
        "attention_mask": torch.cat([ones, attention_mask.to(device)], dim=1),
    }
    if labels is not None:
        ignore = torch.full((b, n_img), IGNORE_INDEX, dtype=labels.dtype, device=device)
        joined["labels"] = torch.cat([ignore, labels.to(device)], dim=1)  # (B, N + T)
    return joined


def text_row(
    prompt_ids: list[int], answer_ids: list[int], eos_id: int, pad_id: int, length: int
) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    """One right-padded training row: prompt, answer, [EOS], then padding up to `length`. Lesson 05
    builds it.

    -> `input_ids`, `attention_mask` (1 on the text, 0 on padding) and `labels`, each (length,)
    int64. The labels are the answer's ids and its [EOS] at their own positions (the language model
    shifts them itself), -100 on the prompt (given, not predicted) and on the padding. `answer_ids`
    are the answer's words, without the [EOS].
    """
    sequence = [*prompt_ids, *answer_ids, eos_id]
    if len(sequence) > length:
        raise ValueError(
            f"the prompt, answer and [EOS] are {len(sequence)} tokens; they do not fit in "
            f"length={length}."
        )
    ids = torch.full((length,), pad_id, dtype=torch.long)
    mask = torch.zeros(length, dtype=torch.long)
    labels = torch.full((length,), IGNORE_INDEX, dtype=torch.long)
    ids[: len(sequence)] = torch.tensor(sequence, dtype=torch.long)
    mask[: len(sequence)] = 1
    labels[len(prompt_ids) : len(sequence)] = torch.tensor([*answer_ids, eos_id], dtype=torch.long)
    return ids, mask, labels


def sequence_table(model: MultimodalModel, question: str, answer: str) -> dict[str, list]:
    """One training example as lesson 05 draws it: per position of the full sequence, the token's
    text, its kind ("image", "prompt", "answer", "pad"), the attention-mask value and the label (a
    token's text or
    "-100")."""
    batch = model.training_batch([question], [answer])
    n_img = model.num_image_tokens
    ids = batch["input_ids"][0].tolist()
    mask = [1] * n_img + batch["attention_mask"][0].tolist()
    labels = model.full_labels(batch["labels"])[0].tolist()
    prompt_length = len(model.prompt_ids(question))
    kinds = ["image"] * n_img + [
        "pad" if m == 0 else ("prompt" if i < prompt_length else "answer")
        for i, m in enumerate(batch["attention_mask"][0])
    ]
    tokens = [f"img{i}" for i in range(n_img)] + model.tokenizer.convert_ids_to_tokens(ids)
    label_text = [
        "-100" if t == IGNORE_INDEX else model.tokenizer.convert_ids_to_tokens(t) for t in labels
    ]
    return {"tokens": tokens, "kinds": kinds, "attention_mask": mask, "labels": label_text}
