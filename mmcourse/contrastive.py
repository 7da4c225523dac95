"""Contrastive learning: the CLIP loss, a tiny CLIP for the shapes world, and how to measure it.

Lesson 03 teaches it. The loss is built from small pure steps, as in open_clip's `loss.py`:

1. `normalize` both sets of embeddings to unit length;
2. `similarity_logits`: every image against every text, cosine similarity times a scale (= 1 / temperature);
3. `diagonal_targets`: image i belongs with text i;
4. `symmetric_cross_entropy`: cross-entropy image->text and text->image, averaged.

At random initialization the embeddings carry no information, so the loss is about ln(batch size): chance.
`ContrastiveLoss(temperature=0.07)` is the tutorial's fixed-temperature form; `learnable=True` trains the
scale, initialised at log(1/0.07) and clamped at ln 100 like CLIP. `positive_mask` counts identical texts in a
batch as positives instead of negatives (in the shapes world, "a red circle and a blue square" recurs).
"""

from __future__ import annotations

import math
import random
from collections.abc import Sequence
from dataclasses import dataclass

import torch
import torch.nn.functional as F
from torch import nn

from . import data

MAX_LOGIT_SCALE = math.log(100.0)


# --- the loss, step by step --------------------------------------------------------------------------


def normalize(features: torch.Tensor) -> torch.Tensor:
    """Unit length along the last dimension: (B, D) -> (B, D)."""
    return F.normalize(features, dim=-1)


def similarity_logits(image_features: torch.Tensor, text_features: torch.Tensor, scale: torch.Tensor | float) -> torch.Tensor:
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

    With one positive per row this is the ordinary cross-entropy. With two identical texts in a batch, the
    ordinary loss can never go below ln 2 for them (their logits are equal, so each gets at most half the
    probability, and the other copy counts against it); here both copies count for it.
    """
    masked = logits.masked_fill(~positives, float("-inf"))
    return (torch.logsumexp(logits, dim=1) - torch.logsumexp(masked, dim=1)).mean()


def logit_scale_init(temperature: float = 0.07) -> float:
    return math.log(1.0 / temperature)


class ContrastiveLoss(nn.Module):
    """The symmetric CLIP loss. `temperature` fixed, or `learnable` (as a log-scale, clamped at ln 100).

    `forward(image_features, text_features, texts=None)`: with `texts`, identical texts count as positives.
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
        return self.log_scale.clamp(max=MAX_LOGIT_SCALE).exp()

    def forward(self, image_features: torch.Tensor, text_features: torch.Tensor, texts: Sequence[str] | None = None) -> torch.Tensor:
        if image_features.shape != text_features.shape:
            raise ValueError(
                f"image features {tuple(image_features.shape)} and text features {tuple(text_features.shape)} must "
                "have the same shape (B, D): one text per image, both projected to the same size."
            )
        logits = similarity_logits(image_features, text_features, self.scale)  # (B, B)
        if texts is None:
            return symmetric_cross_entropy(logits, diagonal_targets(len(logits), logits.device))
        positives = positive_mask(texts).to(logits.device)
        return (multi_positive_cross_entropy(logits, positives) + multi_positive_cross_entropy(logits.T, positives)) / 2


# --- hard negatives: texts one attribute away ------------------------------------------------------


def hard_negative(scene: data.Scene, rng: random.Random, pairs=data.SEEN_PAIRS) -> data.Scene:
    """A scene whose alt text differs from `scene`'s by one attribute: a color, a shape, the position of a lone
    object, or (with several objects) the order of two of them. Only `pairs` are used."""
    objects = list(scene.objects)
    allowed = set(pairs)
    while True:
        i = rng.randrange(len(objects))
        obj = objects[i]
        move = rng.choice(["color", "shape", "position" if len(objects) == 1 else "order"])
        if move == "color":
            options = [c for c in data.COLORS if c != obj.color and (c, obj.shape) in allowed]
            new = [data.SceneObject(rng.choice(options), obj.shape, obj.position)] if options else None
        elif move == "shape":
            options = [s for s in data.SHAPES if s != obj.shape and (obj.color, s) in allowed]
            new = [data.SceneObject(obj.color, rng.choice(options), obj.position)] if options else None
        elif move == "position":
            new = [data.SceneObject(obj.color, obj.shape, rng.choice([p for p in data.POSITIONS if p != obj.position]))]
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


