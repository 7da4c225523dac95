"""LLaVA's two stages on a pretrained language model: `shapes-vlm-aligned` and `shapes-vlm-lora`.

Lesson 09 explains them. Both start from two pretrained towers: the vision tower of `shapes-clip`
and the text-only `shapes-lm` (or any CLIP folder and any Llama-architecture folder with its
tokenizer: `openai/clip-vit-base-patch32`, `HuggingFaceTB/SmolLM2-135M`).

- **Stage 1, feature alignment** (`tune="projector"`, captions only): both towers frozen; only the
  projector trains, on image -> caption. Questions on images are never seen: whatever the model
  answers about an image afterwards, it answers with the language model's text skill.
- **Stage 2, visual instruction tuning**: from the stage-1 projector, a quarter captions and the
  rest balanced questions, training the projector plus the language model, through LoRA adapters
  (`tune="lora"`, `peft`), every weight (`tune="full"`), or not at all (`tune="projector"`). A
  finished LoRA run's folder holds the plain model with the adapters merged in, so `vlm.load` reads
  it like any VLM.
"""

from __future__ import annotations

import json
import shutil
from dataclasses import asdict, dataclass, field
from pathlib import Path

from .. import checkpoints, frozen_lm, metrics
from ..utils import get_device, seed_everything
from ..vlm import MultimodalModel, VLMConfig, answer_loss
from .loop import TrainConfig, record_recipe, shard, train_loop

# a two-stage VLM is loaded, measured and reported as the from-scratch ones are
from .shapes_vlm import caption_table, finish_folder, load, measure, report, vlm_batch, vqa_table

__all__ = [
    "CARD",
    "CURVE_METRIC",
    "PARAMETERS_FILE",
    "RESULTS",
    "TUNES",
    "StageRecipe",
    "build",
    "card_fields",
    "default",
    "finish_folder",
    "load",
    "measure",
    "recipe_dict",
    "recorded_runs",
    "report",
    "stage_batch",
    "train",
    "train_stage",
]

TUNES = frozen_lm.TUNES


@dataclass(frozen=True)
class StageRecipe:
    stage: int = 1
    tune: str = "projector"  # besides the projector: nothing, LoRA adapters, or the LM (TUNES)
    vision: str = "shapes-clip"  # a CLIP folder (full or vision-only) with its image processor
    language: str = "shapes-lm"  # a Llama-architecture folder with its tokenizer
    projector: str = "mlp"
    merge: int = 3  # 3 x 3 blocks: one image token per cell, as a described scene has one vector
    layer: int = -1
    start_from: str | None = None  # stage 2: the stage-1 VLM whose projector it starts from
    caption_share: float = 1.0  # the rest of each batch is balanced questions
    lora: frozen_lm.LoraSettings = field(default_factory=frozen_lm.LoraSettings)
    loss_per: str = "example"
    train: TrainConfig = TrainConfig(
        steps=1500, batch_size=64, lr=2e-3, warmup_steps=100, eval_every=250, save_every=250
    )

    def __post_init__(self) -> None:
        if self.tune not in TUNES:
            raise ValueError(f"tune must be one of {', '.join(TUNES)}, got {self.tune!r}.")
        if not isinstance(self.merge, int) or self.merge < 1:
            raise ValueError(
                f"merge must be a positive int (1: one image token per patch), got {self.merge!r}."
            )
        if self.stage not in (1, 2):
            raise ValueError(f"stage is 1 (alignment) or 2 (instructions), got {self.stage!r}.")
        if self.stage == 1 and (self.tune != "projector" or self.caption_share != 1.0):
            raise ValueError(
                "stage 1 trains only the projector, on captions only: tune='projector', "
                "caption_share=1.0."
            )


def default(stage: int = 1, tune: str = "projector") -> StageRecipe:
    """The shipped configurations: stage 1 (`shapes-vlm-aligned`); stage 2 from it, LoRA by
    default (`shapes-vlm-lora`)."""
    if stage == 1:
        return StageRecipe()
    return StageRecipe(
        stage=2,
        tune=tune,
        start_from="shapes-vlm-aligned",
        caption_share=0.25,
        train=TrainConfig(
            steps=1000,
            batch_size=64,
            # every pretrained weight moves in full fine-tuning: a smaller step
            lr=5e-4 if tune == "full" else 2e-3,
            warmup_steps=100,
            eval_every=250,
            save_every=250,
        ),
    )


def stage_batch(step: int, recipe: StageRecipe, positions):
    """The examples at `positions` of step `step`'s batch: uint8 images, prompts ("" for a caption)
    and targets; the from-scratch recipe's draw, so the same scenes at the same step."""
    return vlm_batch(step, recipe, recipe.train.batch_size, positions)


