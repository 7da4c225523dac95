"""Using a VLM: one generate path, and the tutorial's `generate_caption` and `visual_qa` done right.

Lessons 06 and 07 teach it. Prompts are left-padded, so every row ends where generation starts;
decoding goes through the tokenizer (not the model), and the length is `max_new_tokens` (not
`max_length`). `step_times` times greedy decoding one step at a time, with and without the KV cache
(lesson 06's figure); `generate` itself always keeps the cache when it reads `inputs_embeds`.
"""

from __future__ import annotations

import time
import warnings
from dataclasses import dataclass
from typing import TYPE_CHECKING

import torch

__all__ = [
    "Beam",
    "StepTimes",
    "beam_tree",
    "generate_caption",
    "generate_tokens",
    "step_times",
    "until_eos",
    "visual_qa",
    "warn_unknown_words",
]

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


@dataclass(frozen=True)
class StepTimes:
    """Greedy decoding timed step by step: the new ids (B, G) and the seconds each step took."""

    ids: torch.Tensor
    seconds: list[float]


@torch.no_grad()
def step_times(
    model: MultimodalModel, inputs: dict[str, torch.Tensor], new_tokens: int, use_cache: bool
) -> StepTimes:
    """Greedy decoding of exactly `new_tokens` tokens ([EOS] is never chosen, as `min_new_tokens`
    does), one timed forward pass per token: with the KV cache (each step reads one new position and
    the cached keys and values of the others) or without (each step re-reads the whole sequence)."""
    embeds, mask = inputs["inputs_embeds"], inputs["attention_mask"]  # (B, L, D), (B, L)
    step_input, cache, ids, seconds = embeds, None, [], []
    for _ in range(new_tokens):
        start = time.perf_counter()
        out = model.language_model(
            inputs_embeds=step_input,
            attention_mask=mask,
            position_ids=(mask.cumsum(-1) - 1).clamp(min=0)[:, -step_input.shape[1] :],
            cache=cache,
            use_cache=use_cache,
        )
        last = out.logits[:, -1].clone()  # (B, V)
        last[:, model.tokenizer.eos_token_id] = float("-inf")
        next_ids = last.argmax(dim=-1)  # (B,)
        seconds.append(time.perf_counter() - start)
        ids.append(next_ids)
        new = model.embed_text(next_ids[:, None])  # (B, 1, D)
        mask = torch.cat([mask, mask.new_ones(len(mask), 1)], dim=1)  # (B, L + 1)
        if use_cache:
            step_input, cache = new, out.cache
        else:
            embeds = torch.cat([embeds, new], dim=1)  # (B, L + 1, D)
            step_input = embeds
    return StepTimes(torch.stack(ids, dim=1), seconds)  # ids (B, G)


@dataclass(frozen=True)
class Beam:
    """One partial text kept by beam search: its new ids, their summed log-probability, and the
    index of the beam it extends in the step before (-1 at the first step)."""

    ids: tuple[int, ...]
    logprob: float
    parent: int


@torch.no_grad()
def beam_tree(
    model: MultimodalModel, inputs: dict[str, torch.Tensor], num_beams: int, steps: int
) -> list[list[Beam]]:
    """Beam search by hand on one prompt (batch 1), for a picture: the beams kept at each of
    `steps` steps, best first. Every beam is extended by every token; the `num_beams` highest
    summed log-probabilities survive. [EOS] is not allowed, so all beams have one length and this
    equals `generate(num_beams=...)` for `steps` tokens, whose length penalty then changes nothing.
    """
    embeds, mask = inputs["inputs_embeds"], inputs["attention_mask"]  # (1, L, D), (1, L)
    beams, tree = [Beam((), 0.0, -1)], []
    for _ in range(steps):
        ids = torch.tensor([b.ids for b in beams], dtype=torch.long, device=embeds.device)  # (K, t)
        # (K, L + t, D): each beam's whole sequence
        rows = torch.cat([embeds.expand(len(beams), -1, -1), model.embed_text(ids)], dim=1)
        grown = torch.cat([mask, mask.new_ones(1, len(beams[0].ids))], dim=1).expand(len(beams), -1)
        logits = model.language_model(inputs_embeds=rows, attention_mask=grown).logits[:, -1]
        logp = logits.float().log_softmax(dim=-1)  # (K, V)
        logp[:, model.tokenizer.eos_token_id] = float("-inf")
        total = logp + torch.tensor([b.logprob for b in beams], device=logp.device)[:, None]
        best = total.flatten().topk(num_beams)  # over every (beam, token) pair
        vocab = logp.shape[-1]
        beams = [
            Beam((*beams[i // vocab].ids, i % vocab), v, i // vocab)
            for v, i in zip(best.values.tolist(), best.indices.tolist())
        ]
        tree.append(beams)
    return tree


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
