"""Exercise 03 (contrastive learning): the CLIP loss, a zero-shot classifier, recall@k, hard
negatives."""

from __future__ import annotations

import dataclasses
import random

import numpy as np
import torch
import torch.nn.functional as F

from ... import contrastive, data
from ..judging import Close, Exact, Hint, Question, as_tensors

__all__ = ["QUESTIONS"]


def _features(seed: int, batch: int, width: int, temperature: float = 0.07) -> dict:
    rng = np.random.default_rng(seed)
    return {
        "image_features": rng.standard_normal((batch, width)).astype(np.float32),
        "text_features": rng.standard_normal((batch, width)).astype(np.float32),
        "temperature": temperature,
    }


def _loss_reference(image_features, text_features, temperature):
    return contrastive.ContrastiveLoss(temperature)(image_features, text_features)


def _loss_variant(case, normalize=True, both=True, multiply=False) -> float:
    img, txt = torch.from_numpy(case["image_features"]), torch.from_numpy(case["text_features"])
    if normalize:
        img, txt = F.normalize(img, dim=-1), F.normalize(txt, dim=-1)
    logits = img @ txt.T * (case["temperature"] if multiply else 1 / case["temperature"])
    targets = torch.arange(len(img))
    loss = F.cross_entropy(logits, targets)
    return ((loss + F.cross_entropy(logits.T, targets)) / 2 if both else loss).item()


def _close_to(value, got) -> bool:
    return type(got) is float and abs(got - value) <= 1e-4 * max(1.0, abs(value))


LOSS = Question(
    qid="ex03_contrastive_loss",
    points=3,
    name="my_contrastive_loss",
    prompt="my_contrastive_loss(image_features, text_features, temperature) -> scalar: "
    "L2-normalize, "
    "similarities / temperature, cross-entropy with diagonal targets in both directions, averaged.",
    oracle=_loss_reference,
    references=(
        "mmcourse.contrastive.ContrastiveLoss",
        "mmcourse.contrastive.symmetric_cross_entropy",
    ),
    visible=(_features(0, 4, 8), _features(1, 8, 16, 0.5), _features(2, 2, 4, 1.0)),
    hidden=lambda rng, n: [
        _features(
            rng.randrange(2**31),
            rng.randint(2, 16),
            rng.choice([4, 32]),
            rng.choice([0.05, 0.07, 0.2, 1.0]),
        )
        for _ in range(n)
    ],
    prepare=as_tensors,
    compare=Close(rtol=1e-4, atol=1e-5),
    describe=lambda case: (
        f"{len(case['image_features'])} image and text features of width "
        f"{case['image_features'].shape[1]}, temperature={case['temperature']}"
    ),
    hints=(
        Hint(
            "That is only one direction: average image->text and text->image cross-entropy.",
            lambda case, e, got: _close_to(_loss_variant(case, both=False), got),
        ),
        Hint(
            "L2-normalize both feature sets first: CLIP compares directions (cosine similarity).",
            lambda case, e, got: _close_to(_loss_variant(case, normalize=False), got),
        ),
        Hint(
            "Divide the similarities by the temperature (a small temperature sharpens the "
            "softmax).",
            lambda case, e, got: _close_to(_loss_variant(case, multiply=True), got),
        ),
    ),
)


def _zero_shot_case(seed: int, images: int, classes: int, width: int) -> dict:
    rng = np.random.default_rng(seed)
    return {
        "image_embeddings": rng.standard_normal((images, width)).astype(np.float32),
        "class_embeddings": rng.standard_normal((classes, width)).astype(np.float32),
    }


def _zero_shot_variant(case, fn) -> np.ndarray:
    img = F.normalize(torch.from_numpy(case["image_embeddings"]), dim=-1)
    cls = F.normalize(torch.from_numpy(case["class_embeddings"]), dim=-1)
    return fn(img @ cls.T).numpy()


ZERO_SHOT = Question(
    qid="ex03_zero_shot",
    points=2,
    name="my_zero_shot",
    prompt="my_zero_shot(image_embeddings, class_embeddings) -> (B,) int64: the index of the most "
    "similar "
    "class prompt (cosine similarity) for each image.",
    oracle=contrastive.zero_shot_predict,
    visible=(_zero_shot_case(0, 5, 3, 8), _zero_shot_case(1, 7, 10, 16)),
    hidden=lambda rng, n: [
        _zero_shot_case(rng.randrange(2**31), rng.randint(1, 20), rng.randint(2, 30), 16)
        for _ in range(n)
    ],
    prepare=as_tensors,
    compare=Exact(),
    describe=lambda case: (
        f"{len(case['image_embeddings'])} images, {len(case['class_embeddings'])} class prompts"
    ),
    hints=(
        Hint(
            "That picks the *least* similar class: use argmax, not argmin.",
            lambda case, e, got: np.array_equal(
                got, _zero_shot_variant(case, lambda s: s.argmin(dim=1))
            ),
        ),
        Hint(
            "One answer per image: take the argmax over the classes (dim=1), not over the images.",
            lambda case, e, got: got.shape != e.shape,
        ),
    ),
)


