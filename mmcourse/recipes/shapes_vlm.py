"""The recipe of the shipped `shapes-vlm-patches` and `shapes-vlm-cls`: a tiny Llama on a frozen
CLIP tower.

Lessons 05-07 explain it. The language model and the projector are trained from scratch together on
the frozen vision tower of `shapes-clip`; each batch is a quarter captions, the rest balanced
questions of five kinds; the loss is lesson 05's `answer_loss`, averaged per example, so a one-word
answer weighs as much as a whole caption.
The patch model merges each 3x3 block of patch tokens into one image token (one per cell of the
scene); the cls model reads the one pooled [CLS] token. The withheld color-shape pairs never appear.
"""

from __future__ import annotations

import json
from dataclasses import asdict, dataclass
from pathlib import Path

import torch

from .. import checkpoints, data, metrics
from ..language_model import LanguageConfig, build_language_model
from ..utils import get_device, seed_everything
from ..vision import pixel_values
from ..vlm import MultimodalModel, VLMConfig, answer_loss
from .loop import TrainConfig, record_recipe, shard, train_loop

__all__ = [
    "VLMRecipe",
    "build_vlm",
    "caption_table",
    "recipe",
    "report",
    "train_vlm",
    "vlm_batch",
    "vqa_table",
]


@dataclass(frozen=True)
class VLMRecipe:
    image_tokens: str = "patches"
    vision: str = "shapes-clip"
    language: LanguageConfig = LanguageConfig()
    projector: str = "mlp"
    merge: int = (
        3  # patches: each 3x3 block (one cell of the scene) is one image token; cls needs 1
    )
    caption_share: float = 0.25  # the rest of each batch is balanced questions
    loss_per: str = "example"  # see answer_loss: per token, captions drown the one-word answers
    train: TrainConfig = TrainConfig(
        steps=5000, batch_size=64, lr=1e-3, warmup_steps=100, eval_every=500, save_every=250
    )

    def __post_init__(self) -> None:
        if self.image_tokens == "cls" and self.merge != 1:
            raise ValueError(
                "the cls recipe reads one token; give merge=1 (or use vlm.recipe('cls'))."
            )


def recipe(image_tokens: str = "patches") -> VLMRecipe:
    """The recipe of the shipped `shapes-vlm-<image_tokens>`: the patch model merges 3x3 blocks, cls
    reads one token."""
    return VLMRecipe(image_tokens=image_tokens, merge=3 if image_tokens == "patches" else 1)


def vlm_batch(
    step: int, recipe: VLMRecipe, batch_size: int, positions=None
) -> tuple[torch.Tensor, list[str], list[str]]:
    """The training batch of `step`: uint8 images (B, 3, H, W), prompts ("" for a caption) and
    targets; only the examples at `positions` of it (this process's `shard`) when given."""
    captions = round(recipe.caption_share * batch_size)
    scenes, questions, answers = [], [], []
    for i in range(batch_size) if positions is None else positions:
        seed = data.split_seed("train", step * batch_size + i)
        if i < captions:
            scene = data.random_scene(seed, pairs="seen")
            question, answer = "", data.caption(scene)
        else:
            scene, qa = data.qa_example(seed, pairs="seen")
            question, answer = qa.question, qa.answer
        scenes.append(scene)
        questions.append(question)
        answers.append(answer)
    return data.render_batch(scenes), questions, answers


def build_vlm(recipe: VLMRecipe) -> MultimodalModel:
    from ..tokenizer import build_tokenizer

    with checkpoints.quiet_transformers():
        from transformers import CLIPImageProcessor, CLIPVisionModel

    vision = checkpoints.from_pretrained(CLIPVisionModel, recipe.vision)
    processor = checkpoints.from_pretrained(CLIPImageProcessor, recipe.vision)
    config = VLMConfig(
        image_tokens=recipe.image_tokens, projector=recipe.projector, merge=recipe.merge
    )
    return MultimodalModel(
        vision,
        build_language_model(recipe.language),
        None,
        build_tokenizer(),
        recipe.image_tokens,
        config,
        processor,
    ).to(get_device())


