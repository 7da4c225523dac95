"""A small, step-based training loop, and the recipe that trains the shipped `shapes-clip`.

Lesson 03 uses it; the VLM chapters reuse `train_loop`. What it does, and why:

- **step-based**: the schedule is warm-up then cosine decay over a fixed number of optimizer steps, and the
  data of step s is a pure function of s (the shapes world draws scene `s * batch + i`), so
- **resumable**: every `save_every` steps it writes the model (Hugging Face format) and the optimizer state to
  `RUN/last/`; started again with the same `RUN`, it continues from there and ends with the same weights;
- **seeded**, AdamW, gradient clipping, a tqdm progress bar, and an `evaluate(model, step)` callback every
  `eval_every` steps whose metrics go into `RUN/history.json` with the wall and CPU seconds spent so far.
"""

from __future__ import annotations

import json
import math
import random
import shutil
import time
from collections.abc import Callable
from dataclasses import asdict, dataclass
from pathlib import Path

import torch
from tqdm.auto import tqdm

from . import contrastive, data
from .tokenizer import build_tokenizer
from .utils import get_device, seed_everything
from .vision import CLIP_MEAN, CLIP_STD, pixel_values_from_uint8


@dataclass(frozen=True)
class TrainConfig:
    steps: int = 3000
    batch_size: int = 128
    lr: float = 1e-3
    weight_decay: float = 0.1
    warmup_steps: int = 150
    min_lr_ratio: float = 0.05
    grad_clip: float = 1.0
    seed: int = 0
    eval_every: int = 250
    save_every: int = 250
    threads: int = 2


def lr_factor(step: int, config: TrainConfig) -> float:
    """Linear warm-up to 1, then cosine decay to `min_lr_ratio` at the last step."""
    if step < config.warmup_steps:
        return (step + 1) / config.warmup_steps
    progress = (step - config.warmup_steps) / max(1, config.steps - config.warmup_steps)
    return config.min_lr_ratio + (1 - config.min_lr_ratio) * 0.5 * (1 + math.cos(math.pi * min(progress, 1.0)))


@dataclass
class TrainResult:
    steps: int
    history: list[dict]
    wall_seconds: float
    cpu_seconds: float


def _save(model, folder: Path, optimizer, step: int, history: list, clock: dict, save_extra) -> None:
    tmp = folder.with_name(folder.name + ".tmp")
    tmp.mkdir(parents=True, exist_ok=True)
    from .checkpoints import quiet_transformers

    from safetensors.torch import save_model

    with quiet_transformers():
        model.save_pretrained(tmp)  # the Hugging Face folder(s) a user loads
    save_model(model, str(tmp / "training_state.safetensors"))  # every tensor, exactly, for resuming
    if save_extra:
        save_extra(tmp)
    torch.save({"optimizer": optimizer.state_dict(), "step": step, "clock": clock}, tmp / "trainer_state.pt")
    (tmp / "history.json").write_text(json.dumps(history, indent=1))
    # replace the previous checkpoint only once the new one is complete; `_recover` mends an interruption
    old = folder.with_name(folder.name + ".old")
    shutil.rmtree(old, ignore_errors=True)
    if folder.exists():
        folder.rename(old)
    tmp.rename(folder)
    shutil.rmtree(old, ignore_errors=True)


def _recover(folder: Path) -> None:
    """After a crash between the two renames of `_save`, the previous complete checkpoint is `last.old`."""
    old = folder.with_name(folder.name + ".old")
    if not folder.exists() and (old / "trainer_state.pt").exists():
        old.rename(folder)


def train_loop(
    model: torch.nn.Module,
    step_loss: Callable[[torch.nn.Module, int], tuple[torch.Tensor, dict]],
    config: TrainConfig,
    run_dir: str | Path,
    evaluate: Callable[[torch.nn.Module, int], dict] | None = None,
    save_extra: Callable[[Path], None] | None = None,
    progress: bool = True,
    stop_at: int | None = None,
) -> TrainResult:
    """Train `model` for `config.steps` steps of `step_loss(model, step) -> (loss, logs)`; resume from `run_dir`.

    `stop_at` pauses after that step (saving first): run again to continue where it stopped.
    """
    threads = torch.get_num_threads()
    torch.set_num_threads(config.threads)
    try:
        return _train(model, step_loss, config, Path(run_dir), evaluate, save_extra, progress, stop_at)
    finally:
        torch.set_num_threads(threads)  # the caller's setting, e.g. the rest of a notebook


