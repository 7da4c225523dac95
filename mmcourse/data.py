"""The shapes world: procedural scenes, their texts and questions, splits, baselines and datasets.

Lesson 00 teaches it. Everything in the course trains and evaluates on it offline and deterministically:
a scene is 1-3 objects, each a **color**, a **shape** and a **position** on a 3x3 grid, drawn from a seed.

Image/patch alignment: the default image is 72 px and the course's ViTs use 8 px patches, so the grid is
9x9 patches and each of the 3x3 cells is exactly 3x3 patches (`cell_patches`). Objects fill 70-90 % of
their cell and never leave it, so "where is the red circle?" has a clean answer in patch space.

The two texts, as in the real world:

- `alt_text(scene)`: what CLIP trains on, like web alt text. The objects' colors and shapes in reading
  order; the position is said only for a lone object:
  "a red circle at the top left", "a red circle and a blue square", "a red circle, a blue square and a
  green triangle".
- `caption(scene)`: the dense description a VLM learns. Its grammar, parsed back exactly by
  `parse_caption`::

      caption  := object                                  (one object)
                | object " and " object                   (two)
                | object ", " object " and " object       (three)
      object   := article " " color " " shape " at the " position
      article  := "an" before "orange", else "a"

  Objects are in reading order (the order of `POSITIONS`: top row first, left to right).

Questions (`questions(scene)`), asked only where the answer is unique:

    color     "What color is the {shape}?"            -> a color
    shape     "What shape is the {color} object?"     -> a shape
    position  "Where is the {color} {shape}?"         -> a position name
    count     "How many {shape}s are there?"          -> "0" .. "3"
    exists    "Is there a {color} {shape}?"           -> "yes" / "no"   ("an orange ...")

`qa_example(seed)` draws a scene *around* a question so that answers are balanced: every kind equally
often, `exists` half yes and half no (a "no" differs from a present object by one attribute), `count`
uniform over 0-3. Accuracies are always reported beside `MajorityBaseline` and `QuestionOnlyBaseline`.

Splits: `train`, `val` and `test` draw seeds from disjoint ranges (`SPLITS`). The compositional split:
the color-shape pairs in `WITHHELD_PAIRS` never occur in training data (`pairs="seen"`); they are
evaluated on their own (`pairs="withheld"`).
"""

from __future__ import annotations

import random
import re
from collections import Counter, defaultdict
from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass, field

import numpy as np
import torch
from PIL import Image, ImageDraw

# --- vocabulary --------------------------------------------------------------------------------------

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
    "top left", "top", "top right",
    "left", "center", "right",
    "bottom left", "bottom", "bottom right",
)  # fmt: skip
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

# --- image geometry ----------------------------------------------------------------------------------

