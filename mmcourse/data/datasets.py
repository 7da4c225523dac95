"""The shapes world as PyTorch datasets: (image, alt text), (image, caption), (image, question,
answer).

Lesson 00 shows them. Each example is drawn from its own seed when it is read, so a dataset of any
size costs no memory, and `collate` stacks a list of them into a batch.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import dataclass, field

import torch

from .drawing import image_to_tensor, render
from .qa import qa_example
from .text import alt_text, caption
from .world import (
    DEFAULT_IMAGE_SIZE,
    Scene,
    _check_n_objects,
    _resolve_pairs,
    random_scene,
    split_seed,
)

__all__ = ["AltTextDataset", "CaptionDataset", "QADataset", "collate"]


@dataclass
class _SceneDataset(torch.utils.data.Dataset):
    """Examples `start` .. `start + size - 1` of a split, each drawn from its own seed on access."""

    split: str = "train"
    size: int = 10_000
    image_size: int = DEFAULT_IMAGE_SIZE
    n_objects: int | None = None
    pairs: str | tuple | None = None
    start: int = 0
    _pairs: tuple = field(init=False, repr=False)

    def __post_init__(self) -> None:
        split_seed(self.split, self.start)  # validates the split name and range
        split_seed(self.split, self.start + max(self.size - 1, 0))
        _check_n_objects(self.n_objects)
        # validates image_size
        render(Scene.from_triples([("red", "circle", "center")]), self.image_size)
        default = "seen" if self.split == "train" else "all"
        self._pairs = _resolve_pairs(self.pairs if self.pairs is not None else default)

    def __len__(self) -> int:
        return self.size

    def _seed(self, index: int) -> int:
        if not -self.size <= index < self.size:
            raise IndexError(f"index {index} out of range for a dataset of {self.size} examples")
        return split_seed(self.split, self.start + index % self.size)


class AltTextDataset(_SceneDataset):
    """(image, alt text) pairs: what a CLIP trains on."""

    def __getitem__(self, index: int) -> dict:
        scene = random_scene(self._seed(index), self.n_objects, self._pairs)
        return {"image": scene.render(self.image_size), "text": alt_text(scene), "scene": scene}


class CaptionDataset(_SceneDataset):
    """(image, dense caption) pairs: what a captioning VLM trains on."""

    def __getitem__(self, index: int) -> dict:
        scene = random_scene(self._seed(index), self.n_objects, self._pairs)
        return {"image": scene.render(self.image_size), "text": caption(scene), "scene": scene}


@dataclass
class QADataset(_SceneDataset):
    """(image, question, answer) triples with balanced answers; `kind` fixes one question kind."""

    kind: str | None = None

    def __getitem__(self, index: int) -> dict:
        scene, qa = qa_example(self._seed(index), self.kind, self._pairs, self.n_objects)
        return {
            "image": scene.render(self.image_size),
            "question": qa.question,
            "answer": qa.answer,
            "kind": qa.kind,
            "scene": scene,
        }


def collate(batch: Sequence[dict], tokenizer: Callable | None = None) -> dict:
    """Stack a list of dataset items: images -> uint8 (B, 3, H, W); texts stay lists of str.

    With a tokenizer (`functools.partial(collate, tokenizer=tok)`), "text" also becomes padded
    `input_ids` / `attention_mask` (B, T).
    """
    if not batch:
        raise ValueError("cannot collate an empty batch.")
    # (B, 3, H, W)
    out: dict = {"images": torch.stack([image_to_tensor(item["image"]) for item in batch])}
    for key in batch[0]:
        if key != "image":
            # "text" -> "texts", "scene" -> "scenes", ...
            out[key + "s"] = [item[key] for item in batch]
    if tokenizer is not None and "texts" in out:
        encoded = tokenizer(out["texts"], padding=True, return_tensors="pt")
        # (B, T)
        out["input_ids"], out["attention_mask"] = (encoded["input_ids"], encoded["attention_mask"])
    return out
