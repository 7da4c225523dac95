"""The recipe of the shipped `shapes-clip`: a tiny CLIP trained from scratch on the shapes world's
alt texts.

Lesson 03 trains a small one the same way. Each batch is half single-object scenes (the only alt
texts that say *where*, so the only signal for position) and half scenes of 1-3 objects as in
evaluation; every image is also scored against a hard negative, a text one attribute away. The loss
is lesson 03's `contrastive.clip_loss`, with the CLIP's own learnable logit scale; the withheld
color-shape pairs never appear.
"""

from __future__ import annotations

import random
from dataclasses import asdict, dataclass
from pathlib import Path

import torch

from .. import clip, contrastive, data
from ..tokenizer import build_tokenizer
from ..utils import get_device, seed_everything
from ..vision import CLIP_MEAN, CLIP_STD, pixel_values
from .loop import TrainConfig, distributed, record_recipe, train_loop

__all__ = [
    "ClipRecipe",
    "clip_batch",
    "clip_step_loss",
    "recipe_dict",
    "report",
    "save_clip_extras",
    "train_clip",
]


@dataclass(frozen=True)
class ClipRecipe:
    model: clip.ClipConfig = clip.ClipConfig()
    train: TrainConfig = TrainConfig(steps=2000, eval_every=250, save_every=250)
    hard_negatives: bool = True
    # : Share of each batch that is single-object scenes: the only alt texts that say *where*, so
    # the only
    #: signal for position; the rest are 1-3 objects as in evaluation.
    single_object_share: float = 0.5


def clip_batch(step: int, recipe: ClipRecipe) -> tuple[torch.Tensor, list[str], list[str]]:
    """The training batch of `step`: uint8 images (B, 3, H, W), their alt texts, and one hard
    negative each."""
    size = recipe.train.batch_size
    singles = round(recipe.single_object_share * size)
    scenes = [
        data.random_scene(
            data.split_seed("train", step * size + i), 1 if i < singles else None, pairs="seen"
        )
        for i in range(size)
    ]
    images = data.render_batch(scenes)  # (B, 3, H, W)
    texts = [data.alt_text(s) for s in scenes]
    negatives = []
    if recipe.hard_negatives:
        rng = random.Random(step)
        negatives = [data.alt_text(contrastive.hard_negative(s, rng)) for s in scenes]
    return images, texts, negatives


def clip_step_loss(recipe: ClipRecipe, tokenizer):
    """`step_loss` for `train_loop`: lesson 03's CLIP loss; hard negatives join the texts each image
    is scored
    against, and identical texts in a batch count as positives of each other."""

    def step_loss(model, step: int):
        images, texts, negatives = clip_batch(step, recipe)
        device = model.device
        tokens = tokenizer(texts + negatives, padding=True, return_tensors="pt").to(device)
        image_embeds = model.get_image_features(
            pixel_values=pixel_values(images).to(device)
        ).pooler_output
        text_embeds = model.get_text_features(**tokens).pooler_output  # (B + B_neg, D)
        b = len(texts)
        loss = contrastive.clip_loss(
            image_embeds, text_embeds[:b], model.logit_scale, texts, text_embeds[b:]
        )
        return loss, {"scale": contrastive.clamped_scale(model.logit_scale).item()}

    return step_loss


def save_clip_extras(folder: Path, tokenizer, config: clip.ClipConfig) -> None:
    """What makes a CLIP folder self-contained: its tokenizer and its image processor's
    configuration."""
    from ..checkpoints import quiet_transformers

    tokenizer.save_pretrained(folder)
    with quiet_transformers():
        from transformers import CLIPImageProcessor

        CLIPImageProcessor(
            size={"shortest_edge": config.image_size},
            crop_size={"height": config.image_size, "width": config.image_size},
            image_mean=list(CLIP_MEAN),
            image_std=list(CLIP_STD),
        ).save_pretrained(folder)


def recipe_dict(recipe: ClipRecipe) -> dict:
    return {
        "model": asdict(recipe.model),
        "train": asdict(recipe.train),
        "hard_negatives": recipe.hard_negatives,
        "single_object_share": recipe.single_object_share,
    }


def train_clip(
    run_dir: str | Path,
    recipe: ClipRecipe = ClipRecipe(),
    eval_scenes: int = 300,
    progress: bool = True,
    stop_at: int | None = None,
):
    """Train (or resume) a shapes-world CLIP; returns (model, TrainResult). `RUN/last` is a complete
    HF folder."""
    if distributed()[1] > 1:
        raise ValueError(
            "the CLIP recipe scores every image against every text of the batch, so a shard per "
            "process would lose most negatives; run it in one process (python -m mmcourse train "
            "clip), or gather the features across processes first."
        )
    tokenizer = build_tokenizer()
    seed_everything(recipe.train.seed)
    model = clip.build_clip(recipe.model).to(get_device())

    def evaluate(model, step):
        return clip.evaluate_clip(
            model, tokenizer, n_single=eval_scenes, n_retrieval=eval_scenes, split="val"
        )

    record_recipe(run_dir, recipe_dict(recipe))
    result = train_loop(
        model,
        clip_step_loss(recipe, tokenizer),
        recipe.train,
        run_dir,
        evaluate,
        save_extra=lambda folder: save_clip_extras(folder, tokenizer, recipe.model),
        progress=progress,
        stop_at=stop_at,
    )
    return model, result


# --- the registry's interface: default, train, load, measure, card, report
# ---------------------------------

CARD = "shapes-clip.md"
CURVE_METRIC = "R@1"


def default() -> ClipRecipe:
    return ClipRecipe()


train = train_clip


def load(folder: str | Path):
    from transformers import CLIPModel

    from .. import checkpoints

    return checkpoints.from_pretrained(CLIPModel, folder).eval()


def measure(model, eval_size: int, start: int = 0) -> dict:
    """What the card and metrics.json report: the CLIP metrics on fresh test scenes."""
    metrics = clip.evaluate_clip(
        model, build_tokenizer(), eval_size, eval_size, split="test", start=start
    )
    return {"eval_size": eval_size, "split": "test", "metrics": metrics}


def metrics_table(metrics: dict[str, float]) -> str:
    """A Markdown table of metrics, in percent."""
    rows = [f"| {name} | {value * 100:.1f} % |" for name, value in metrics.items()]
    return "\n".join(["| metric | value |", "|---|---|", *rows])


def card_fields(target: Path, model, recipe: dict, measured: dict) -> dict:
    return {
        "params": sum(p.numel() for p in model.parameters()) / 1e6,
        "size": (target / "model.safetensors").stat().st_size / 1e6,
        "table": metrics_table(measured["metrics"]),
    }


def report(name: str, size: int = 1000, start: int = 0) -> str:
    """`mmcourse eval clip`: the metrics of a CLIP (shipped name or folder) on fresh test scenes."""
    metrics = measure(load(name), size, start)["metrics"]
    lines = [f"{name}: {size} fresh test scenes per group (start {start})"]
    lines += [f"  {metric:32} {value * 100:6.1f} %" for metric, value in metrics.items()]
    return "\n".join(lines)