def _train(model, step_loss, config, run_dir, evaluate, save_extra, progress, stop_at) -> TrainResult:
    seed_everything(config.seed)
    last = run_dir / "last"
    params = [p for p in model.parameters() if p.requires_grad]
    decay = [p for p in params if p.ndim >= 2]
    no_decay = [p for p in params if p.ndim < 2]  # biases, norms, the logit scale
    optimizer = torch.optim.AdamW(
        [{"params": decay, "weight_decay": config.weight_decay}, {"params": no_decay, "weight_decay": 0.0}], lr=config.lr
    )
    start, history, clock = 0, [], {"wall": 0.0, "cpu": 0.0}
    _recover(last)
    if (last / "trainer_state.pt").exists():
        from safetensors.torch import load_model

        load_model(model, str(last / "training_state.safetensors"), device=str(next(model.parameters()).device))
        state = torch.load(last / "trainer_state.pt", weights_only=True)
        optimizer.load_state_dict(state["optimizer"])
        start, clock = state["step"], state["clock"]
        history = json.loads((last / "history.json").read_text())
    model.train()
    wall0, cpu0 = time.perf_counter() - clock["wall"], time.process_time() - clock["cpu"]
    end = config.steps if stop_at is None else min(stop_at, config.steps)
    bar = tqdm(range(start, end), initial=start, total=config.steps, disable=not progress, desc="training")
    for step in bar:
        for group in optimizer.param_groups:
            group["lr"] = config.lr * lr_factor(step, config)
        loss, logs = step_loss(model, step)
        optimizer.zero_grad(set_to_none=True)
        loss.backward()
        torch.nn.utils.clip_grad_norm_(params, config.grad_clip)
        optimizer.step()
        bar.set_postfix(loss=f"{loss.item():.3f}")
        done = step + 1
        record = {"step": done, "loss": loss.item(), "lr": optimizer.param_groups[0]["lr"], **logs}
        if evaluate and (done % config.eval_every == 0 or done == config.steps):
            model.eval()
            with torch.no_grad():
                record.update(evaluate(model, done))
            model.train()
            tqdm.write(f"step {done}: " + ", ".join(f"{k} {v:.3f}" for k, v in record.items() if k != "step"))
        clock = {"wall": time.perf_counter() - wall0, "cpu": time.process_time() - cpu0}
        record.update(wall_seconds=clock["wall"], cpu_seconds=clock["cpu"])
        history.append(record)
        if done % config.save_every == 0 or done in (config.steps, end):
            _save(model, last, optimizer, done, history, clock, save_extra)
    model.eval()
    return TrainResult(max(start, end), history, clock["wall"], clock["cpu"])


# --- the shapes-clip recipe ----------------------------------------------------------------------------


@dataclass(frozen=True)
class ClipRecipe:
    model: contrastive.ClipConfig = contrastive.ClipConfig()
    train: TrainConfig = TrainConfig(steps=2000, eval_every=250, save_every=250)
    hard_negatives: bool = True
    #: Share of each batch that is single-object scenes: the only alt texts that say *where*, so the only
    #: signal for position; the rest are 1-3 objects as in evaluation.
    single_object_share: float = 0.5


def clip_batch(step: int, recipe: ClipRecipe) -> tuple[torch.Tensor, list[str], list[str]]:
    """The training batch of `step`: uint8 images (B, 3, H, W), their alt texts, and one hard negative each."""
    size = recipe.train.batch_size
    singles = round(recipe.single_object_share * size)
    scenes = [data.random_scene(data.split_seed("train", step * size + i), 1 if i < singles else None, pairs="seen")
              for i in range(size)]  # fmt: skip
    images = data.render_batch(scenes)  # (B, 3, H, W)
    texts = [data.alt_text(s) for s in scenes]
    negatives = []
    if recipe.hard_negatives:
        rng = random.Random(step)
        negatives = [data.alt_text(contrastive.hard_negative(s, rng)) for s in scenes]
    return images, texts, negatives


