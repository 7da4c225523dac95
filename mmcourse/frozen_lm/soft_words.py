"""What the projector learned: are projected image tokens soft words? (LiMBeR's question, lesson
09)."""

from __future__ import annotations

import torch
from torch import nn

from .. import data
from ..vlm import MultimodalModel
from .described import EMPTY

__all__ = ["attribute_hits", "nearest_cells", "nearest_words", "possible_cells", "word_hits"]


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


def _cosine(tokens: torch.Tensor, table: torch.Tensor) -> torch.Tensor:
    """(B, N, D), (V, D) -> (B, N, V) cosine similarities."""
    return nn.functional.normalize(tokens.float(), dim=-1) @ (
        nn.functional.normalize(table.float(), dim=-1).T
    )


def possible_cells() -> list[list[str]]:
    """Every cell a described scene can hold: each position, empty or with any color and shape."""
    return [
        [*content, *position.split()]
        for position in data.POSITIONS
        for content in ([EMPTY], *([c, s] for c, s in data.ALL_PAIRS))
    ]


@torch.no_grad()
def nearest_cells(model: MultimodalModel, images) -> list[list[list[str]]]:
    """For each image and image token, the described cell whose vector (the sum of its words'
    embeddings) is nearest by cosine: the token read back as words. Needs a tokenizer with "empty"
    (shapes-lm's)."""
    cells = possible_cells()
    table = model.language_model.get_input_embeddings()
    width = max(len(c) for c in cells)
    ids = torch.zeros(len(cells), width, dtype=torch.long)
    used = torch.zeros(len(cells), width)
    for i, words in enumerate(cells):
        ids[i, : len(words)] = torch.tensor(model.tokenizer.convert_tokens_to_ids(words))
        used[i, : len(words)] = 1
    device = table.weight.device
    # the sum of `scene_embeddings`, for every possible cell at once: (C, W, D) -> (C, D)
    vectors = (table(ids.to(device)) * used.to(device)[..., None]).sum(1)
    tokens = model.encode_image(model.pixel_values(images))  # (B, N_img, D)
    best = _cosine(tokens, vectors).argmax(-1)  # (B, N_img)
    return [[cells[i] for i in image.tolist()] for image in best]


def attribute_hits(read: list[str], cell: list[str]) -> dict[str, bool]:
    """Which attributes of a cell (`cell_words`, e.g. ["red", "circle", "top", "left"]) a cell read
    back from a token (`nearest_cells`) gets right: for an object its color, shape, position and
    all; for an empty cell that it is empty, and where."""

    def place(words: list[str]) -> list[str]:
        return words[1:] if words[0] == EMPTY else words[2:]

    if cell[0] == EMPTY:
        return {"empty": read[0] == EMPTY, "position": place(read) == place(cell)}
    return {
        "color": read[0] == cell[0],
        "shape": read[0] != EMPTY and read[1] == cell[1],
        "position": place(read) == place(cell),
        "all": read == cell,
    }


def word_hits(nearest: list[str], cell: list[str]) -> dict[str, bool]:
    """Whether a token's nearest words (`nearest_words`, any vocabulary) include the color and the
    shape of the object in its cell."""
    return {"color": cell[0] in nearest, "shape": len(cell) > 1 and cell[1] in nearest}
