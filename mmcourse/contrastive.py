"""Contrastive learning: the CLIP loss in small steps, hard negatives, and the measures of a CLIP.

Lesson 03 teaches it. The loss is built from small pure steps, as in open_clip's `loss.py`:

1. `normalize` both sets of embeddings to unit length;
2. `similarity_logits`: every image against every text, cosine similarity times a scale (= 1 /
  temperature);
3. `diagonal_targets`: image i belongs with text i;
4. `symmetric_cross_entropy`: cross-entropy image->text and text->image, averaged.

At random initialization the embeddings carry no information, so the loss is about ln(batch size):
chance. `ContrastiveLoss(temperature=0.07)` is the tutorial's fixed-temperature form;
`learnable=True` trains the scale, initialised at log(1/0.07) and clamped at ln 100 like CLIP.
`positive_mask` counts identical texts in a batch as positives instead of negatives (in the shapes
world, "a red circle and a blue square" recurs), and `hard_negative` makes texts one attribute away
that each image is also scored against (`hard_negative_texts` lists them all). `clip_loss` puts
the steps together; it is the loss that trains the shipped `shapes-clip` (with the CLIP's own
logit scale).

The tiny CLIP itself (config, builder, evaluation) is `mmcourse.clip`.
"""

from __future__ import annotations

import dataclasses
import math
import random
from collections.abc import Iterable, Sequence

import torch
import torch.nn.functional as F
from torch import nn

from . import data

__all__ = [
    "MAX_LOGIT_SCALE",
    "ContrastiveLoss",
    "clamped_scale",
    "clip_loss",
    "diagonal_targets",
    "hard_negative",
    "hard_negative_texts",
    "logit_scale_init",
    "multi_positive_cross_entropy",
    "normalize",
    "positive_mask",
    "recall_at_k",
    "similarity_logits",
    "symmetric_cross_entropy",
    "zero_shot_predict",
]

MAX_LOGIT_SCALE = math.log(100.0)


# --- the loss, step by step
# --------------------------------------------------------------------------


def normalize(features: torch.Tensor) -> torch.Tensor:
    """Unit length along the last dimension: (B, D) -> (B, D)."""
    return F.normalize(features, dim=-1)


def similarity_logits(
    image_features: torch.Tensor, text_features: torch.Tensor, scale: torch.Tensor | float
) -> torch.Tensor:
    """Scaled cosine similarities, images as rows: (B_i, D), (B_t, D) -> (B_i, B_t)."""
    return scale * normalize(image_features) @ normalize(text_features).T


def diagonal_targets(n: int, device: torch.device | None = None) -> torch.Tensor:
    """Image i matches text i: the class of row i is i. (n,)"""
    return torch.arange(n, device=device)


def symmetric_cross_entropy(logits: torch.Tensor, targets: torch.Tensor) -> torch.Tensor:
    """Mean of cross-entropy over rows (image -> text) and over columns (text -> image)."""
    return (F.cross_entropy(logits, targets) + F.cross_entropy(logits.T, targets)) / 2


def positive_mask(texts: Sequence[str]) -> torch.Tensor:
    """(B, B) bool: True where two texts of the batch are identical (the diagonal included)."""
    index = {t: i for i, t in enumerate(dict.fromkeys(texts))}
    ids = torch.tensor([index[t] for t in texts])
    return ids[:, None] == ids[None, :]


def multi_positive_cross_entropy(logits: torch.Tensor, positives: torch.Tensor) -> torch.Tensor:
    """-log of the probability that a row picks *any* of its positives. (B, C) logits, (B, C) bool.

    With one positive per row this is the ordinary cross-entropy. With two identical texts in a
    batch, the ordinary loss can never go below ln 2 for them (their logits are equal, so each gets
    at most half the probability, and the other copy counts against it); here both copies count for
    it.
    """
    masked = logits.masked_fill(~positives, float("-inf"))
    return (torch.logsumexp(logits, dim=1) - torch.logsumexp(masked, dim=1)).mean()


def logit_scale_init(temperature: float = 0.07) -> float:
    return math.log(1.0 / temperature)


def clamped_scale(log_scale: torch.Tensor) -> torch.Tensor:
    """The scale from its learnable log, clamped at 100 (temperature 0.01) so training cannot make
    it explode."""
    return log_scale.clamp(max=MAX_LOGIT_SCALE).exp()


def clip_loss(
    image_features: torch.Tensor,
    text_features: torch.Tensor,
    log_scale: torch.Tensor,
    texts: Sequence[str] | None = None,
    negative_features: torch.Tensor | None = None,
) -> torch.Tensor:
    """The symmetric CLIP loss from the steps above. (B, D) images, (B, D) texts -> a scalar.

    `texts`: identical texts count as positives of each other (`positive_mask`). `negative_features`
    (B_neg, D):
    extra texts every image is also scored against (hard negatives); no image belongs with them, and
    they take no part in the text -> image direction.
    """
    scale = clamped_scale(log_scale)
    b = len(image_features)
    if texts is None and negative_features is None:
        logits = similarity_logits(image_features, text_features, scale)  # (B, B)
        return symmetric_cross_entropy(logits, diagonal_targets(b, logits.device))
    device = image_features.device
    # (B, B)
    positives = (
        positive_mask(texts).to(device)
        if texts is not None
        else torch.eye(b, dtype=torch.bool, device=device)
    )
    candidates = (
        text_features
        if negative_features is None
        else torch.cat([text_features, negative_features])
    )
    logits = similarity_logits(image_features, candidates, scale)  # (B, B + B_neg)
    no_negative = torch.zeros(b, len(candidates) - b, dtype=torch.bool, device=device)
    image_to_text = multi_positive_cross_entropy(logits, torch.cat([positives, no_negative], dim=1))
    text_to_image = multi_positive_cross_entropy(logits[:, :b].T, positives)
    return (image_to_text + text_to_image) / 2


