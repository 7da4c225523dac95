"""The shapes world's scene graph: its vocabulary, objects and scenes, random scenes and the splits.

Lesson 00 teaches it (the package doc, `mmcourse.data`, has the whole picture). A scene is 1-3
objects, each a **color**, a **shape** and a **position** on a 3x3 grid, drawn from a seed: the same
seed always gives the same scene. Splits draw their seeds from disjoint ranges, so no evaluation
scene is ever a training scene.
"""

from __future__ import annotations

import random
from collections.abc import Iterable, Sequence
from dataclasses import dataclass

import numpy as np
from PIL import Image

__all__ = [
    "ALL_PAIRS",
    "BACKGROUND",
    "COLORS",
    "COUNT_ANSWERS",
    "DEFAULT_IMAGE_SIZE",
    "GRID",
    "KINDS",
    "MAX_OBJECTS",
    "MIN_IMAGE_SIZE",
    "OBJECT_FILL",
    "OUTLINE",
    "PAIR_GROUPS",
    "PALETTE",
    "PATCH_SIZE",
    "PLURALS",
    "POSITIONS",
    "SEEN_PAIRS",
    "SHAPES",
    "SPLITS",
    "SUPERSAMPLE",
    "WITHHELD_PAIRS",
    "YES_NO",
    "Scene",
    "SceneObject",
    "article",
    "random_scene",
    "scenes",
    "split_seed",
]

# --- vocabulary
# --------------------------------------------------------------------------------------

#: Okabe-Ito colorblind-safe palette under the plain names learners use.
PALETTE: dict[str, tuple[int, int, int]] = {
    "red": (213, 94, 0),  # vermillion
    "orange": (230, 159, 0),
    "yellow": (240, 228, 66),
    "green": (0, 158, 115),  # bluish green
    "blue": (0, 114, 178),
    "purple": (204, 121, 167),  # reddish purple
}
COLORS: tuple[str, ...] = tuple(PALETTE)
SHAPES: tuple[str, ...] = ("circle", "square", "triangle", "diamond")
PLURALS: dict[str, str] = {shape: shape + "s" for shape in SHAPES}
#: The 3x3 grid in reading order: top row first, left to right.
POSITIONS: tuple[str, ...] = (
    "top left",
    "top",
    "top right",
    "left",
    "center",
    "right",
    "bottom left",
    "bottom",
    "bottom right",
)
KINDS: tuple[str, ...] = ("color", "shape", "position", "count", "exists")
COUNT_ANSWERS: tuple[str, ...] = ("0", "1", "2", "3")
YES_NO: tuple[str, ...] = ("yes", "no")
MAX_OBJECTS = 3

ALL_PAIRS: tuple[tuple[str, str], ...] = tuple((c, s) for c in COLORS for s in SHAPES)
#: Withheld from every shipped model's training: each shape once, four different colors.
WITHHELD_PAIRS: tuple[tuple[str, str], ...] = (
    ("red", "triangle"),
    ("green", "circle"),
    ("blue", "square"),
    ("yellow", "diamond"),
)
SEEN_PAIRS: tuple[tuple[str, str], ...] = tuple(p for p in ALL_PAIRS if p not in WITHHELD_PAIRS)
PAIR_GROUPS = {"all": ALL_PAIRS, "seen": SEEN_PAIRS, "withheld": WITHHELD_PAIRS}

# --- image geometry (drawn by `render`) -------------------------------------------------------

GRID = 3
DEFAULT_IMAGE_SIZE = 72
PATCH_SIZE = 8
#: Below this a 3x3 grid cell is under 8 px and the shapes stop being recognisable.
MIN_IMAGE_SIZE = 24
BACKGROUND = (246, 246, 246)
OUTLINE = (34, 34, 34)
# : Shapes are drawn this many times larger, then box-filtered down: smooth edges, still
# deterministic.
SUPERSAMPLE = 4
OBJECT_FILL = (0.7, 0.9)  # fraction of the cell an object's side takes

#: Seed ranges of the splits; disjoint, so no evaluation scene is ever a training scene.
SPLITS: dict[str, range] = {
    "train": range(0, 1_000_000_000),
    "val": range(1_000_000_000, 1_100_000_000),
    "test": range(1_100_000_000, 1_200_000_000),
}


def article(word: str) -> str:
    """'an' before a vowel ("an orange circle"), else 'a'."""
    return "an" if word[:1] in "aeiou" else "a"


def _check_choice(value: str, allowed: Sequence[str], what: str) -> None:
    if value not in allowed:
        raise ValueError(f"unknown {what} {value!r}; the shapes world has: {', '.join(allowed)}.")


@dataclass(frozen=True)
class SceneObject:
    """One object: its color, shape and grid position; `size`, `dx`, `dy` (0-1) only move its
    pixels."""

    color: str
    shape: str
    position: str
    size: float = 0.8  # side as a fraction of the cell
    dx: float = 0.5  # where in the free margin of the cell (0 = left edge, 1 = right edge)
    dy: float = 0.5

    def __post_init__(self) -> None:
        _check_choice(self.color, COLORS, "color")
        _check_choice(self.shape, SHAPES, "shape")
        _check_choice(self.position, POSITIONS, "position")
        if not (OBJECT_FILL[0] <= self.size <= OBJECT_FILL[1]):
            raise ValueError(f"size must be in {OBJECT_FILL} of the cell, got {self.size}.")
        if not (0.0 <= self.dx <= 1.0 and 0.0 <= self.dy <= 1.0):
            raise ValueError(f"dx and dy must be in [0, 1], got {self.dx}, {self.dy}.")

    @property
    def pair(self) -> tuple[str, str]:
        return (self.color, self.shape)

    @property
    def phrase(self) -> str:
        return f"{article(self.color)} {self.color} {self.shape}"


