"""Benchmarks of chapter 09: what each stage costs, at the course's scale and at real-weights scale.

1. the course's scale: trained parameters, samples/s and CPU-seconds per sample of the from-scratch
   recipe (`shapes-vlm-patches`), stage 1, and stage 2 three ways (LoRA, full, projector only), on
   the shipped towers (median over steps 3-12, batch 64, 2 threads);
2. real-weights scale: the same recipe on random-weight folders of the exact configurations of
   `openai/clip-vit-base-patch32` and `SmolLM2-135M` (`recipes.real_scale`): seconds per step and
   peak memory (each configuration in its own process, so each peak is its own), on the CPU and,
   where there is one, on CUDA;
3. results of training runs (`--runs RUN ...`): the last evaluation of each, with trained
   parameters and CPU minutes; `--record FILE` keeps them (lesson 09 shows
   `mmcourse/recipes/results/two_stage.json`, written so).

Run: `.venv/bin/python benchmarks/two_stage.py [--real] [--runs runs/shapes-vlm-aligned ...]`.
"""

from __future__ import annotations

import argparse
import json
import multiprocessing
import statistics
import tempfile
import time
from dataclasses import replace
from pathlib import Path

import torch

from mmcourse import frozen_lm
from mmcourse.recipes import real_scale, shapes_vlm, two_stage
from mmcourse.recipes.loop import TrainConfig
from mmcourse.vlm import answer_loss


def _time_steps(model, batch_of, steps: int, warmup: int = 2) -> tuple[float, float]:
    """Median wall and CPU seconds per optimizer step (the recipe's loss, AdamW)."""
    params = [p for p in model.parameters() if p.requires_grad]
    optimizer = torch.optim.AdamW(params, lr=1e-4)
    model.train()
    walls, cpus = [], []
    for step in range(warmup + steps):
        wall, cpu = time.perf_counter(), time.process_time()
        images, questions, answers = batch_of(step)
        batch = model.training_batch(questions, answers)
        labels = model.full_labels(batch.pop("labels"))
        loss = answer_loss(model(model.pixel_values(images), **batch).logits, labels)
        optimizer.zero_grad(set_to_none=True)
        loss.backward()
        optimizer.step()
        if model.device.type == "cuda":
            torch.cuda.synchronize()
        if step >= warmup:
            walls.append(time.perf_counter() - wall)
            cpus.append(time.process_time() - cpu)
    return statistics.median(walls), statistics.median(cpus)


def course_scale_table(steps: int = 10) -> None:
    torch.set_num_threads(2)
    batch = 64
    print(f"1. the course's scale (batch {batch}, 2 threads; median of {steps} steps)")
    print(f"{'recipe':34} {'trained':>10} {'of all':>8} {'samples/s':>10} {'CPU ms/sample':>14}")
    scratch = shapes_vlm.recipe("patches")
    rows = [
        (
            "from scratch (shapes-vlm-patches)",
            shapes_vlm.build_vlm(scratch),
            lambda s: shapes_vlm.vlm_batch(s, scratch, batch),
        )
    ]
    for name, recipe in (
        ("stage 1: projector, captions", two_stage.default(1)),
        ("stage 2: LoRA", two_stage.default(2, "lora")),
        ("stage 2: full fine-tuning", two_stage.default(2, "full")),
        ("stage 2: projector only", two_stage.default(2, "projector")),
    ):
        recipe = replace(recipe, train=replace(recipe.train, batch_size=batch))
        rows.append(
            (
                name,
                two_stage.build(recipe),
                lambda s, r=recipe: two_stage.stage_batch(s, r, range(batch)),
            )
        )
    for name, model, batch_of in rows:
        trained, total = frozen_lm.count_parameters(model)["all"]
        wall, cpu = _time_steps(model, batch_of, steps)
        print(
            f"{name:34} {trained:10,} {trained / total:8.1%} {batch / wall:10.0f} "
            f"{cpu / batch * 1000:14.1f}"
        )


