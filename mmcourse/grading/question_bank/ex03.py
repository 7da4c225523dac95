"""Exercise 03 (contrastive learning): the CLIP loss, a zero-shot classifier, recall@k."""

from __future__ import annotations

import random

import numpy as np
import torch
import torch.nn.functional as F

from ... import contrastive
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

QUESTIONS = (LOSS, ZERO_SHOT, RECALL)