GRID = 3
DEFAULT_IMAGE_SIZE = 72
PATCH_SIZE = 8
#: Below this a 3x3 grid cell is under 8 px and the shapes stop being recognisable.
MIN_IMAGE_SIZE = 24
BACKGROUND = (246, 246, 246)
OUTLINE = (34, 34, 34)
#: Shapes are drawn this many times larger, then box-filtered down: smooth edges, still deterministic.
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
    """One object: its color, shape and grid position; `size`, `dx`, `dy` (0-1) only move its pixels."""

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
    """1-3 objects on distinct cells of the 3x3 grid. `objects` are kept in the order they were drawn."""

    objects: tuple[SceneObject, ...]
    seed: int | None = None

    def __post_init__(self) -> None:
        object.__setattr__(self, "objects", tuple(self.objects))
        if not 1 <= len(self.objects) <= MAX_OBJECTS:
            raise ValueError(f"a scene has 1 to {MAX_OBJECTS} objects, got {len(self.objects)}.")
        cells = [o.position for o in self.objects]
        if len(set(cells)) != len(cells):
            raise ValueError(f"two objects share a cell: {cells}; each object needs its own position.")

    @property
    def in_reading_order(self) -> tuple[SceneObject, ...]:
        return tuple(sorted(self.objects, key=lambda o: POSITIONS.index(o.position)))

    def render(self, size: int | None = None) -> Image.Image:
        """The scene as a PIL RGB image, `size` x `size` pixels (default 72)."""
        return render(self, size)

    def to_dict(self) -> dict:
        """Plain data (JSON-safe): what graders and files pass around instead of objects."""
        return {
            "seed": self.seed,
            "objects": [
                {"color": o.color, "shape": o.shape, "position": o.position, "size": o.size, "dx": o.dx, "dy": o.dy}
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


# --- drawing scenes ----------------------------------------------------------------------------------


def _resolve_pairs(pairs: str | Iterable[tuple[str, str]] | None) -> tuple[tuple[str, str], ...]:
    if pairs is None:
        return ALL_PAIRS
    if isinstance(pairs, str):
        if pairs not in PAIR_GROUPS:
            raise ValueError(f"unknown pair group {pairs!r}; use one of {', '.join(PAIR_GROUPS)} or a list of pairs.")
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
    return SceneObject(pair[0], pair[1], position, size, round(rng.random(), 3), round(rng.random(), 3))


def _check_n_objects(n_objects: int | None) -> None:
    if n_objects is not None and (not isinstance(n_objects, int) or not 1 <= n_objects <= MAX_OBJECTS):
        raise ValueError(f"n_objects must be 1, 2 or 3 (or None for a random count), got {n_objects!r}.")


def _scene_from_rng(
    rng: random.Random, n_objects: int | None, pairs: tuple[tuple[str, str], ...], seed: int | None
) -> Scene:
    n = n_objects if n_objects is not None else rng.randint(1, MAX_OBJECTS)
    positions = rng.sample(POSITIONS, n)
    return Scene(tuple(_draw_object(rng, rng.choice(pairs), p) for p in positions), seed)


def random_scene(seed: int, n_objects: int | None = None, pairs: str | Iterable | None = None) -> Scene:
    """The scene of `seed`: 1-3 objects (or exactly `n_objects`) with pairs from `pairs`.

    `pairs` is "all" (default), "seen" (without `WITHHELD_PAIRS`), "withheld", or a list of
    (color, shape) pairs. The same arguments always give the same scene and the same pixels.
    """
    _check_n_objects(n_objects)
    if not isinstance(seed, (int, np.integer)) or isinstance(seed, bool):
        raise ValueError(f"seed must be an int, got {type(seed).__name__}.")
    return _scene_from_rng(random.Random(int(seed)), n_objects, _resolve_pairs(pairs), int(seed))


def cell_box(position: str, size: int) -> tuple[int, int, int, int]:
    """Pixel box (left, top, right, bottom) of a grid cell in an image of `size` px; right/bottom exclusive."""
    _check_choice(position, POSITIONS, "position")
    row, col = divmod(POSITIONS.index(position), GRID)
    return (col * size // GRID, row * size // GRID, (col + 1) * size // GRID, (row + 1) * size // GRID)


def cell_patches(position: str, image_size: int = DEFAULT_IMAGE_SIZE, patch_size: int = PATCH_SIZE) -> list[int]:
    """Indices (row-major, without [CLS]) of the ViT patches that cover a grid cell.

    Needs an image whose cells are a whole number of patches (72 px / 8 px patches: 3x3 patches a cell).
    """
    if image_size % (GRID * patch_size):
        raise ValueError(
            f"an image of {image_size} px with {patch_size} px patches does not split each of the {GRID}x{GRID} "
            f"cells into whole patches; use an image size that is a multiple of {GRID * patch_size}."
        )
    per_side = image_size // patch_size
    per_cell = per_side // GRID
    row, col = divmod(POSITIONS.index(position), GRID)
    return [
        (row * per_cell + r) * per_side + col * per_cell + c for r in range(per_cell) for c in range(per_cell)
    ]


def _polygon(shape: str, box: tuple[float, float, float, float]) -> list[tuple[float, float]] | None:
    x0, y0, x1, y1 = box
    cx, cy = (x0 + x1) / 2, (y0 + y1) / 2
    if shape == "triangle":
        return [(cx, y0), (x1, y1), (x0, y1)]
    if shape == "diamond":
        return [(cx, y0), (x1, cy), (cx, y1), (x0, cy)]
    return None


def render(scene: Scene, size: int | None = None) -> Image.Image:
    """Draw `scene` as a PIL RGB image of `size` x `size` px (default `DEFAULT_IMAGE_SIZE`)."""
    size = DEFAULT_IMAGE_SIZE if size is None else size
    if not isinstance(size, (int, np.integer)) or isinstance(size, bool) or size < MIN_IMAGE_SIZE:
        raise ValueError(
            f"image size must be an int of at least {MIN_IMAGE_SIZE} px (each of the 3x3 cells needs 8 px "
            f"for a recognisable shape), got {size!r}."
        )
    big = int(size) * SUPERSAMPLE
    canvas = Image.new("RGB", (big, big), BACKGROUND)
    draw = ImageDraw.Draw(canvas)
    outline_width = max(1, big // 100)
    for obj in scene.objects:
        left, top, right, bottom = cell_box(obj.position, big)
        # PIL draws edges inclusively and outlines outward-ish: keep a margin so no pixel leaves the cell
        margin = outline_width + 1
        usable = min(right - left, bottom - top) - 2 * margin
        side = obj.size * usable
        x0 = left + margin + obj.dx * (usable - side)
        y0 = top + margin + obj.dy * (usable - side)
        box = (x0, y0, x0 + side, y0 + side)
        fill = PALETTE[obj.color]
        polygon = _polygon(obj.shape, box)
        if obj.shape == "circle":
            draw.ellipse(box, fill=fill, outline=OUTLINE, width=outline_width)
        elif obj.shape == "square":
            draw.rectangle(box, fill=fill, outline=OUTLINE, width=outline_width)
        else:
            draw.polygon(polygon, fill=fill, outline=OUTLINE, width=outline_width)
    return canvas.resize((int(size), int(size)), Image.Resampling.BOX)


# --- texts -------------------------------------------------------------------------------------------


def _join(phrases: Sequence[str]) -> str:
    if len(phrases) == 1:
        return phrases[0]
    return ", ".join(phrases[:-1]) + " and " + phrases[-1]


def alt_text(scene: Scene) -> str:
    """Web-style alt text: colors and shapes in reading order; a position only for a lone object."""
    objects = scene.in_reading_order
    if len(objects) == 1:
        return f"{objects[0].phrase} at the {objects[0].position}"
    return _join([o.phrase for o in objects])


def caption(scene: Scene) -> str:
    """The dense caption: every object with its position, in reading order (grammar in the module doc)."""
    return _join([f"{o.phrase} at the {o.position}" for o in scene.in_reading_order])


_OBJECT = r"(an?) ({}) ({}) at the ({})".format(
    "|".join(COLORS), "|".join(SHAPES), "|".join(sorted(POSITIONS, key=len, reverse=True))
)
_CAPTION_RES = [
    re.compile(rf"^{_OBJECT}$"),
    re.compile(rf"^{_OBJECT} and {_OBJECT}$"),
    re.compile(rf"^{_OBJECT}, {_OBJECT} and {_OBJECT}$"),
]


def parse_caption(text: str) -> list[tuple[str, str, str]] | None:
    """The (color, shape, position) triples of a caption in the grammar of `caption`, or None if it is not.

    Case, spacing around commas and a final full stop are normalized first, so a decoded
    "A red circle at the top left , a ..." parses; anything else outside the grammar does not.
    """
    normal = re.sub(r"[^\w\s,]", " ", text.lower())
    normal = " ".join(re.sub(r"\s*,\s*", ", ", normal).split())
    for pattern in _CAPTION_RES:
        match = pattern.match(normal)
        if match:
            groups = match.groups()
            objects = [groups[i : i + 4] for i in range(0, len(groups), 4)]  # (article, color, shape, position)
            if any(a != article(color) for a, color, _, _ in objects):
                return None
            return [(color, shape, position) for _, color, shape, position in objects]
    return None


# --- questions ---------------------------------------------------------------------------------------


@dataclass(frozen=True)
class QA:
    """A question about a scene, its one correct answer, and its kind (one of `KINDS`)."""

    question: str
    answer: str
    kind: str


def color_question(shape: str) -> str:
    return f"What color is the {shape}?"


def shape_question(color: str) -> str:
    return f"What shape is the {color} object?"


def position_question(color: str, shape: str) -> str:
    return f"Where is the {color} {shape}?"


def count_question(shape: str) -> str:
    return f"How many {PLURALS[shape]} are there?"


def exists_question(color: str, shape: str) -> str:
    return f"Is there {article(color)} {color} {shape}?"


_KIND_PATTERNS = {
    "color": re.compile(r"^what color is the (\w+)$"),
    "shape": re.compile(r"^what shape is the (\w+) object$"),
    "position": re.compile(r"^where is the (\w+) (\w+)$"),
    "count": re.compile(r"^how many (\w+) are there$"),
    "exists": re.compile(r"^is there an? (\w+) (\w+)$"),
}


def normalize_question(question: str) -> str:
    """Lower case, punctuation dropped, single spaces: 'Where is the red circle?' == 'where is the red circle ?'."""
    return " ".join(re.sub(r"[^\w\s]", " ", question.lower()).split())


def question_kind(question: str) -> str | None:
    """The kind of a question in one of the canonical forms (any case or punctuation), else None."""
    text = normalize_question(question)
    for kind, pattern in _KIND_PATTERNS.items():
        if pattern.match(text):
            return kind
    return None


def _exists_no_pairs(scene: Scene, pairs: Sequence[tuple[str, str]]) -> list[tuple[str, str]]:
    """Absent pairs one attribute away from a present object (the hard "no" answers)."""
    present = {o.pair for o in scene.objects}
    allowed = set(pairs)
    near: list[tuple[str, str]] = []
    for obj in scene.in_reading_order:
        options = [(c, obj.shape) for c in COLORS if c != obj.color] + [(obj.color, s) for s in SHAPES if s != obj.shape]
        for pair in options:
            if pair not in present and pair in allowed and pair not in near:
                near.append(pair)
    return near


def questions(scene: Scene, pairs: str | Iterable | None = None) -> list[QA]:
    """Every question the scene can answer uniquely, in a fixed order.

    color: only about a shape that occurs once; shape: a color that occurs once; position: a color-shape
    pair that occurs once; count: every shape (absent ones answer "0"); exists: "yes" for present pairs,
    "no" for pairs one attribute away from a present object (restricted to `pairs`).
    """
    objects = scene.in_reading_order
    shapes = Counter(o.shape for o in objects)
    colors = Counter(o.color for o in objects)
    pair_counts = Counter(o.pair for o in objects)
    items: list[QA] = []
    for o in objects:
        if shapes[o.shape] == 1:
            items.append(QA(color_question(o.shape), o.color, "color"))
    for o in objects:
        if colors[o.color] == 1:
            items.append(QA(shape_question(o.color), o.shape, "shape"))
    for o in objects:
        if pair_counts[o.pair] == 1:
            items.append(QA(position_question(*o.pair), o.position, "position"))
    for shape in SHAPES:
        items.append(QA(count_question(shape), str(shapes[shape]), "count"))
    for pair in dict.fromkeys(o.pair for o in objects):
        items.append(QA(exists_question(*pair), "yes", "exists"))
    for pair in _exists_no_pairs(scene, _resolve_pairs(pairs)):
        items.append(QA(exists_question(*pair), "no", "exists"))
    return items


def qa_example(
    seed: int, kind: str | None = None, pairs: str | Iterable | None = None, n_objects: int | None = None
) -> tuple[Scene, QA]:
    """A (scene, question) drawn so that answers are balanced (see the module doc)."""
    _check_n_objects(n_objects)
    if kind is not None:
        _check_choice(kind, KINDS, "question kind")
    allowed = _resolve_pairs(pairs)
    rng = random.Random(int(seed))
    kind = kind or rng.choice(KINDS)
    if kind == "count":
        shape = rng.choice(sorted({s for _, s in allowed}))
        low = 1 if n_objects is None else n_objects
        high = MAX_OBJECTS if n_objects is None else n_objects
        target = rng.choice([c for c in range(MAX_OBJECTS + 1) if c <= high])
        n = n_objects if n_objects is not None else rng.randint(max(low, target), high)
        same = [p for p in allowed if p[1] == shape]
        other = [p for p in allowed if p[1] != shape] or same
        chosen = [rng.choice(same) for _ in range(target)] + [rng.choice(other) for _ in range(n - target)]
        rng.shuffle(chosen)
        scene = Scene(tuple(_draw_object(rng, p, pos) for p, pos in zip(chosen, rng.sample(POSITIONS, n))), int(seed))
        count = sum(o.shape == shape for o in scene.objects)
        return scene, QA(count_question(shape), str(count), "count")
    while True:
        scene = _scene_from_rng(rng, n_objects, allowed, int(seed))
        if kind == "exists":
            if rng.random() < 0.5:
                obj = rng.choice(scene.in_reading_order)
                return scene, QA(exists_question(*obj.pair), "yes", "exists")
            near = _exists_no_pairs(scene, allowed)
            if near:
                return scene, QA(exists_question(*rng.choice(near)), "no", "exists")
            continue
        candidates = [qa for qa in questions(scene, allowed) if qa.kind == kind]
        if candidates:
            return scene, rng.choice(candidates)


# --- splits ------------------------------------------------------------------------------------------


def split_seed(split: str, index: int) -> int:
    """The seed of example `index` of a split; splits use disjoint seed ranges."""
    if split not in SPLITS:
        raise ValueError(f"unknown split {split!r}; use one of {', '.join(SPLITS)}.")
    seeds = SPLITS[split]
    if not 0 <= index < len(seeds):
        raise ValueError(f"index {index} is outside the {split} split (0 .. {len(seeds) - 1}).")
    return seeds[index]


def scenes(split: str, n: int, start: int = 0, n_objects: int | None = None, pairs=None) -> list[Scene]:
    """`n` scenes of a split, from example `start` on; `pairs` defaults to "seen" for train, "all" otherwise."""
    pairs = pairs if pairs is not None else ("seen" if split == "train" else "all")
    return [random_scene(split_seed(split, start + i), n_objects, pairs) for i in range(n)]


def qa_examples(split: str, n: int, start: int = 0, kind: str | None = None, pairs=None) -> list[tuple[Scene, QA]]:
    """`n` balanced (scene, question) examples of a split (see `qa_example`)."""
    pairs = pairs if pairs is not None else ("seen" if split == "train" else "all")
    return [qa_example(split_seed(split, start + i), kind, pairs) for i in range(n)]


# --- baselines ---------------------------------------------------------------------------------------


class MajorityBaseline:
    """Answers every question of a kind with that kind's most common training answer."""

    def fit(self, items: Iterable[QA]) -> MajorityBaseline:
        by_kind: dict[str, Counter] = defaultdict(Counter)
        for qa in items:
            by_kind[qa.kind][qa.answer] += 1
        # ties broken by the answer text, so a refit on the same data gives the same answers
        self.answers = {k: min(c.items(), key=lambda kv: (-kv[1], kv[0]))[0] for k, c in by_kind.items()}
        return self

    def predict(self, question: str) -> str:
        return self.answers.get(question_kind(question) or "", "")


class QuestionOnlyBaseline(MajorityBaseline):
    """Never looks at the image: the most common training answer to this exact (normalized) question.

    It is the best any model can do from the question alone; a VLM must beat it by a wide margin.
    Questions it never saw fall back to the kind's majority answer.
    """

    def fit(self, items: Iterable[QA]) -> QuestionOnlyBaseline:
        items = list(items)
        super().fit(items)
        table: dict[str, Counter] = defaultdict(Counter)
        for qa in items:
            table[normalize_question(qa.question)][qa.answer] += 1
        self.table = {q: min(c.items(), key=lambda kv: (-kv[1], kv[0]))[0] for q, c in table.items()}
        return self

    def predict(self, question: str) -> str:
        return self.table.get(normalize_question(question)) or super().predict(question)


def accuracy_by_kind(items: Sequence[QA], predictions: Sequence[str]) -> dict[str, float]:
    """Exact-match accuracy per kind (answers compared normalized) and over all items ("all")."""
    if len(items) != len(predictions):
        raise ValueError(f"{len(items)} questions but {len(predictions)} predictions; give one answer per question.")
    right: Counter = Counter()
    total: Counter = Counter()
    for qa, pred in zip(items, predictions):
        ok = normalize_question(pred) == normalize_question(qa.answer)
        for key in (qa.kind, "all"):
            total[key] += 1
            right[key] += ok
    return {k: right[k] / total[k] for k in [*KINDS, "all"] if total[k]}


# --- torch datasets ----------------------------------------------------------------------------------


def image_to_tensor(image: Image.Image) -> torch.Tensor:
    """PIL RGB -> uint8 tensor (3, H, W); scaling and normalizing belong to the vision encoder (lesson 01)."""
    return torch.from_numpy(np.asarray(image.convert("RGB"), dtype=np.uint8).copy()).permute(2, 0, 1)  # (3, H, W)


def render_batch(scenes: Sequence[Scene], size: int | None = None) -> torch.Tensor:
    """Draw scenes as one uint8 batch (B, 3, H, W)."""
    return torch.stack([image_to_tensor(scene.render(size)) for scene in scenes])  # (B, 3, H, W)


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
        render(Scene.from_triples([("red", "circle", "center")]), self.image_size)  # validates image_size
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
        return {"image": scene.render(self.image_size), "question": qa.question, "answer": qa.answer,
                "kind": qa.kind, "scene": scene}  # fmt: skip


def collate(batch: Sequence[dict], tokenizer: Callable | None = None) -> dict:
    """Stack a list of dataset items: images -> uint8 (B, 3, H, W); texts stay lists of str.

    With a tokenizer (`functools.partial(collate, tokenizer=tok)`), "text" also becomes padded
    `input_ids` / `attention_mask` (B, T).
    """
    if not batch:
        raise ValueError("cannot collate an empty batch.")
    out: dict = {"images": torch.stack([image_to_tensor(item["image"]) for item in batch])}  # (B, 3, H, W)
    for key in batch[0]:
        if key != "image":
            out[key + "s"] = [item[key] for item in batch]  # "text" -> "texts", "scene" -> "scenes", ...
    if tokenizer is not None and "texts" in out:
        encoded = tokenizer(out["texts"], padding=True, return_tensors="pt")
        out["input_ids"], out["attention_mask"] = encoded["input_ids"], encoded["attention_mask"]  # (B, T)
    return out
