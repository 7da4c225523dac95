"""Using a VLM: one generate path, and the tutorial's `generate_caption` and `visual_qa` done right.

Lessons 06 and 07 teach it. Prompts are left-padded, so every row ends where generation starts;
decoding goes through the tokenizer (not the model), and the length is `max_new_tokens` (not
`max_length`).
"""

from __future__ import annotations

import warnings
from typing import TYPE_CHECKING

import torch

__all__ = ["generate_caption", "generate_tokens", "until_eos", "visual_qa", "warn_unknown_words"]

if TYPE_CHECKING:
    from .model import MultimodalModel


def warn_unknown_words(model: MultimodalModel, text: str) -> list[str]:
    """Warn (and return them) about words the tokenizer maps to its unknown token: the model cannot
    read them."""
    unk = model.tokenizer.unk_token_id
    if unk is None:
        return []
    from ..tokenizer import words

    unknown = [
        w
        for w in dict.fromkeys(words(text))
        if unk in model.tokenizer(w, add_special_tokens=False)["input_ids"]
    ]
    if unknown:
        warnings.warn(
            f"the model does not know the word(s) {unknown} in {text!r}: it reads them as "
            f"{model.tokenizer.unk_token} "
            "and its answer is a guess. Ask in the words of the course's questions (see "
            "data.questions).",
            stacklevel=3,
        )
    return unknown


@torch.no_grad()
def generate_tokens(
    model: MultimodalModel,
    inputs: dict[str, torch.Tensor],
    max_new_tokens: int,
    num_beams: int = 1,
    do_sample: bool = False,
    **generate_kwargs,
):
    """The one call of the language model's `generate`, on left-padded `inputs_embeds` and
    `attention_mask`.

    With `inputs_embeds` only, `generate` returns just the new token ids (B, G) (or, with
    `return_dict_in_generate=True`, its output object); [EOS] ends a row and [PAD] fills it after.
    """
    return model.language_model.generate(
        **inputs,
        max_new_tokens=max_new_tokens,
        num_beams=num_beams,
        do_sample=do_sample,
        eos_token_id=model.tokenizer.eos_token_id,
        pad_token_id=model.tokenizer.pad_token_id,
        **generate_kwargs,
    )


def until_eos(ids: list[int], eos_id: int) -> list[int]:
    """A row of generated ids up to and with its first [EOS] (what `generate` pads after it is
    dropped)."""
    return ids[: ids.index(eos_id) + 1] if eos_id in ids else ids


@torch.no_grad()
def _generate(
    model: MultimodalModel,
    images,
    questions: list[str],
    max_new_tokens: int,
    num_beams: int,
    do_sample: bool,
    **generate_kwargs,
) -> list[str]:
    model.eval()
    inputs = model.generation_inputs(model.pixel_values(images), questions)
    output = generate_tokens(model, inputs, max_new_tokens, num_beams, do_sample, **generate_kwargs)
    return [text.strip() for text in model.tokenizer.batch_decode(output, skip_special_tokens=True)]


def generate_caption(
    model: MultimodalModel,
    image,
    max_new_tokens: int = 32,
    num_beams: int = 5,
    do_sample: bool = False,
    **generate_kwargs,
):
    """The caption of one image (a str) or of a list of images (a list of str)."""
    images = image if isinstance(image, (list, tuple)) else [image]
    texts = _generate(
        model, images, [""] * len(images), max_new_tokens, num_beams, do_sample, **generate_kwargs
    )
    return texts if isinstance(image, (list, tuple)) else texts[0]


def visual_qa(
    model: MultimodalModel,
    image,
    question,
    max_new_tokens: int = 8,
    num_beams: int = 1,
    do_sample: bool = False,
    **generate_kwargs,
):
    """The answer to a question about an image (str), or to one question per image of a list (list
    of str)."""
    batch = isinstance(image, (list, tuple))
    images = image if batch else [image]
    questions = list(question) if isinstance(question, (list, tuple)) else [question] * len(images)
    if len(questions) != len(images):
        raise ValueError(
            f"{len(images)} images but {len(questions)} questions; give one question per image."
        )
    for q in dict.fromkeys(questions):
        warn_unknown_words(model, q)
    answers = _generate(
        model, images, questions, max_new_tokens, num_beams, do_sample, **generate_kwargs
    )
    return answers if batch else answers[0]