def _real_scale_row(args) -> dict:
    tune, folders, batch, device = args
    import os

    os.environ["MMCOURSE_DEVICE"] = device
    torch.set_num_threads(2)
    stage = 1 if tune == "stage 1" else 2
    recipe = two_stage.StageRecipe(
        stage=stage,
        tune="projector" if stage == 1 else tune,
        vision=folders[0],
        language=folders[1],
        merge=1,
        caption_share=1.0 if stage == 1 else 0.25,
        train=TrainConfig(batch_size=batch, lr=1e-4),
    )
    return real_scale.step_cost(recipe, steps=3)


def real_scale_table(batch: int = 8) -> None:
    devices = ["cpu"] + (["cuda"] if torch.cuda.is_available() else [])
    print(
        f"\n2. real-weights scale: ViT-B/32 (87.5 M) + SmolLM2-135M (134.5 M), 49 image tokens, "
        f"batch {batch}; median of 3 steps"
    )
    print(f"{'device':6} {'stage':18} {'trained':>12} {'s/step':>8} {'peak MiB':>9}")
    with tempfile.TemporaryDirectory() as tmp:
        folders = (
            str(real_scale.random_clip_folder(Path(tmp) / "clip")),
            str(real_scale.random_llama_folder(Path(tmp) / "lm")),
        )
        context = multiprocessing.get_context("spawn")
        for device in devices:
            for tune in ("stage 1", "lora", "full"):
                with context.Pool(1) as pool:
                    row = pool.apply(_real_scale_row, ((tune, folders, batch, device),))
                print(
                    f"{device:6} {tune:18} {row['trained']:12,} {row['seconds_per_step']:8.2f} "
                    f"{row['peak_mib']:9.0f}"
                )
    if not torch.cuda.is_available():
        print("(no CUDA device here: the GPU rows were not run)")


def run_results(run: Path) -> dict:
    """A run's last validation evaluation, trained parameters and time."""
    last = run / "last"
    history = json.loads((last / "history.json").read_text())
    evaluated = [row for row in history if "vqa all" in row][-1]
    counts = json.loads((last / two_stage.PARAMETERS_FILE).read_text())
    recipe = json.loads((run / "recipe.json").read_text())
    return {
        "stage": recipe["stage"],
        "tune": recipe["tune"],
        "projector": recipe["projector"],
        "merge": recipe["merge"],
        "steps": history[-1]["step"],
        "trained": counts["all"][0],
        "total": counts["all"][1],
        "cpu_minutes": round(history[-1]["cpu_seconds"] / 60, 2),
        "wall_minutes": round(history[-1]["wall_seconds"] / 60, 2),
        "metrics": {
            k: round(v, 4) for k, v in evaluated.items() if k.startswith(("vqa", "caption"))
        },
    }


def runs_table(runs: list[Path], record: Path | None) -> None:
    print("\n3. training runs: the last validation evaluation (200 questions, 100 captions)")
    kinds = ("color", "shape", "position", "count", "exists", "all")
    print(
        f"{'run':28} {'trained':>10} {'CPU min':>8} "
        + " ".join(f"{k:>8}" for k in kinds)
        + f" {'captions':>9}"
    )
    results = {run.name: run_results(run) for run in runs}
    for name, row in results.items():
        m = row["metrics"]
        print(
            f"{name:28} {row['trained']:10,} {row['cpu_minutes']:8.1f} "
            + " ".join(f"{m[f'vqa {k}']:8.1%}" for k in kinds)
            + f" {m['caption all']:9.1%}"
        )
    if record:
        record.write_text(json.dumps(results, indent=1) + "\n")
        print(f"recorded: {record}")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--real", action="store_true", help="also the real-weights scale table")
    parser.add_argument("--runs", nargs="*", type=Path, default=[], help="two-stage run folders")
    parser.add_argument("--steps", type=int, default=10)
    parser.add_argument(
        "--record", type=Path, help="write the runs' results here (what lesson 09 shows)"
    )
    parser.add_argument("--skip-speed", action="store_true", help="no speed table")
    args = parser.parse_args()
    if not args.skip_speed:
        course_scale_table(args.steps)
    if args.real:
        real_scale_table()
    if args.runs:
        runs_table(args.runs, args.record)


if __name__ == "__main__":
    main()
