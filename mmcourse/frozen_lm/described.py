"""Scenes described in words, and a text-only language model reading them (lesson 09).

A described scene is 9 words, one per cell in reading order, written where the image tokens will go;
a text row is the VLM's training row with those words in place of the image tokens.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

import torch
from torch import nn

from .. import data
from ..vlm import IGNORE_INDEX, generate_tokens, text_row

__all__ = [
    "CELL_WORDS",
    "EMPTY",
    "TextLM",
    "build_lm_tokenizer",
    "cell_word",
    "cell_words",
    "describe_scenes",
    "described_scene",
    "read_scenes",
    "text_batch",
]

EMPTY = "empty"


def _place(position: str) -> str:
    return position.replace(" ", "_")


def cell_word(color: str | None, shape: str | None, position: str) -> str:
    """The one word of a cell: "red_circle" for a red circle; "empty_top_left" for nothing at the
    top left. An empty cell says where it is, so the place of an object can be read off its
    neighbours (with nine identical "empty" words, a tiny Llama must count positions, and measured
    71 % on "where" questions)."""
    if color is None or shape is None:
        return f"{EMPTY}_{position.replace(' ', '_')}"
    return f"{color}_{shape}"


#: Every cell word, in a fixed order (ids never move). The withheld pairs have words too, but the
#: language model never reads them: like every shipped model, it never meets those pairs.
CELL_WORDS: tuple[str, ...] = (
    *(cell_word(None, None, p) for p in data.POSITIONS),
    *(cell_word(c, s, "") for c, s in data.ALL_PAIRS),
)


def cell_words(scene: data.Scene) -> list[str]:
    """The scene as 9 words, one per cell in reading order (the order of `data.POSITIONS`)."""
    by_position = {o.position: (o.color, o.shape) for o in scene.objects}
    return [cell_word(*by_position.get(p, (None, None)), p) for p in data.POSITIONS]


def described_scene(scene: data.Scene) -> str:
    """A scene in words: "empty_top_left red_circle empty_top_right empty_left ..."."""
    return " ".join(cell_words(scene))


def build_lm_tokenizer():
    """The course tokenizer with the cell words appended (the course's ids are unchanged)."""
    from ..tokenizer import build_tokenizer

    return build_tokenizer(CELL_WORDS)


def _scene_ids(tokenizer, scene: data.Scene) -> list[int]:
    return tokenizer(described_scene(scene), add_special_tokens=False)["input_ids"]


def _prompt_ids(tokenizer, question: str) -> list[int]:
    return list(tokenizer(data.normalize_question(question) if question else "")["input_ids"])


def text_batch(
    tokenizer, scenes: Sequence[data.Scene | None], questions: Sequence[str], answers: Sequence[str]
) -> dict[str, torch.Tensor]:
    """Right-padded text rows for the language model alone: the described scene (none for `None`),
    then `[BOS] question [EOS] answer [EOS]`, with -100 on everything but the answer. (B, T) each.

    A row is the VLM's training row (lesson 05) with the 9 image tokens replaced by the 9 cell
    words, at the same positions.
    """
    if not (len(scenes) == len(questions) == len(answers)) or not scenes:
        raise ValueError("give as many scenes (or None), questions and answers, at least one.")
    eos, pad = tokenizer.eos_token_id, tokenizer.pad_token_id
    parts = [
        (
            [] if scene is None else _scene_ids(tokenizer, scene),
            _prompt_ids(tokenizer, question),
            tokenizer(answer, add_special_tokens=False)["input_ids"],
        )
        for scene, question, answer in zip(scenes, questions, answers)
    ]
    length = max(len(s) + len(p) + len(a) + 1 for s, p, a in parts)
    rows = []
    for scene_ids, prompt, answer in parts:
        ids, mask, labels = text_row(prompt, answer, eos, pad, length - len(scene_ids))
        prefix = torch.tensor(scene_ids, dtype=torch.long)
        rows.append(
            (
                torch.cat([prefix, ids]),
                torch.cat([torch.ones_like(prefix), mask]),
                torch.cat([torch.full_like(prefix, IGNORE_INDEX), labels]),
            )
        )
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

    def generation_inputs(
        self, scenes: Sequence[data.Scene], questions: Sequence[str]
    ) -> dict[str, torch.Tensor]:
        """Left-padded `inputs_embeds` (B, L, D) and `attention_mask` (B, L): the described scene,
        then each prompt; the same path as an image's tokens, with word embeddings in their
        place."""
        rows = [
            _scene_ids(self.tokenizer, s) + _prompt_ids(self.tokenizer, q)
            for s, q in zip(scenes, questions, strict=True)
        ]
        length = max(len(r) for r in rows)
        pad = self.tokenizer.pad_token_id
        ids = torch.tensor([[pad] * (length - len(r)) + r for r in rows], device=self.device)
        mask = torch.tensor(
            [[0] * (length - len(r)) + [1] * len(r) for r in rows], device=self.device
        )
        embeds = self.language_model.get_input_embeddings()(ids)  # (B, L, D)
        return {"inputs_embeds": embeds, "attention_mask": mask}


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
