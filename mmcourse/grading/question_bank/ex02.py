"""Exercise 02 (spatial patch features): the (B, H, W, D) grid, and a patch-similarity map."""

from __future__ import annotations

import random

import numpy as np
import torch

from ... import vision
from ..judging import Close, Hint, Question, as_tensors

__all__ = ["QUESTIONS"]


def _hidden_case(seed: int, batch: int, side: int, width: int) -> dict:
    values = (
        np.random.default_rng(seed)
        .standard_normal((batch, 1 + side * side, width))
        .astype(np.float32)
    )
    return {"last_hidden_state": values}


def _grid_hidden(rng: random.Random, n: int) -> list[dict]:
    return [
        _hidden_case(
            rng.randrange(2**31), rng.randint(1, 3), rng.choice([2, 3, 7, 9]), rng.choice([4, 16])
        )
        for _ in range(n)
    ]


def _dropped_last(case, expected, got) -> bool:
    tokens = case["last_hidden_state"][:, :-1]
    return got.shape == expected.shape and np.allclose(got, tokens.reshape(expected.shape))


def _transposed(case, expected, got) -> bool:
    return got.shape == expected.shape and np.allclose(got, expected.transpose(0, 2, 1, 3))


GRID = Question(
    qid="ex02_spatial_grid",
    points=2,
    name="my_spatial_grid",
    prompt="my_spatial_grid(last_hidden_state) -> (B, H, W, D): drop [CLS], lay the N = H*W patch "
    "tokens out as the image.",
    oracle=vision.spatial_grid,
    visible=(_hidden_case(0, 1, 3, 4), _hidden_case(1, 2, 9, 8), _hidden_case(2, 1, 7, 4)),
    hidden=_grid_hidden,
    prepare=as_tensors,
    compare=Close(rtol=0.0, atol=0.0),
    describe=lambda case: f"last_hidden_state of shape {tuple(case['last_hidden_state'].shape)}",
    hints=(
        Hint(
            "[CLS] is the *first* token of last_hidden_state; drop it, keep all the patches.",
            _dropped_last,
        ),
        Hint(
            "Rows and columns are swapped: token r * W + c is the patch at row r, column c.",
            _transposed,
        ),
    ),
)


def _map_case(seed: int, side: int, width: int, row: int, col: int) -> dict:
    grid = np.random.default_rng(seed).standard_normal((side, side, width)).astype(np.float32)
    return {"grid": grid, "row": row, "col": col}


def _map_hidden(rng: random.Random, n: int) -> list[dict]:
    cases = []
    for _ in range(n):
        side = rng.choice([3, 5, 9])
        cases.append(
            _map_case(
                rng.randrange(2**31),
                side,
                rng.choice([8, 32]),
                rng.randrange(side),
                rng.randrange(side),
            )
        )
    return cases


def _dot_product(case, expected, got) -> bool:
    grid = case["grid"]
    return np.allclose(got, grid @ grid[case["row"], case["col"]], atol=1e-4)


def _row_col_swapped(case, expected, got) -> bool:
    alt = vision.patch_similarity_map(
        torch.from_numpy(case["grid"]), case["col"], case["row"]
    ).numpy()
    return case["row"] != case["col"] and np.allclose(got, alt, atol=1e-5)


SIMILARITY = Question(
    qid="ex02_similarity_map",
    points=2,
    name="my_similarity_map",
    prompt="my_similarity_map(grid, row, col) -> (H, W): cosine similarity of every patch to patch "
    "(row, col).",
    oracle=vision.patch_similarity_map,
    visible=(_map_case(0, 3, 4, 0, 2), _map_case(1, 9, 16, 4, 4), _map_case(2, 9, 16, 7, 1)),
    hidden=_map_hidden,
    prepare=as_tensors,
    compare=Close(rtol=1e-4, atol=1e-5),
    describe=lambda case: (
        f"a grid of shape {tuple(case['grid'].shape)}, patch (row={case['row']}, col={case['col']})"
    ),
    hints=(
        Hint(
            "Cosine similarity, not the dot product: normalize the patch vectors to unit length "
            "first.",
            _dot_product,
        ),
        Hint("Row and column are swapped: the chosen patch is grid[row, col].", _row_col_swapped),
    ),
)

QUESTIONS = (GRID, SIMILARITY)