# --- measuring a CLIP ----------------------------------------------------------------------------------


def single_object_prompts(pairs=data.ALL_PAIRS) -> list[tuple[str, str, str, str]]:
    """(color, shape, position, alt text) for every single-object scene: the zero-shot classes."""
    out = []
    for color, shape in pairs:
        for position in data.POSITIONS:
            scene = data.Scene.from_triples([(color, shape, position)])
            out.append((color, shape, position, data.alt_text(scene)))
    return out


def recall_at_k(similarity: torch.Tensor, correct: torch.Tensor, ks: Sequence[int] = (1, 5)) -> dict[int, float]:
    """Share of rows whose top-k columns contain a correct one. (Q, C) scores, (Q, C) bool -> {k: recall}."""
    if similarity.shape != correct.shape:
        raise ValueError(f"similarity {tuple(similarity.shape)} and correct {tuple(correct.shape)} must have the same shape.")
    order = similarity.argsort(dim=1, descending=True)  # (Q, C)
    hits = correct.gather(1, order)  # (Q, C): is the r-th best column correct?
    return {k: hits[:, :k].any(dim=1).float().mean().item() for k in ks}


def zero_shot_predict(image_embeddings: torch.Tensor, class_embeddings: torch.Tensor) -> torch.Tensor:
    """Index of the most similar class prompt for each image. (B, D), (C, D) -> (B,)"""
    return similarity_logits(image_embeddings, class_embeddings, 1.0).argmax(dim=1)


@dataclass(frozen=True)
class ClipConfig:
    """A tiny CLIP for the shapes world; laptop-sized defaults (about 2 M parameters)."""

    image_size: int = data.DEFAULT_IMAGE_SIZE
    patch_size: int = data.PATCH_SIZE
    vision_width: int = 128
    vision_layers: int = 4
    vision_heads: int = 4
    text_width: int = 128
    text_layers: int = 3
    text_heads: int = 4
    embed_dim: int = 128
    max_text_tokens: int = 32
    temperature: float = 0.07


PRESETS = {
    "shapes-clip": ClipConfig(),
    "nano": ClipConfig(vision_width=64, vision_layers=2, vision_heads=2, text_width=64, text_layers=2,
                       text_heads=2, embed_dim=64),  # fmt: skip
}


def build_clip(config: ClipConfig = ClipConfig()):
    """A randomly initialised `transformers.CLIPModel` of `config`, with the course tokenizer's special ids."""
    from transformers import CLIPConfig, CLIPModel

    from .tokenizer import VOCAB

    clip_config = CLIPConfig(
        text_config=dict(
            vocab_size=len(VOCAB), hidden_size=config.text_width, intermediate_size=4 * config.text_width,
            num_hidden_layers=config.text_layers, num_attention_heads=config.text_heads,
            max_position_embeddings=config.max_text_tokens, projection_dim=config.embed_dim,
            pad_token_id=VOCAB["[PAD]"], bos_token_id=VOCAB["[BOS]"], eos_token_id=VOCAB["[EOS]"],
        ),
        vision_config=dict(
            hidden_size=config.vision_width, intermediate_size=4 * config.vision_width,
            num_hidden_layers=config.vision_layers, num_attention_heads=config.vision_heads,
            image_size=config.image_size, patch_size=config.patch_size, projection_dim=config.embed_dim,
        ),
        projection_dim=config.embed_dim,
        logit_scale_init_value=logit_scale_init(config.temperature),
    )  # fmt: skip
    return CLIPModel(clip_config)