def build(recipe: StageRecipe) -> MultimodalModel:
    """The two pretrained towers joined by a new projector (or the stage-1 one), parts frozen as the
    recipe says; LoRA adapters on the language model for `tune="lora"`."""
    from safetensors.torch import load_file

    with checkpoints.quiet_transformers():
        from transformers import (
            AutoTokenizer,
            CLIPImageProcessor,
            CLIPVisionModel,
            LlamaForCausalLM,
        )

    vision = checkpoints.from_pretrained(CLIPVisionModel, recipe.vision)
    processor = checkpoints.from_pretrained(CLIPImageProcessor, recipe.vision)
    language = checkpoints.from_pretrained(LlamaForCausalLM, recipe.language)
    tokenizer = checkpoints.from_pretrained(AutoTokenizer, recipe.language)
    if tokenizer.pad_token is None:
        tokenizer.pad_token = tokenizer.eos_token
    config = VLMConfig(
        projector=recipe.projector,
        merge=recipe.merge,
        layer=recipe.layer,
        freeze_language=recipe.tune != "full",
    )
    model = MultimodalModel(vision, language, None, tokenizer, None, config, processor)
    if recipe.start_from:
        start = Path(checkpoints.resolve(recipe.start_from))
        model.projector.load_state_dict(load_file(start / "projector.safetensors"))
    if recipe.tune == "lora":
        model.language_model = frozen_lm.add_lora(model.language_model, recipe.lora)
    return frozen_lm.freeze_for(model, recipe.tune).to(get_device())


PARAMETERS_FILE = "parameters.json"


def _save_extra(model: MultimodalModel, counts: dict, lora: bool):
    """What the run folder adds to the VLM: the trained and total parameter counts per part, and,
    for LoRA, `language/` as a plain Hugging Face model with the adapters folded in."""

    def save(folder: Path) -> None:
        import copy

        (folder / PARAMETERS_FILE).write_text(json.dumps(counts, indent=1) + "\n")
        if not lora:
            return
        language = folder / "language"
        shutil.rmtree(language)
        merged = frozen_lm.merge_lora(copy.deepcopy(model.language_model))
        with checkpoints.quiet_transformers():
            merged.save_pretrained(language)
        model.tokenizer.save_pretrained(language)

    return save


def recipe_dict(recipe: StageRecipe) -> dict:
    """The recipe as its run records it (the LoRA settings only where LoRA is used)."""
    return {**asdict(recipe), "lora": asdict(recipe.lora) if recipe.tune == "lora" else None}


def train_stage(
    run_dir: str | Path,
    recipe: StageRecipe = StageRecipe(),
    eval_size: int = 200,
    progress: bool = True,
    stop_at: int | None = None,
):
    """Train (or resume) one stage; returns (model, TrainResult). Every evaluation asks questions,
    so stage 1's curve is zero-shot VQA."""
    config = recipe.train
    record_recipe(run_dir, recipe_dict(recipe))
    seed_everything(config.seed)
    model = build(recipe)
    counts = frozen_lm.count_parameters(model)
    positions = shard(config.batch_size)

    def step_loss(model, step):
        images, questions, answers = stage_batch(step, recipe, positions)
        batch = model.training_batch(questions, answers)
        labels = batch.pop("labels")
        logits = model(model.pixel_values(images), **batch).logits
        return answer_loss(logits, model.full_labels(labels), recipe.loss_per), {}

    def evaluate(model, step):
        return metrics.evaluate_vlm(model, eval_size, eval_size // 2, split="val")

    result = train_loop(
        model,
        step_loss,
        config,
        run_dir,
        evaluate if eval_size else None,
        save_extra=_save_extra(model, counts, recipe.tune == "lora"),
        progress=progress,
        stop_at=stop_at,
    )
    return model, result


# --- the registry's interface ---------------------------------------------------------------------

CARD = "shapes-vlm-stages.md"
CURVE_METRIC = "vqa all"
train = train_stage


_WHAT = {
    ("1", "projector"): "stage 1 (feature alignment): only the projector trained, on captions; "
    "both towers frozen. It never saw a question with an image: its answers are zero-shot",
    ("2", "lora"): "stage 2 (visual instruction tuning) from `shapes-vlm-aligned`: the projector "
    "and LoRA adapters on every linear layer of the language model trained (merged into its "
    "weights in this folder)",
    ("2", "full"): "stage 2 from `shapes-vlm-aligned`: the projector and every weight of the "
    "language model trained",
    ("2", "projector"): "stage 2 from `shapes-vlm-aligned`: the projector alone trained on "
    "questions and captions",
}


def card_fields(target: Path, model: MultimodalModel, recipe: dict, measured: dict) -> dict:
    config = json.loads((target / "mmcourse_vlm.json").read_text())
    counts = json.loads((target / PARAMETERS_FILE).read_text())
    sizes = [
        f.stat().st_size
        for part in ("vision", "language")
        for f in (target / part).glob("*.safetensors")
    ]
    return {
        "what": _WHAT[(str(recipe["stage"]), recipe["tune"])],
        "vision": recipe["vision"],
        "language": recipe["language"],
        "stage": recipe["stage"],
        "tune": recipe["tune"],
        "trained": counts["all"][0],
        "trained_share": counts["all"][0] / counts["all"][1] * 100,
        "clip_sha": config["clip_sha256"][:16],
        "params": sum(p.numel() for p in model.parameters()) / 1e6,
        "size": (sum(sizes) + (target / "projector.safetensors").stat().st_size) / 1e6,
        "vqa_table": vqa_table(measured["metrics"], measured["baselines"]),
        "caption_table": caption_table(measured["metrics"]),
    }


RESULTS = Path(__file__).resolve().parent / "results" / "two_stage.json"


def recorded_runs() -> dict[str, dict]:
    """The training runs behind lesson 09's comparisons (stage 1 four ways, stage 2 three ways):
    their last validation evaluation, trained parameters and CPU minutes, as
    `benchmarks/two_stage.py --runs ... --record` wrote them."""
    return json.loads(RESULTS.read_text())
