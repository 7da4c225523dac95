"""Scenes described in words, and a text-only language model reading them (lesson 09).

A described scene is 9 vectors, one per cell in reading order, written where the image tokens will
go. Each is the *sum of the word embeddings* of what the cell holds and where it is: "red circle top
left", or "empty top left" for nothing there. A soft word, as LiMBeR asks of image tokens, made of
real words. Why not one token per cell: with nine words like `red_circle` and `empty`, a tiny Llama
learned a bag-of-words shortcut (it found the one missing "empty" of a one-object scene, and guessed
between the missing ones of busier scenes: "where" questions 100 % with one object, 51 % with two,
38 % with three); a cell that says where it is leaves nothing to count.

A text row is the VLM's training row with the 9 cell vectors in place of the image tokens, joined by
the same `vlm.join_inputs`.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

import torch
from torch import nn

from .. import data
from ..vlm import generate_tokens, join_inputs, text_row

__all__ = [
    "EMPTY",
    "TextLM",
    "build_lm_tokenizer",
    "cell_words",
    "describe_scenes",
    "described_scene",
    "load_lm",
    "read_scenes",
    "scene_embeddings",
    "text_batch",
]

#: The one word the course vocabulary lacks for a described scene.
EMPTY = "empty"


def cell_words(scene: data.Scene) -> list[list[str]]:
    """The words of each of the 9 cells, in reading order: ["red", "circle", "top", "left"] for a
    red circle at the top left, ["empty", "top"] for nothing at the top."""
    by_position = {o.position: [o.color, o.shape] for o in scene.objects}
    return [by_position.get(p, [EMPTY]) + p.split() for p in data.POSITIONS]


def described_scene(scene: data.Scene) -> str:
    """The described scene as text, cells apart: "empty top left | red circle top | ..."."""
    return " | ".join(" ".join(words) for words in cell_words(scene))


def build_lm_tokenizer():
    """The course tokenizer with the word "empty" appended (the course's ids are unchanged)."""
    from ..tokenizer import build_tokenizer

    return build_tokenizer([EMPTY])


def scene_embeddings(language_model: nn.Module, tokenizer, scenes: Sequence[data.Scene]):
    """(B, 9, D): each cell's vector, the sum of its words' input embeddings."""
    table = language_model.get_input_embeddings()
    cells = [cell_words(scene) for scene in scenes]
    width = max(len(words) for scene in cells for words in scene)  # 4: color shape top left
    ids = torch.zeros(len(cells), len(data.POSITIONS), width, dtype=torch.long)
    used = torch.zeros(ids.shape)
    for b, scene in enumerate(cells):
        for c, words in enumerate(scene):
            ids[b, c, : len(words)] = torch.tensor(tokenizer.convert_tokens_to_ids(words))
            used[b, c, : len(words)] = 1
    device = table.weight.device
    # (B, 9, W, D) summed over the words of each cell -> (B, 9, D)
    return (table(ids.to(device)) * used.to(device, table.weight.dtype)[..., None]).sum(2)


def _prompt_ids(tokenizer, question: str) -> list[int]:
    return list(tokenizer(data.normalize_question(question) if question else "")["input_ids"])


def text_batch(
    tokenizer, questions: Sequence[str], answers: Sequence[str]
) -> dict[str, torch.Tensor]:
    """The text after the scene, right-padded: `[BOS] question [EOS] answer [EOS]`, with -100 on
    all but the answer and its [EOS]; (B, T) each, as `MultimodalModel.training_batch` gives."""
    if len(questions) != len(answers) or not questions:
        raise ValueError("give as many questions as answers, at least one.")
    eos, pad = tokenizer.eos_token_id, tokenizer.pad_token_id
    pairs = [
        (_prompt_ids(tokenizer, q), tokenizer(a, add_special_tokens=False)["input_ids"])
        for q, a in zip(questions, answers)
    ]
    length = max(len(p) + len(a) + 1 for p, a in pairs)
    rows = [text_row(prompt, answer, eos, pad, length) for prompt, answer in pairs]
    ids, mask, labels = (torch.stack(part) for part in zip(*rows))  # each (B, T)
    return {"input_ids": ids, "attention_mask": mask, "labels": labels}


@dataclass
class TextLM:
    """A language model with its tokenizer, reading described scenes (what `generate_tokens`
    needs)."""

    language_model: nn.Module
    tokenizer: object

    @property
    def device(self) -> torch.device:
        return next(self.language_model.parameters()).device

    def embed(self, ids: torch.Tensor) -> torch.Tensor:
        return self.language_model.get_input_embeddings()(ids.to(self.device))

    def training_inputs(
        self, scenes: Sequence[data.Scene] | None, questions: Sequence[str], answers: Sequence[str]
    ) -> dict[str, torch.Tensor]:
        """`inputs_embeds`, `attention_mask` and `labels` for the language model: the described
        scenes (none when `scenes` is None: captions alone), then the text."""
        batch = text_batch(self.tokenizer, questions, answers)
        text = self.embed(batch["input_ids"])  # (B, T, D)
        if scenes is None:
            return {
                "inputs_embeds": text,
                "attention_mask": batch["attention_mask"].to(self.device),
                "labels": batch["labels"].to(self.device),
            }
        cells = scene_embeddings(self.language_model, self.tokenizer, scenes)  # (B, 9, D)
        return join_inputs(cells, text, batch["attention_mask"], batch["labels"])

    def generation_inputs(
        self, scenes: Sequence[data.Scene], questions: Sequence[str]
    ) -> dict[str, torch.Tensor]:
        """Left-padded `inputs_embeds` (B, L, D) and `attention_mask` (B, L): the described scene,
        then each prompt (the VLM's generation path, with cell vectors for image tokens)."""
        cells = scene_embeddings(self.language_model, self.tokenizer, scenes)  # (B, 9, D)
        prompts = [_prompt_ids(self.tokenizer, q) for q in questions]
        length = cells.shape[1] + max(len(p) for p in prompts)
        pad = self.embed(torch.tensor([self.tokenizer.pad_token_id]))[0]  # (D,)
        embeds = pad.expand(len(prompts), length, -1).clone()  # (B, L, D)
        mask = torch.zeros(len(prompts), length, dtype=torch.long, device=self.device)
        for i, prompt in enumerate(prompts):
            row = torch.cat([cells[i], self.embed(torch.tensor(prompt, dtype=torch.long))])
            embeds[i, length - len(row) :] = row
            mask[i, length - len(row) :] = 1
        return {"inputs_embeds": embeds, "attention_mask": mask}


def load_lm(name: str = "shapes-lm", device: torch.device | str | None = None) -> TextLM:
    """A text-only Llama and its tokenizer: the shipped `shapes-lm` or any folder in HF format."""
    from .. import checkpoints
    from ..utils import get_device

    with checkpoints.quiet_transformers():
        from transformers import AutoTokenizer, LlamaForCausalLM

    folder = checkpoints.resolve(name)
    model = checkpoints.from_pretrained(LlamaForCausalLM, folder)
    model = model.to(torch.device(device) if device is not None else get_device()).eval()
    return TextLM(model, checkpoints.from_pretrained(AutoTokenizer, folder))


@torch.no_grad()
def read_scenes(
    reader: TextLM,
    scenes: Sequence[data.Scene],
    questions: Sequence[str],
    max_new_tokens: int = 32,
    batch_size: int = 128,
) -> list[str]:
    """Greedy answers of a text-only language model to questions about described scenes ("" asks
    for the scene's caption)."""
    if len(scenes) != len(questions):
        raise ValueError(f"{len(scenes)} scenes but {len(questions)} questions; give one each.")
    reader.language_model.eval()
    out: list[str] = []
    for i in range(0, len(scenes), batch_size):
        inputs = reader.generation_inputs(scenes[i : i + batch_size], questions[i : i + batch_size])
        ids = generate_tokens(reader, inputs, max_new_tokens)
        out += [t.strip() for t in reader.tokenizer.batch_decode(ids, skip_special_tokens=True)]
    return out


def describe_scenes(reader: TextLM, scenes: Sequence[data.Scene]) -> list[str]:
    """The language model's captions of described scenes (an empty question)."""
    return read_scenes(reader, scenes, [""] * len(scenes))