def clip_step_loss(recipe: ClipRecipe, tokenizer):
    """`step_loss` for `train_loop`: symmetric CLIP loss; hard negatives join the texts each image is scored against."""

    def step_loss(model, step: int):
        images, texts, negatives = clip_batch(step, recipe)
        device = model.device
        tokens = tokenizer(texts + negatives, padding=True, return_tensors="pt").to(device)
        image_embeds = model.get_image_features(pixel_values=pixel_values_from_uint8(images).to(device)).pooler_output
        text_embeds = model.get_text_features(**tokens).pooler_output  # (B + B_neg, D)
        scale = model.logit_scale.clamp(max=contrastive.MAX_LOGIT_SCALE).exp()
        logits = contrastive.similarity_logits(image_embeds, text_embeds, scale)  # (B, B + B_neg)
        b = len(texts)
        positives = contrastive.positive_mask(texts).to(device)  # (B, B)
        with_negatives = torch.cat([positives, torch.zeros(b, len(negatives), dtype=torch.bool, device=device)], dim=1)
        loss_i2t = contrastive.multi_positive_cross_entropy(logits, with_negatives)
        loss_t2i = contrastive.multi_positive_cross_entropy(logits[:, :b].T, positives)
        return (loss_i2t + loss_t2i) / 2, {"scale": scale.item()}

    return step_loss


def train_clip(run_dir: str | Path, recipe: ClipRecipe = ClipRecipe(), eval_scenes: int = 300, progress: bool = True,
               stop_at: int | None = None):  # fmt: skip
    """Train (or resume) a shapes-world CLIP; returns (model, TrainResult). `RUN/last` is a complete HF folder."""
    tokenizer = build_tokenizer()
    seed_everything(recipe.train.seed)
    model = contrastive.build_clip(recipe.model).to(get_device())

    def evaluate(model, step):
        return contrastive.evaluate_clip(model, tokenizer, n_single=eval_scenes, n_retrieval=eval_scenes, split="val")

    record_recipe(run_dir, recipe_dict(recipe))
    result = train_loop(model, clip_step_loss(recipe, tokenizer), recipe.train, run_dir, evaluate,
                        save_extra=lambda folder: save_clip_extras(folder, tokenizer, recipe.model), progress=progress,
                        stop_at=stop_at)  # fmt: skip
    return model, result


def record_recipe(run_dir: str | Path, described: dict) -> None:
    """Write RUN/recipe.json (with the code's commit) or, when resuming, refuse a run folder of another recipe."""
    run_dir = Path(run_dir)
    run_dir.mkdir(parents=True, exist_ok=True)
    recipe_file = run_dir / "recipe.json"
    if recipe_file.exists():
        previous = {k: v for k, v in json.loads(recipe_file.read_text()).items() if k != "commit"}
        if previous != json.loads(json.dumps(described)):  # compared as JSON: tuples read back as lists
            raise ValueError(f"{run_dir} holds a run of another recipe; pick a new run folder or delete it.")
    else:
        recipe_file.write_text(json.dumps({**described, "commit": git_commit()}, indent=1) + "\n")


def save_clip_extras(folder: Path, tokenizer, config: contrastive.ClipConfig) -> None:
    """What makes a CLIP folder self-contained: its tokenizer and its image processor's configuration."""
    from .checkpoints import quiet_transformers

    tokenizer.save_pretrained(folder)
    with quiet_transformers():
        from transformers import CLIPImageProcessor

        CLIPImageProcessor(
            size={"shortest_edge": config.image_size}, crop_size={"height": config.image_size, "width": config.image_size},
            image_mean=list(CLIP_MEAN), image_std=list(CLIP_STD),
        ).save_pretrained(folder)  # fmt: skip


def recipe_dict(recipe: ClipRecipe) -> dict:
    return {"model": asdict(recipe.model), "train": asdict(recipe.train), "hard_negatives": recipe.hard_negatives,
            "single_object_share": recipe.single_object_share}  # fmt: skip



# --- shipping a checkpoint -------------------------------------------------------------------------------

TRAINING_ONLY_FILES = ("trainer_state.pt", "history.json", "training_state.safetensors")


def git_commit() -> str:
    """The short hash of HEAD, with "-dirty" when tracked files differ from it (the run then used other code)."""
    import subprocess

    here = Path(__file__).resolve().parent
    try:
        head = subprocess.run(["git", "rev-parse", "--short", "HEAD"], capture_output=True, text=True, cwd=here, timeout=10)
        changed = subprocess.run(["git", "status", "--porcelain", "--untracked-files=no", "--", "."], capture_output=True,
                                 text=True, cwd=here, timeout=10)  # fmt: skip
    except (OSError, subprocess.SubprocessError):
        return "unknown"
    commit = head.stdout.strip()
    if not commit:
        return "unknown"
    return commit + ("-dirty" if changed.stdout.strip() else "")