class ContrastiveLoss(nn.Module):
    """The symmetric CLIP loss. `temperature` fixed, or `learnable` (as a log-scale, clamped at ln
    100).

    `forward(image_features, text_features, texts=None)`: with `texts`, identical texts count as
    positives.
    """

    def __init__(self, temperature: float = 0.07, learnable: bool = False) -> None:
        super().__init__()
        if temperature <= 0:
            raise ValueError(f"temperature must be positive, got {temperature}.")
        log_scale = torch.tensor(logit_scale_init(temperature))
        if learnable:
            self.log_scale = nn.Parameter(log_scale)
        else:
            self.register_buffer("log_scale", log_scale)

    @property
    def scale(self) -> torch.Tensor:
        return clamped_scale(self.log_scale)

    def forward(
        self,
        image_features: torch.Tensor,
        text_features: torch.Tensor,
        texts: Sequence[str] | None = None,
    ) -> torch.Tensor:
        if image_features.shape != text_features.shape:
            raise ValueError(
                f"image features {tuple(image_features.shape)} and text features "
                f"{tuple(text_features.shape)} must "
                "have the same shape (B, D): one text per image, both projected to the same size."
            )
        return clip_loss(image_features, text_features, self.log_scale, texts)


# --- hard negatives: texts one attribute away
# ------------------------------------------------------


def hard_negative(scene: data.Scene, rng: random.Random, pairs=data.SEEN_PAIRS) -> data.Scene:
    """A scene whose alt text differs from `scene`'s by one attribute: a color, a shape, the
    position of a lone
    object, or (with several objects) the order of two of them. Only `pairs` are used."""
    objects = list(scene.objects)
    allowed = set(pairs)
    while True:
        i = rng.randrange(len(objects))
        obj = objects[i]
        move = rng.choice(["color", "shape", "position" if len(objects) == 1 else "order"])
        if move == "color":
            options = [c for c in data.COLORS if c != obj.color and (c, obj.shape) in allowed]
            new = (
                [data.SceneObject(rng.choice(options), obj.shape, obj.position)]
                if options
                else None
            )
        elif move == "shape":
            options = [s for s in data.SHAPES if s != obj.shape and (obj.color, s) in allowed]
            new = (
                [data.SceneObject(obj.color, rng.choice(options), obj.position)]
                if options
                else None
            )
        elif move == "position":
            new = [
                data.SceneObject(
                    obj.color,
                    obj.shape,
                    rng.choice([p for p in data.POSITIONS if p != obj.position]),
                )
            ]
        else:
            j = rng.choice([j for j in range(len(objects)) if j != i])
            if objects[j].pair == obj.pair:
                continue
            swapped = list(objects)
            swapped[i] = data.SceneObject(obj.color, obj.shape, objects[j].position)
            swapped[j] = data.SceneObject(objects[j].color, objects[j].shape, obj.position)
            return data.Scene(tuple(swapped))
        if new:
            return data.Scene(tuple(new[0] if k == i else o for k, o in enumerate(objects)))


def hard_negative_texts(
    scene: data.Scene, pairs: Iterable[tuple[str, str]] = data.SEEN_PAIRS
) -> list[str]:
    """Every alt text `hard_negative` can return for `scene`, each once, sorted.

    Each is false for the image and one change away: one object's color or shape (into `pairs`
    only), a lone object's position, or two objects of different kinds trading places. Two of one
    kind trading places, or an object of a busy scene moving, would leave the alt text true.
    """
    objects = scene.objects
    allowed = {tuple(p) for p in pairs}
    changed: list[tuple[data.SceneObject, ...]] = []
    for i, obj in enumerate(objects):
        new = [dataclasses.replace(obj, color=c) for c in data.COLORS if (c, obj.shape) in allowed]
        new += [dataclasses.replace(obj, shape=s) for s in data.SHAPES if (obj.color, s) in allowed]
        if len(objects) == 1:
            new += [dataclasses.replace(obj, position=p) for p in data.POSITIONS]
        changed += [objects[:i] + (o,) + objects[i + 1 :] for o in new if o != obj]
        for j in range(i + 1, len(objects)):
            other = objects[j]
            if other.pair != obj.pair:
                swapped = list(objects)
                swapped[i] = dataclasses.replace(obj, position=other.position)
                swapped[j] = dataclasses.replace(other, position=obj.position)
                changed.append(tuple(swapped))
    return sorted({data.alt_text(data.Scene(c)) for c in changed})


# --- measuring: zero-shot and retrieval
# --------------------------------------------------------------


def recall_at_k(
    similarity: torch.Tensor, correct: torch.Tensor, ks: Sequence[int] = (1, 5)
) -> dict[int, float]:
    """Share of rows whose top-k columns contain a correct one. (Q, C) scores, (Q, C) bool -> {k:
    recall}."""
    if similarity.shape != correct.shape:
        raise ValueError(
            f"similarity {tuple(similarity.shape)} and correct {tuple(correct.shape)} must have "
            "the same shape."
        )
    order = similarity.argsort(dim=1, descending=True)  # (Q, C)
    hits = correct.gather(1, order)  # (Q, C): is the r-th best column correct?
    return {k: hits[:, :k].any(dim=1).float().mean().item() for k in ks}


def zero_shot_predict(
    image_embeddings: torch.Tensor, class_embeddings: torch.Tensor
) -> torch.Tensor:
    """Index of the most similar class prompt for each image. (B, D), (C, D) -> (B,)"""
    return similarity_logits(image_embeddings, class_embeddings, 1.0).argmax(dim=1)