@dataclass(frozen=True)
class Scene:
    """1-3 objects on distinct cells of the 3x3 grid. `objects` are kept in the order they were
    drawn."""

    objects: tuple[SceneObject, ...]
    seed: int | None = None

    def __post_init__(self) -> None:
        object.__setattr__(self, "objects", tuple(self.objects))
        if not 1 <= len(self.objects) <= MAX_OBJECTS:
            raise ValueError(f"a scene has 1 to {MAX_OBJECTS} objects, got {len(self.objects)}.")
        cells = [o.position for o in self.objects]
        if len(set(cells)) != len(cells):
            raise ValueError(
                f"two objects share a cell: {cells}; each object needs its own position."
            )

    @property
    def in_reading_order(self) -> tuple[SceneObject, ...]:
        return tuple(sorted(self.objects, key=lambda o: POSITIONS.index(o.position)))

    def render(self, size: int | None = None) -> Image.Image:
        """The scene as a PIL RGB image, `size` x `size` pixels (default 72)."""
        from .drawing import render

        return render(self, size)

    def to_dict(self) -> dict:
        """Plain data (JSON-safe): what graders and files pass around instead of objects."""
        return {
            "seed": self.seed,
            "objects": [
                {
                    "color": o.color,
                    "shape": o.shape,
                    "position": o.position,
                    "size": o.size,
                    "dx": o.dx,
                    "dy": o.dy,
                }
                for o in self.objects
            ],
        }

    @classmethod
    def from_dict(cls, data: dict) -> Scene:
        try:
            objects = tuple(SceneObject(**o) for o in data["objects"])
        except (KeyError, TypeError) as error:
            raise ValueError(
                "a scene dict needs 'objects': a list of {'color', 'shape', 'position'} dicts; "
                f"got {data!r:.200}"
            ) from error
        return cls(objects, data.get("seed"))

    @classmethod
    def from_triples(cls, triples: Iterable[tuple[str, str, str]]) -> Scene:
        """`Scene.from_triples([("red", "circle", "top left"), ...])`: a scene written by hand."""
        return cls(tuple(SceneObject(c, s, p) for c, s, p in triples))


# --- random scenes -------------------------------------------------------------------------------


def _resolve_pairs(pairs: str | Iterable[tuple[str, str]] | None) -> tuple[tuple[str, str], ...]:
    if pairs is None:
        return ALL_PAIRS
    if isinstance(pairs, str):
        if pairs not in PAIR_GROUPS:
            raise ValueError(
                f"unknown pair group {pairs!r}; use one of {', '.join(PAIR_GROUPS)} or a list of "
                "pairs."
            )
        return PAIR_GROUPS[pairs]
    resolved = tuple(tuple(p) for p in pairs)
    for color, shape in resolved:
        _check_choice(color, COLORS, "color")
        _check_choice(shape, SHAPES, "shape")
    if not resolved:
        raise ValueError("pairs is empty: give at least one (color, shape) pair.")
    return resolved  # type: ignore[return-value]


def _draw_object(rng: random.Random, pair: tuple[str, str], position: str) -> SceneObject:
    size = round(rng.uniform(*OBJECT_FILL), 3)
    return SceneObject(
        pair[0], pair[1], position, size, round(rng.random(), 3), round(rng.random(), 3)
    )


def _check_n_objects(n_objects: int | None) -> None:
    if n_objects is not None and (
        not isinstance(n_objects, int) or not 1 <= n_objects <= MAX_OBJECTS
    ):
        raise ValueError(
            f"n_objects must be 1, 2 or 3 (or None for a random count), got {n_objects!r}."
        )


def _scene_from_rng(
    rng: random.Random, n_objects: int | None, pairs: tuple[tuple[str, str], ...], seed: int | None
) -> Scene:
    n = n_objects if n_objects is not None else rng.randint(1, MAX_OBJECTS)
    positions = rng.sample(POSITIONS, n)
    return Scene(tuple(_draw_object(rng, rng.choice(pairs), p) for p in positions), seed)


def random_scene(
    seed: int, n_objects: int | None = None, pairs: str | Iterable | None = None
) -> Scene:
    """The scene of `seed`: 1-3 objects (or exactly `n_objects`) with pairs from `pairs`.

    `pairs` is "all" (default), "seen" (without `WITHHELD_PAIRS`), "withheld", or a list of (color,
    shape) pairs. The same arguments always give the same scene and the same pixels.
    """
    _check_n_objects(n_objects)
    if not isinstance(seed, (int, np.integer)) or isinstance(seed, bool):
        raise ValueError(f"seed must be an int, got {type(seed).__name__}.")
    return _scene_from_rng(random.Random(int(seed)), n_objects, _resolve_pairs(pairs), int(seed))


# --- splits
# ------------------------------------------------------------------------------------------


def split_seed(split: str, index: int) -> int:
    """The seed of example `index` of a split; splits use disjoint seed ranges."""
    if split not in SPLITS:
        raise ValueError(f"unknown split {split!r}; use one of {', '.join(SPLITS)}.")
    seeds = SPLITS[split]
    if not 0 <= index < len(seeds):
        raise ValueError(f"index {index} is outside the {split} split (0 .. {len(seeds) - 1}).")
    return seeds[index]


def scenes(
    split: str, n: int, start: int = 0, n_objects: int | None = None, pairs=None
) -> list[Scene]:
    """`n` scenes of a split, from example `start` on; `pairs` defaults to "seen" for train, "all"
    otherwise."""
    pairs = pairs if pairs is not None else ("seen" if split == "train" else "all")
    return [random_scene(split_seed(split, start + i), n_objects, pairs) for i in range(n)]