@torch.no_grad()
def embed_images(model, images: torch.Tensor, batch_size: int = 256) -> torch.Tensor:
    """CLIP image embeddings of uint8 images (B, 3, H, W) at the model's size -> (B, D)."""
    from .vision import pixel_values_from_uint8

    out = [model.get_image_features(pixel_values=pixel_values_from_uint8(images[i : i + batch_size]).to(model.device)).pooler_output
           for i in range(0, len(images), batch_size)]  # fmt: skip
    return torch.cat(out)


@torch.no_grad()
def embed_texts(model, tokenizer, texts: Sequence[str], batch_size: int = 512) -> torch.Tensor:
    """CLIP text embeddings -> (B, D)."""
    out = []
    for i in range(0, len(texts), batch_size):
        tokens = tokenizer(list(texts[i : i + batch_size]), padding=True, return_tensors="pt").to(model.device)
        out.append(model.get_text_features(**tokens).pooler_output)
    return torch.cat(out)


def zero_shot_single_objects(model, tokenizer, scenes: Sequence[data.Scene]) -> dict[str, float]:
    """Zero-shot over the alt texts of all 216 single-object scenes: is the best prompt's color+shape right, its position?"""
    prompts = single_object_prompts()
    predicted = zero_shot_predict(
        embed_images(model, data.render_batch(scenes, model.config.vision_config.image_size)),
        embed_texts(model, tokenizer, [p[3] for p in prompts]),
    )
    pairs = [prompts[i][:2] == s.objects[0].pair for i, s in zip(predicted.tolist(), scenes)]
    positions = [prompts[i][2] == s.objects[0].position for i, s in zip(predicted.tolist(), scenes)]
    return {"color_shape": sum(pairs) / len(scenes), "position": sum(positions) / len(scenes)}


def retrieval(model, tokenizer, scenes: Sequence[data.Scene], ks: Sequence[int] = (1, 5)) -> dict[str, float]:
    """Image -> alt-text retrieval among the distinct alt texts of `scenes`; also by object count."""
    texts = [data.alt_text(s) for s in scenes]
    gallery = list(dict.fromkeys(texts))
    similarity = similarity_logits(
        embed_images(model, data.render_batch(scenes, model.config.vision_config.image_size)),
        embed_texts(model, tokenizer, gallery), 1.0,
    )  # (B, G)  # fmt: skip
    index = {t: i for i, t in enumerate(gallery)}
    correct = torch.zeros_like(similarity, dtype=torch.bool)
    correct[torch.arange(len(texts)), torch.tensor([index[t] for t in texts])] = True
    out = {f"R@{k}": v for k, v in recall_at_k(similarity, correct, ks).items()}
    counts = torch.tensor([len(s.objects) for s in scenes])
    for n in range(1, data.MAX_OBJECTS + 1):
        rows = counts == n
        if rows.any():
            out.update({f"R@{k} ({n} obj)": v for k, v in recall_at_k(similarity[rows], correct[rows], ks).items()})
    return out


def evaluate_clip(model, tokenizer, n_single: int = 1000, n_retrieval: int = 1000, split: str = "test",
                  start: int = 0) -> dict[str, float]:  # fmt: skip
    """The shapes-clip metrics on held-out scenes of `split`: seen pairs, and the withheld pairs on their own."""
    was_training = model.training
    model.eval()
    singles = data.scenes(split, n_single, start, n_objects=1, pairs="seen")
    withheld = data.scenes(split, n_single, start + 10_000_000, n_objects=1, pairs="withheld")
    busy = data.scenes(split, n_retrieval, start + 20_000_000, pairs="seen")
    out = {f"zero-shot {k}": v for k, v in zero_shot_single_objects(model, tokenizer, singles).items()}
    out.update({f"withheld zero-shot {k}": v for k, v in zero_shot_single_objects(model, tokenizer, withheld).items()})
    out.update(retrieval(model, tokenizer, busy))
    model.train(was_training)
    return out
