"""Exercise 02 (spatial patch features): the (B, H, W, D) grid, a patch-similarity map, and which
cell of the scene a feature is found in."""

from __future__ import annotations

import random

import numpy as np
import torch
import torch.nn.functional as F

from ... import data, vision
from ..judging import Close, Exact, Hint, Question, as_tensors

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


# --- ex02_locate
# -------------------------------------------------------------------------------------


def _cell_scores(
    grid: torch.Tensor,
    query: torch.Tensor,
    cosine: bool = True,
    pool: str = "mean",
    blocks: bool = True,
    per_cell: int | None = None,
) -> torch.Tensor:
    """(9,) one score per cell in reading order; the keyword arguments make the usual mistakes."""
    side, width = grid.shape[0], grid.shape[-1]
    flat = grid.reshape(side * side, width)  # (N, D)
    if cosine:
        flat, query = F.normalize(flat, dim=-1), F.normalize(query, dim=0)
    similarity = flat @ query  # (N,)
    k = per_cell or side // 3
    if blocks:
        cells = [data.cell_patches(p, image_size=3 * k, patch_size=1) for p in data.POSITIONS]
        # a grid larger than 3k: the cells' patch indices on the real, wider grid
        cells = [[(i // (3 * k)) * side + i % (3 * k) for i in cell] for cell in cells]
        groups = similarity[torch.tensor(cells)]  # (9, k * k)
    else:  # runs of consecutive patches
        groups = similarity.reshape(9, -1)
    return groups.mean(dim=1) if pool == "mean" else groups.max(dim=1).values


def _locate_reference(grid: torch.Tensor, query: torch.Tensor) -> str:
    return data.POSITIONS[int(_cell_scores(grid, query).argmax())]


def _locate_variant(case, transpose=False, least=False, **mistake) -> str:
    scores = _cell_scores(
        torch.from_numpy(case["grid"]), torch.from_numpy(case["query"]), **mistake
    )
    if transpose:
        scores = scores.reshape(3, 3).T.reshape(9)
    return data.POSITIONS[int(scores.argmin() if least else scores.argmax())]


def _locate_mistake(**mistake):
    return lambda case, expected, got: got == _locate_variant(case, **mistake)


def _locate_case(seed: int, per_cell: int, width: int, plant: str | None) -> dict:
    """A grid of 3 x 3 cells of `per_cell` x `per_cell` patches, patch norms spread widely; with
    `plant`, that cell holds noisy copies of one direction and the query is another copy."""
    rng = np.random.default_rng(seed)
    side = 3 * per_cell
    grid = rng.standard_normal((side, side, width)) * rng.lognormal(0.0, 0.8, (side, side, 1))
    query = rng.standard_normal(width)
    if plant is not None:
        row, col = divmod(data.POSITIONS.index(plant), 3)
        block = np.s_[row * per_cell : (row + 1) * per_cell, col * per_cell : (col + 1) * per_cell]
        grid[block] = 0.3 * grid[block] + query
        query = query + 0.5 * rng.standard_normal(width)
    return {"grid": grid.astype(np.float32), "query": query.astype(np.float32)}


def _locate_hidden(rng: random.Random, n: int) -> list[dict]:
    return [
        _locate_case(
            rng.randrange(2**31),
            rng.choice([1, 2, 3, 3, 4]),
            rng.choice([4, 16, 32]),
            rng.choice([None, *data.POSITIONS]),
        )
        for _ in range(n)
    ]


# visible cases chosen (by seed) so that each mistake below is recognized by its own hint
_LOCATE_VISIBLE = (
    _locate_case(18, 3, 16, None),  # each mistake gives its own wrong answer here
    _locate_case(27, 3, 16, "top right"),
    _locate_case(1, 2, 8, "left"),
    _locate_case(28, 4, 16, None),
)

LOCATE = Question(
    qid="ex02_locate",
    points=3,
    name="my_locate",
    prompt="my_locate(grid, query) -> str: the position name (data.POSITIONS) of the scene cell "
    "whose patches are, on average, most cosine-similar to the query.",
    oracle=_locate_reference,
    references=("mmcourse.data.cell_patches", "mmcourse.vision.patch_similarity_map"),
    visible=_LOCATE_VISIBLE,
    hidden=_locate_hidden,
    prepare=as_tensors,
    compare=Exact(),
    describe=lambda case: (
        f"a grid of shape {tuple(case['grid'].shape)} "
        f"(cells of {case['grid'].shape[0] // 3} x {case['grid'].shape[0] // 3} patches), "
        f"a query of width {case['query'].shape[0]}"
    ),
    hints=(
        Hint(
            "That is the *least* similar cell: take the argmax of the cell scores.",
            _locate_mistake(least=True),
        ),
        Hint(
            "Rows and columns of the cells are swapped: data.POSITIONS is in reading order, "
            "cell row first (index 3 * cell_row + cell_col).",
            _locate_mistake(transpose=True),
        ),
        Hint(
            "Your cells are runs of consecutive patches: a cell is a square block of the grid, "
            "k x k patches from several rows (k = side / 3).",
            _locate_mistake(blocks=False),
        ),
        Hint(
            "Cosine similarity, not the dot product: a patch with a large norm must not win by "
            "its norm alone. Normalize the patches and the query.",
            _locate_mistake(cosine=False),
        ),
        Hint(
            "Score a cell by the *mean* similarity of its patches, not by its best patch.",
            _locate_mistake(pool="max"),
        ),
        Hint(
            "A cell is side / 3 patches wide, not always 3: the checker tries grids of several "
            "sizes.",
            lambda case, e, got: (
                case["grid"].shape[0] > 9 and got == _locate_variant(case, per_cell=3)
            ),
        ),
    ),
)

QUESTIONS = (GRID, SIMILARITY, LOCATE)