def metrics_table(metrics: dict[str, float]) -> str:
    """A Markdown table of metrics, in percent."""
    rows = [f"| {name} | {value * 100:.1f} % |" for name, value in metrics.items()]
    return "\n".join(["| metric | value |", "|---|---|", *rows])


def ship_clip(run_dir: str | Path, name: str = "shapes-clip", eval_size: int = 1000) -> Path:
    """Copy a finished run into the package as a shipped checkpoint: weights, tokenizer, processor, card, manifest."""
    from . import checkpoints

    last = Path(run_dir) / "last"
    state = torch.load(last / "trainer_state.pt", weights_only=True)
    history = json.loads((last / "history.json").read_text())
    recipe = json.loads((Path(run_dir) / "recipe.json").read_text())
    if state["step"] != recipe["train"]["steps"]:
        raise ValueError(f"{run_dir} stopped at step {state['step']} of {recipe['train']['steps']}; finish it first.")
    target = checkpoints.WEIGHTS_DIR / name
    if target.exists():
        shutil.rmtree(target)
    target.mkdir(parents=True)
    for path in last.iterdir():
        if path.name not in TRAINING_ONLY_FILES:
            shutil.copy2(path, target / path.name)
    from transformers import CLIPModel

    model = CLIPModel.from_pretrained(target).eval()
    metrics = contrastive.evaluate_clip(model, build_tokenizer(), eval_size, eval_size, split="test")
    curve = [{k: round(v, 4) for k, v in r.items()} for r in history if "R@1" in r]
    (target / "README.md").write_text(CARD.format(
        name=name, params=sum(p.numel() for p in model.parameters()) / 1e6,
        size=(target / "model.safetensors").stat().st_size / 1e6, recipe=json.dumps(recipe, indent=1),
        commit=recipe.get("commit", "unknown"), steps=state["step"], threads=recipe["train"]["threads"],
        minutes=state["clock"]["wall"] / 60, cpu_minutes=state["clock"]["cpu"] / 60, eval_size=eval_size,
        table=metrics_table(metrics),
    ))  # fmt: skip
    (target / "training_curve.json").write_text(json.dumps(curve, indent=1) + "\n")
    (target / "metrics.json").write_text(json.dumps({"eval_size": eval_size, "split": "test", "metrics": metrics}, indent=1) + "\n")
    checkpoints.write_manifest(target)
    return target


CARD = """---
library_name: transformers
tags: [clip, mmcourse, shapes-world]
---
# {name}

A tiny CLIP (`CLIPModel`, {params:.2f} M parameters, {size:.1f} MB) trained from scratch by the mmcourse recipe on
the shapes world's alt texts, with hard negatives (texts one attribute away) and without the withheld
color-shape pairs. Lessons 01-03 use it; the course's VLMs use its vision tower.

Load it with the plain Hugging Face calls on this folder: `CLIPModel`, `CLIPVisionModel`,
`CLIPImageProcessor`, `AutoTokenizer` (`from_pretrained(mmcourse.checkpoints.path("{name}"))`).

## Training

- recipe: `mmcourse train clip` (`mmcourse.train.ClipRecipe`), seeded and resumable; code at commit `{commit}`
- steps: {steps}; threads: {threads}; training time: {minutes:.1f} min wall, {cpu_minutes:.1f} min CPU on 2 cores
- images: 72 px, 8 px patches (9x9 patches; each grid cell is 3x3 patches); text: the course's word-level tokenizer

```json
{recipe}
```

## Metrics

Fresh held-out scenes of the test split ({eval_size} per row group), computed by `mmcourse eval clip`:
zero-shot over the alt texts of all 216 single-object scenes (color + shape right; position right),
image -> alt-text retrieval among the distinct alt texts of {eval_size} scenes of 1-3 objects (an identical
text counts), and the withheld pairs on their own.

{table}

The validation curve (300 scenes per metric, every 250 steps, with wall and CPU seconds) is in
`training_curve.json`; `benchmarks/clip.py` plots it.
"""
