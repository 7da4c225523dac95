"""What the projector learned: are projected image tokens soft words? (LiMBeR's question, lesson
09)."""

from __future__ import annotations

import torch
from torch import nn

from .. import data
from ..vlm import MultimodalModel
from .described import EMPTY

__all__ = ["attribute_hits", "nearest_words"]


# --- what the projector learned -------------------------------------------------------------------


@torch.no_grad()
def nearest_words(model: MultimodalModel, images, k: int = 1) -> list[list[list[str]]]:
    """For each image and each image token, the `k` words whose input embeddings are nearest (by
    cosine) to the projected token: LiMBeR's question, "are image tokens soft words?"."""
    tokens = model.encode_image(model.pixel_values(images))  # (B, N_img, D)
    vocabulary = model.language_model.get_input_embeddings().weight  # (V, D)
    similarity = (
        nn.functional.normalize(tokens.float(), dim=-1)
        @ nn.functional.normalize(vocabulary.float(), dim=-1).T
    )  # (B, N_img, V)
    top = similarity.topk(k, dim=-1).indices  # (B, N_img, k)
    return [
        [model.tokenizer.convert_ids_to_tokens(cell.tolist()) for cell in image] for image in top
    ]


def _reading(word: str) -> tuple[str | None, str | None, str | None, bool]:
    """(color, shape, position, empty) that a word says: a course word ("red", "circle", "center")
    says one thing at most, a cell word the cell's content (an empty one its position too)."""
    parts = word.split("_")
    if parts[0] == EMPTY and len(parts) > 1:
        return None, None, " ".join(parts[1:]), True
    if len(parts) == 2 and parts[0] in data.COLORS and parts[1] in data.SHAPES:
        return parts[0], parts[1], None, False
    return (
        word if word in data.COLORS else None,
        word if word in data.SHAPES else None,
        word if word in data.POSITIONS else None,
        word == EMPTY,
    )


def attribute_hits(word: str, cell: str) -> dict[str, bool]:
    """Which of a cell's attributes a word names. `cell` is a cell word ("red_circle" or
    "empty_top_left"). For an object: its color, its shape, and both (the cell word itself); for an
    empty cell: that it is empty, and where."""
    color, shape, position, empty = _reading(word)
    true_color, true_shape, true_position, true_empty = _reading(cell)
    if true_empty:
        return {"empty": empty, "position": position == true_position}
    return {"color": color == true_color, "shape": shape == true_shape, "both": word == cell}
