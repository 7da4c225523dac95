"""A tiny CLIP for the shapes world: its config and builder, embeddings, and how to measure it.

Lesson 03 trains one with the loss of `mmcourse.contrastive`; the shipped `shapes-clip` is built
here (`build_clip(ClipConfig())`) and trained by the recipe in `mmcourse.recipes.shapes_clip`. A
CLIP is measured on fresh held-out scenes: zero-shot over the alt texts of all 216 single-object
scenes, image -> alt-text retrieval among busy scenes, and the withheld color-shape pairs on their
own.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

import torch

from . import data
from .contrastive import logit_scale_init, recall_at_k, similarity_logits, zero_shot_predict
from .vision import pixel_values

__all__ = [
    "PRESETS",
    "ClipConfig",
    "build_clip",
    "embed_images",
    "embed_texts",
    "evaluate_clip",
    "retrieval",
    "single_object_prompts",
    "zero_shot_single_objects",
]


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
    "nano": ClipConfig(
        vision_width=64,
        vision_layers=2,
        vision_heads=2,
        text_width=64,
        text_layers=2,
        text_heads=2,
        embed_dim=64,
    ),
}


def build_clip(config: ClipConfig = ClipConfig()):
    """A randomly initialised `transformers.CLIPModel` of `config`, with the course tokenizer's
    special ids."""
    from transformers import CLIPConfig, CLIPModel

    from .tokenizer import VOCAB

    clip_config = CLIPConfig(
        text_config=dict(
            vocab_size=len(VOCAB),
            hidden_size=config.text_width,
            intermediate_size=4 * config.text_width,
            num_hidden_layers=config.text_layers,
            num_attention_heads=config.text_heads,
            max_position_embeddings=config.max_text_tokens,
            projection_dim=config.embed_dim,
            pad_token_id=VOCAB["[PAD]"],
            bos_token_id=VOCAB["[BOS]"],
            eos_token_id=VOCAB["[EOS]"],
        ),
        vision_config=dict(
            hidden_size=config.vision_width,
            intermediate_size=4 * config.vision_width,
            num_hidden_layers=config.vision_layers,
            num_attention_heads=config.vision_heads,
            image_size=config.image_size,
            patch_size=config.patch_size,
            projection_dim=config.embed_dim,
        ),
        projection_dim=config.embed_dim,
        logit_scale_init_value=logit_scale_init(config.temperature),
    )
    return CLIPModel(clip_config)


@torch.no_grad()
def embed_images(model, images: torch.Tensor, batch_size: int = 256) -> torch.Tensor:
    """CLIP image embeddings of uint8 images (B, 3, H, W) at the model's size -> (B, D)."""
    out = [
        model.get_image_features(
            pixel_values=pixel_values(images[i : i + batch_size]).to(model.device)
        ).pooler_output
        for i in range(0, len(images), batch_size)
    ]
    return torch.cat(out)


@torch.no_grad()
def embed_texts(model, tokenizer, texts: Sequence[str], batch_size: int = 512) -> torch.Tensor:
    """CLIP text embeddings -> (B, D)."""
    out = []
    for i in range(0, len(texts), batch_size):
        tokens = tokenizer(list(texts[i : i + batch_size]), padding=True, return_tensors="pt").to(
            model.device
        )
        out.append(model.get_text_features(**tokens).pooler_output)
    return torch.cat(out)


def single_object_prompts(pairs=data.ALL_PAIRS) -> list[tuple[str, str, str, str]]:
    """(color, shape, position, alt text) for every single-object scene: the zero-shot classes."""
    out = []
    for color, shape in pairs:
        for position in data.POSITIONS:
            scene = data.Scene.from_triples([(color, shape, position)])
            out.append((color, shape, position, data.alt_text(scene)))
    return out


def zero_shot_single_objects(model, tokenizer, scenes: Sequence[data.Scene]) -> dict[str, float]:
    """Zero-shot over the alt texts of all 216 single-object scenes: is the best prompt's
    color+shape right, its position?"""
    prompts = single_object_prompts()
    predicted = zero_shot_predict(
        embed_images(model, data.render_batch(scenes, model.config.vision_config.image_size)),
        embed_texts(model, tokenizer, [p[3] for p in prompts]),
    )
    pairs = [prompts[i][:2] == s.objects[0].pair for i, s in zip(predicted.tolist(), scenes)]
    positions = [prompts[i][2] == s.objects[0].position for i, s in zip(predicted.tolist(), scenes)]
    return {"color_shape": sum(pairs) / len(scenes), "position": sum(positions) / len(scenes)}


def retrieval(
    model, tokenizer, scenes: Sequence[data.Scene], ks: Sequence[int] = (1, 5)
) -> dict[str, float]:
    """Image -> alt-text retrieval among the distinct alt texts of `scenes`; also by object
    count."""
    texts = [data.alt_text(s) for s in scenes]
    gallery = list(dict.fromkeys(texts))
    # (B, G)
    similarity = similarity_logits(
        embed_images(model, data.render_batch(scenes, model.config.vision_config.image_size)),
        embed_texts(model, tokenizer, gallery),
        1.0,
    )
    index = {t: i for i, t in enumerate(gallery)}
    correct = torch.zeros_like(similarity, dtype=torch.bool)
    correct[torch.arange(len(texts)), torch.tensor([index[t] for t in texts])] = True
    out = {f"R@{k}": v for k, v in recall_at_k(similarity, correct, ks).items()}
    counts = torch.tensor([len(s.objects) for s in scenes])
    for n in range(1, data.MAX_OBJECTS + 1):
        rows = counts == n
        if rows.any():
            out.update(
                {
                    f"R@{k} ({n} obj)": v
                    for k, v in recall_at_k(similarity[rows], correct[rows], ks).items()
                }
            )
    return out


def evaluate_clip(
    model,
    tokenizer,
    n_single: int = 1000,
    n_retrieval: int = 1000,
    split: str = "test",
    start: int = 0,
) -> dict[str, float]:
    """The shapes-clip metrics on held-out scenes of `split`: seen pairs, and the withheld pairs on
    their own."""
    was_training = model.training
    model.eval()
    singles = data.scenes(split, n_single, start, n_objects=1, pairs="seen")
    withheld = data.scenes(split, n_single, start + 10_000_000, n_objects=1, pairs="withheld")
    busy = data.scenes(split, n_retrieval, start + 20_000_000, pairs="seen")
    out = {
        f"zero-shot {k}": v for k, v in zero_shot_single_objects(model, tokenizer, singles).items()
    }
    out.update(
        {
            f"withheld zero-shot {k}": v
            for k, v in zero_shot_single_objects(model, tokenizer, withheld).items()
        }
    )
    out.update(retrieval(model, tokenizer, busy))
    model.train(was_training)
    return out