def _recall_case(seed: int, queries: int, candidates: int, k: int) -> dict:
    rng = np.random.default_rng(seed)
    similarity = rng.standard_normal((queries, candidates)).astype(np.float32)
    correct = np.zeros((queries, candidates), dtype=bool)
    correct[np.arange(queries), rng.integers(0, candidates, queries)] = True
    return {"similarity": similarity, "correct": correct, "k": k}


def _recall_hidden(rng: random.Random, n: int) -> list[dict]:
    cases = []
    for _ in range(n):
        candidates = rng.randint(2, 30)
        cases.append(
            _recall_case(
                rng.randrange(2**31),
                rng.randint(1, 40),
                candidates,
                rng.randint(1, min(5, candidates)),
            )
        )
    return cases


def _recall_reference(similarity, correct, k):
    return contrastive.recall_at_k(similarity, correct, (k,))[k]


def _recall_off_by_one(case, expected, got) -> bool:
    sim, correct = torch.from_numpy(case["similarity"]), torch.from_numpy(case["correct"])
    options = [k for k in (case["k"] - 1, case["k"] + 1) if k >= 1]
    return any(_close_to(contrastive.recall_at_k(sim, correct, (k,))[k], got) for k in options)


RECALL = Question(
    qid="ex03_recall_at_k",
    points=2,
    name="my_recall_at_k",
    prompt="my_recall_at_k(similarity, correct, k) -> float: the share of queries (rows) whose k "
    "most similar "
    "candidates include a correct one.",
    oracle=_recall_reference,
    references=("mmcourse.contrastive.recall_at_k",),
    visible=(_recall_case(0, 6, 5, 1), _recall_case(1, 20, 10, 3), _recall_case(2, 10, 10, 5)),
    hidden=_recall_hidden,
    prepare=as_tensors,
    compare=Close(rtol=1e-6, atol=1e-6),
    describe=lambda case: f"similarity {tuple(case['similarity'].shape)}, k={case['k']}",
    hints=(
        Hint(
            "Off by one: the top k are the k highest scores (topk(k) or argsort()[:, :k]).",
            _recall_off_by_one,
        ),
    ),
)


# --- ex03_hard_negatives
# -----------------------------------------------------------------------------


def hard_negative_args(case: dict) -> dict:
    """The case as the learner's arguments: a `Scene`, and the allowed pairs as a set of tuples."""
    return {
        "scene": data.Scene.from_dict(case["scene"]),
        "pairs": {tuple(p) for p in case["pairs"]},
    }


def _hard_case(scene: data.Scene, pairs=data.SEEN_PAIRS) -> dict:
    return {"scene": scene.to_dict(), "pairs": [list(p) for p in pairs]}


def _one_change(scene: data.Scene, allowed) -> dict[str, list[data.Scene]]:
    """The scenes one change away, by kind of change (the same moves as the oracle's)."""
    objects, moves = scene.objects, {"color": [], "shape": [], "position": [], "order": []}
    for i, obj in enumerate(objects):

        def put(kind, new, i=i):
            moves[kind].append(data.Scene(objects[:i] + (new,) + objects[i + 1 :]))

        for c in data.COLORS:
            if c != obj.color and (c, obj.shape) in allowed:
                put("color", dataclasses.replace(obj, color=c))
        for s in data.SHAPES:
            if s != obj.shape and (obj.color, s) in allowed:
                put("shape", dataclasses.replace(obj, shape=s))
        if len(objects) == 1:
            for p in data.POSITIONS:
                if p != obj.position:
                    put("position", dataclasses.replace(obj, position=p))
        for j in range(i + 1, len(objects)):
            swapped = list(objects)
            swapped[i] = dataclasses.replace(obj, position=objects[j].position)
            swapped[j] = dataclasses.replace(objects[j], position=obj.position)
            moves["order"].append(data.Scene(tuple(swapped)))
    return moves


def _texts(scenes) -> set[str]:
    return {data.alt_text(s) for s in scenes}


def _extras(case, expected, got) -> set[str]:
    return set(got) - set(expected) - {_own(case)}


def _own(case) -> str:
    return data.alt_text(data.Scene.from_dict(case["scene"]))


def _allowed(case) -> set:
    return {tuple(p) for p in case["pairs"]}


def _is_texts(got) -> bool:
    return type(got) is list and all(type(t) is str for t in got)


def _two_changes_away(case, expected, got) -> bool:
    extras = _extras(case, expected, got)
    if not _is_texts(got) or not extras:
        return False
    scene = data.Scene.from_dict(case["scene"])
    near = [s for kind in _one_change(scene, data.ALL_PAIRS).values() for s in kind]
    twice = {
        t for s in near for kind in _one_change(s, data.ALL_PAIRS).values() for t in _texts(kind)
    }
    return extras <= twice


def _outside_pairs(case, expected, got) -> bool:
    extras = _extras(case, expected, got)
    scene = data.Scene.from_dict(case["scene"])
    everything = {t for kind in _one_change(scene, data.ALL_PAIRS).values() for t in _texts(kind)}
    return _is_texts(got) and bool(extras) and extras <= everything


