"""Questions about a scene, drawn so that answers are balanced, and the two baselines every accuracy
sits beside.

Lesson 00 teaches it. Questions are asked only where the answer is unique:

    color     "What color is the {shape}?"            -> a color
    shape     "What shape is the {color} object?"     -> a shape
    position  "Where is the {color} {shape}?"         -> a position name
    count     "How many {shape}s are there?"          -> "0" .. "3"
    exists    "Is there a {color} {shape}?"           -> "yes" / "no"   ("an orange ...")

`qa_example(seed)` draws a scene *around* a question so that answers are balanced: every kind
equally often, `exists` half yes and half no (a "no" differs from a present object by one
attribute), `count` uniform over 0-3. Accuracies are always reported beside `MajorityBaseline` and
`QuestionOnlyBaseline`.
"""

from __future__ import annotations

import random
import re
from collections import Counter, defaultdict
from collections.abc import Iterable, Sequence
from dataclasses import dataclass

from .world import (
    COLORS,
    KINDS,
    MAX_OBJECTS,
    PLURALS,
    POSITIONS,
    SHAPES,
    Scene,
    _check_choice,
    _check_n_objects,
    _draw_object,
    _resolve_pairs,
    _scene_from_rng,
    article,
    split_seed,
)

__all__ = [
    "QA",
    "MajorityBaseline",
    "QuestionOnlyBaseline",
    "accuracy_by_kind",
    "color_question",
    "count_question",
    "exists_question",
    "normalize_question",
    "position_question",
    "qa_example",
    "qa_examples",
    "question_kind",
    "questions",
    "shape_question",
]


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
    """Lower case, punctuation dropped, single spaces: 'Where is the red circle?' == 'where is the
    red circle ?'."""
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
        options = [(c, obj.shape) for c in COLORS if c != obj.color] + [
            (obj.color, s) for s in SHAPES if s != obj.shape
        ]
        for pair in options:
            if pair not in present and pair in allowed and pair not in near:
                near.append(pair)
    return near


def questions(scene: Scene, pairs: str | Iterable | None = None) -> list[QA]:
    """Every question the scene can answer uniquely, in a fixed order.

    color: only about a shape that occurs once; shape: a color that occurs once; position: a
    color-shape pair that occurs once; count: every shape (absent ones answer "0"); exists: "yes"
    for present pairs, "no" for pairs one attribute away from a present object (restricted to
    `pairs`).
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
    seed: int,
    kind: str | None = None,
    pairs: str | Iterable | None = None,
    n_objects: int | None = None,
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
        chosen = [rng.choice(same) for _ in range(target)] + [
            rng.choice(other) for _ in range(n - target)
        ]
        rng.shuffle(chosen)
        scene = Scene(
            tuple(_draw_object(rng, p, pos) for p, pos in zip(chosen, rng.sample(POSITIONS, n))),
            int(seed),
        )
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


def qa_examples(
    split: str, n: int, start: int = 0, kind: str | None = None, pairs=None
) -> list[tuple[Scene, QA]]:
    """`n` balanced (scene, question) examples of a split (see `qa_example`)."""
    pairs = pairs if pairs is not None else ("seen" if split == "train" else "all")
    return [qa_example(split_seed(split, start + i), kind, pairs) for i in range(n)]


# --- baselines
# ---------------------------------------------------------------------------------------


class MajorityBaseline:
    """Answers every question of a kind with that kind's most common training answer."""

    def fit(self, items: Iterable[QA]) -> MajorityBaseline:
        by_kind: dict[str, Counter] = defaultdict(Counter)
        for qa in items:
            by_kind[qa.kind][qa.answer] += 1
        # ties broken by the answer text, so a refit on the same data gives the same answers
        self.answers = {
            k: min(c.items(), key=lambda kv: (-kv[1], kv[0]))[0] for k, c in by_kind.items()
        }
        return self

    def predict(self, question: str) -> str:
        return self.answers.get(question_kind(question) or "", "")


class QuestionOnlyBaseline(MajorityBaseline):
    """Never looks at the image: the most common training answer to this exact (normalized)
    question.

    It is the best any model can do from the question alone; a VLM must beat it by a wide margin.
    Questions it never saw fall back to the kind's majority answer.
    """

    def fit(self, items: Iterable[QA]) -> QuestionOnlyBaseline:
        items = list(items)
        super().fit(items)
        table: dict[str, Counter] = defaultdict(Counter)
        for qa in items:
            table[normalize_question(qa.question)][qa.answer] += 1
        self.table = {
            q: min(c.items(), key=lambda kv: (-kv[1], kv[0]))[0] for q, c in table.items()
        }
        return self

    def predict(self, question: str) -> str:
        return self.table.get(normalize_question(question)) or super().predict(question)


def accuracy_by_kind(items: Sequence[QA], predictions: Sequence[str]) -> dict[str, float]:
    """Exact-match accuracy per kind (answers compared normalized) and over all items ("all")."""
    if len(items) != len(predictions):
        raise ValueError(
            f"{len(items)} questions but {len(predictions)} predictions; give one answer per "
            "question."
        )
    right: Counter = Counter()
    total: Counter = Counter()
    for qa, pred in zip(items, predictions):
        ok = normalize_question(pred) == normalize_question(qa.answer)
        for key in (qa.kind, "all"):
            total[key] += 1
            right[key] += ok
    return {k: right[k] / total[k] for k in [*KINDS, "all"] if total[k]}