def train_vlm(
    run_dir: str | Path,
    recipe: VLMRecipe = VLMRecipe(),
    eval_size: int = 200,
    progress: bool = True,
    stop_at: int | None = None,
):
    """Train (or resume) a shapes-world VLM on the frozen vision tower of `recipe.vision`; returns
    (model, result).

    Every `recipe.train.eval_every` steps and at the end, `eval_size` validation questions (and half
    as many
    captions) are scored; `eval_size=0` skips that."""
    config = recipe.train
    record_recipe(run_dir, asdict(recipe))
    seed_everything(config.seed)
    model = build_vlm(recipe)
    positions = shard(config.batch_size)

    def step_loss(model, step):
        images, questions, answers = vlm_batch(step, recipe, config.batch_size, positions)
        batch = model.training_batch(questions, answers)
        labels = batch.pop("labels")
        logits = model(pixel_values(images), **batch).logits
        return answer_loss(logits, model.full_labels(labels), recipe.loss_per), {}

    def evaluate(model, step):
        return metrics.evaluate_vlm(model, eval_size, eval_size // 2, split="val")

    result = train_loop(
        model,
        step_loss,
        config,
        run_dir,
        evaluate if eval_size else None,
        progress=progress,
        stop_at=stop_at,
    )
    return model, result


# --- the registry's interface: default, train, load, measure, card, report
# ---------------------------------

CARD = "shapes-vlm.md"
CURVE_METRIC = "vqa all"


def default(image_tokens: str = "patches") -> VLMRecipe:
    return recipe(image_tokens)


train = train_vlm


def finish_folder(target: Path, recipe: dict) -> None:
    """A VLM folder carries its own copy of the vision tower; its config records which CLIP it came
    from."""
    config_path = target / "mmcourse_vlm.json"
    config = json.loads(config_path.read_text())
    clip_weights = checkpoints.path(recipe["vision"]) / "model.safetensors"
    config["clip_sha256"] = checkpoints.sha256(clip_weights)
    config_path.write_text(json.dumps(config, indent=1) + "\n")


def load(folder: str | Path) -> MultimodalModel:
    return MultimodalModel.from_pretrained(checkpoints.resolve(folder))


def measure(model: MultimodalModel, eval_size: int, start: int = 0, progress: bool = True) -> dict:
    """What the card and metrics.json report: questions and captions on fresh test scenes, and the
    baselines."""
    measured = metrics.evaluate_vlm(
        model, eval_size, eval_size, split="test", start=start, progress=progress
    )
    baselines = metrics.baseline_scores(n_questions=eval_size, split="test", start=start)
    return {
        "eval_size": eval_size,
        "split": "test",
        "start": start,
        "metrics": measured,
        "baselines": baselines,
    }


def _reads(model: MultimodalModel) -> str:
    config = model.config
    if config.image_tokens == "cls":
        return "**one** image token, the pooled [CLS] (`pooler_output`)"
    if config.merge == 1:
        return (
            f"**every patch token** of `last_hidden_state`: {model.num_image_tokens} image tokens"
        )
    return (
        f"the patch tokens of `last_hidden_state`, each {config.merge} x {config.merge} block "
        "concatenated into "
        f"one image token (pixel shuffle): **{model.num_image_tokens} image tokens**"
    )


def card_fields(target: Path, model: MultimodalModel, recipe: dict, measured: dict) -> dict:
    config = json.loads((target / "mmcourse_vlm.json").read_text())
    sizes = [
        f.stat().st_size
        for part in ("vision", "language")
        for f in (target / part).glob("*.safetensors")
    ]
    return {
        "image_tokens": recipe["image_tokens"],
        "vision": recipe["vision"],
        "reads": _reads(model),
        "projector": "2-layer GELU MLP" if recipe["projector"] == "mlp" else "linear",
        "lessons": (
            "Lessons 04-07 use it."
            if recipe["image_tokens"] == "patches"
            else "Lesson 07 compares it with the patch model."
        ),
        "clip_sha": config["clip_sha256"][:16],
        "params": sum(p.numel() for p in model.parameters()) / 1e6,
        "lm_params": sum(p.numel() for p in model.language_model.parameters()) / 1e6,
        "size": (sum(sizes) + (target / "projector.safetensors").stat().st_size) / 1e6,
        "vqa_table": vqa_table(measured["metrics"], measured["baselines"]),
        "caption_table": caption_table(measured["metrics"]),
    }


def vqa_table(metrics: dict[str, float], baselines: dict[str, float]) -> str:
    """Markdown: exact match per kind beside the majority and question-only baselines, then position
    by objects."""
    rows = ["| question kind | model | majority | question only |", "|---|---|---|---|"]
    # a small sample may lack a kind
    for kind in [k for k in (*data.KINDS, "all") if f"vqa {k}" in metrics]:
        rows.append(
            f"| {kind} | {metrics[f'vqa {kind}'] * 100:.1f} % | "
            f"{baselines[f'majority {kind}'] * 100:.1f} % "
            f"| {baselines[f'question-only {kind}'] * 100:.1f} % |"
        )
    for n in (1, 2, 3):
        if f"vqa position ({n} obj)" in metrics:
            rows.append(
                f"| position, {n} object{'s' if n > 1 else ''} | "
                f"{metrics[f'vqa position ({n} obj)'] * 100:.1f} % | | |"
            )
    return "\n".join(rows)


def caption_table(metrics: dict[str, float]) -> str:
    """Markdown: captions that parse back to the true scene, overall and by object count, and
    BLEU-4."""
    rows = ["| captions | parse back to the scene |", "|---|---|"]
    rows += [
        f"| {key.removeprefix('caption ')} | {value * 100:.1f} % |"
        for key, value in metrics.items()
        if key.startswith("caption ") and key != "caption BLEU-4"
    ]
    rows.append(f"| BLEU-4 | {metrics['caption BLEU-4'] * 100:.1f} |")
    return "\n".join(rows)


def report(name: str, size: int = 1000, start: int = 0) -> str:
    """`mmcourse eval vlm`: exact match per kind beside the baselines, and captions, on fresh test
    scenes."""
    measured = measure(load(name), size, start)
    return (
        f"{name}: {size} fresh test questions and {size} captions (start {start}), greedy "
        "decoding\n\n"
        f"{vqa_table(measured['metrics'], measured['baselines'])}\n\n"
        f"{caption_table(measured['metrics'])}"
    )