def _missing(kind):
    def applies(case, expected, got) -> bool:
        missing = set(expected) - set(got)
        if not _is_texts(got) or not missing or set(got) - set(expected):
            return False
        moves = _one_change(data.Scene.from_dict(case["scene"]), _allowed(case))
        return missing <= _texts(moves[kind])

    return applies


def _captions(case, expected, got) -> bool:
    busy = len(case["scene"]["objects"]) > 1
    return _is_texts(got) and busy and any(" at the " in t for t in got)


_HARD_SCENES = (
    (data.Scene.from_triples([("red", "circle", "top left")]), data.SEEN_PAIRS),
    (
        data.Scene.from_triples(
            [("orange", "square", "bottom right"), ("blue", "triangle", "top")]
        ),
        data.SEEN_PAIRS,
    ),
    (
        data.Scene.from_triples(
            [("red", "circle", "left"), ("blue", "diamond", "top"), ("red", "circle", "right")]
        ),
        data.SEEN_PAIRS,
    ),
    (
        data.Scene.from_triples(
            [("green", "circle", "center"), ("yellow", "square", "bottom left")]
        ),
        data.ALL_PAIRS,
    ),
)


def _hard_hidden(rng: random.Random, n: int) -> list[dict]:
    cases = []
    for _ in range(n):
        scene = data.random_scene(rng.randrange(2**31), n_objects=rng.randint(1, 3))
        if len(scene.objects) > 1 and rng.random() < 0.3:  # two objects of one kind
            first, second = scene.objects[:2]
            twin = dataclasses.replace(second, color=first.color, shape=first.shape)
            scene = data.Scene((first, twin, *scene.objects[2:]))
        roll = rng.random()
        if roll < 0.6:
            pairs = data.SEEN_PAIRS
        elif roll < 0.8:
            pairs = data.ALL_PAIRS
        else:
            pairs = tuple(sorted(rng.sample(data.ALL_PAIRS, rng.randint(4, 20))))
        cases.append(_hard_case(scene, pairs))
    return cases


HARD_NEGATIVES = Question(
    qid="ex03_hard_negatives",
    points=3,
    name="my_hard_negatives",
    prompt="my_hard_negatives(scene, pairs) -> sorted list of str: every alt text one change away "
    "from the scene's, false for the image, using only the allowed (color, shape) pairs.",
    oracle=contrastive.hard_negative_texts,
    references=("mmcourse.contrastive.hard_negative",),
    visible=tuple(_hard_case(s, p) for s, p in _HARD_SCENES),
    hidden=_hard_hidden,
    prepare=hard_negative_args,
    compare=Exact(),
    describe=lambda case: (
        f"the scene {_own(case)!r} "
        + ", ".join(
            f"({o['color']} {o['shape']} at {o['position']})" for o in case["scene"]["objects"]
        )
        + f", {len(case['pairs'])} allowed pairs"
    ),
    hints=(
        Hint(
            "Your list holds the scene's own alt text: that text is true for the image, a "
            "positive, not a negative. Some changes change nothing the alt text says: two objects "
            "of the same color and shape trading places, or an object of a busy scene moving to a "
            "free cell (a busy scene's alt text names no position).",
            lambda case, e, got: _is_texts(got) and _own(case) in got,
        ),
        Hint(
            "Return alt texts (data.alt_text), not captions: a busy scene's alt text names no "
            "positions.",
            _captions,
        ),
        Hint(
            "The right texts, but some more than once: list each text once (a set, then sorted).",
            lambda case, e, got: (
                _is_texts(got) and len(got) > len(set(got)) and sorted(set(got)) == e
            ),
        ),
        Hint(
            "The right texts in the wrong order: return them sorted (sorted(...)).",
            lambda case, e, got: _is_texts(got) and got != e and sorted(got) == e,
        ),
        Hint(
            "Some of your texts use a (color, shape) pair that is not in `pairs`: a change may "
            "only make allowed pairs (the withheld pairs must never reach training, not even as "
            "a negative).",
            _outside_pairs,
        ),
        Hint(
            "Some of your texts are two changes away (one object's color *and* shape, two objects "
            "changed, or three objects reordered): a hard negative changes exactly one thing, so "
            "that only that one thing tells it apart.",
            _two_changes_away,
        ),
        Hint(
            "Some texts are missing: two objects of different kinds trading places. In a busy "
            "scene the alt text lists the objects in reading order, so a swap makes a false text "
            "too.",
            _missing("order"),
        ),
        Hint(
            "Some texts are missing: a lone object's alt text says where it is, so moving it to "
            "any other cell makes a hard negative.",
            _missing("position"),
        ),
        Hint(
            "Some texts are missing: every object can change its color (into any allowed pair).",
            _missing("color"),
        ),
        Hint(
            "Some texts are missing: every object can change its shape (into any allowed pair).",
            _missing("shape"),
        ),
    ),
)

QUESTIONS = (LOSS, ZERO_SHOT, RECALL, HARD_NEGATIVES)
