"""Benchmarks of chapters 01-03: the vision encoder, the contrastive loss, and training the tiny
CLIP.

Prints three tables (medians of repeated runs; these machines are noisy, so read the ratios):
1. `VisionEncoder` on a batch vs one image at a time (the tutorial's pattern): images/s and the
  ratio;
2. our `ContrastiveLoss` vs Hugging Face CLIP's own loss on the same embeddings: value difference,
  time ratio;
3. training: images/s of the shapes-clip recipe, and each quality target against steps and
  CPU-seconds from the
   shipped checkpoint's training curve, plotted to a PNG.

Run: `.venv/bin/python benchmarks/clip.py [--out runs/benchmarks]`.
"""

from __future__ import annotations

import argparse
import json
import statistics
import tempfile
from pathlib import Path

import torch
from timing import median_time

from mmcourse import checkpoints, contrastive, data
from mmcourse.recipes import shapes_clip
from mmcourse.vision import VisionEncoder

TARGETS = {"zero-shot color_shape": 0.95, "zero-shot position": 0.90, "R@1": 0.70, "R@5": 0.90}


def encoder_table(n: int = 256) -> None:
    encoder = VisionEncoder("shapes-clip")
    images = [data.random_scene(i).render() for i in range(n)]
    encoder.extract_features(images[:8])  # warm-up
    batched = median_time(lambda: encoder.extract_features(images), 3)
    single = median_time(lambda: [encoder.extract_features(im) for im in images], 3)
    print(f"\n1. VisionEncoder('shapes-clip') on {n} scenes, device {encoder.device} (median of 3)")
    print(f"{'pattern':36} {'images/s':>10}")
    print(f"{'one image at a time (tutorial)':36} {n / single:10.0f}")
    print(f"{'batched (batch_size=64)':36} {n / batched:10.0f}")
    print(f"{'ratio batched / one at a time':36} {single / batched:9.1f}x")


def loss_table() -> None:
    from transformers.models.clip import modeling_clip

    # the function CLIPModel(return_loss=True) calls (named clip_loss before transformers 5)
    clip_loss = (
        getattr(modeling_clip, "image_text_contrastive_loss", None) or modeling_clip.clip_loss
    )

    print(
        "\n2. ContrastiveLoss vs Hugging Face clip_loss (same embeddings, temperature 0.07, median "
        "of 20)"
    )
    print(f"{'batch':>6} {'|ours - HF|':>12} {'ours ms':>9} {'HF ms':>9} {'ours / HF':>10}")
    loss = contrastive.ContrastiveLoss(0.07)
    for batch in (64, 256, 1024):
        torch.manual_seed(batch)
        image, text = torch.randn(batch, 128), torch.randn(batch, 128)

        def hf():
            img, txt = (
                image / image.norm(dim=-1, keepdim=True),
                text / text.norm(dim=-1, keepdim=True),
            )
            return clip_loss(txt @ img.T / 0.07)  # logits_per_text, as CLIPModel computes it

        ours_ms = median_time(lambda: loss(image, text), 20) * 1e3
        hf_ms = median_time(hf, 20) * 1e3
        diff = abs(loss(image, text).item() - hf().item())
        print(f"{batch:6d} {diff:12.2e} {ours_ms:9.3f} {hf_ms:9.3f} {ours_ms / hf_ms:9.2f}x")


def training_table(out: Path, steps: int = 20) -> None:
    recipe = shapes_clip.ClipRecipe()
    with tempfile.TemporaryDirectory() as folder:
        result = shapes_clip.train_clip(folder, recipe, progress=False, stop_at=steps)[1]
    rows = result.history
    per_step = statistics.median(
        b["wall_seconds"] - a["wall_seconds"] for a, b in zip(rows, rows[1:])
    )
    print(
        f"\n3. Training the shapes-clip recipe (batch {recipe.train.batch_size}, "
        f"{recipe.train.threads} threads)"
    )
    print(
        f"{'images/s (median over steps 2-' + str(steps) + ')':36} "
        f"{recipe.train.batch_size / per_step:10.0f}"
    )
    curve = json.loads((checkpoints.path("shapes-clip") / "training_curve.json").read_text())
    print("\n   shipped run, validation curve: first step at which each target is met")
    print(f"   {'metric':26} {'target':>7} {'step':>6} {'CPU s':>7} {'final':>7}")
    for metric, target in TARGETS.items():
        hit = next((r for r in curve if r[metric] >= target), None)
        step = f"{hit['step']}" if hit else "never"
        cpu = f"{hit['cpu_seconds']:.0f}" if hit else "-"
        print(f"   {metric:26} {target:7.2f} {step:>6} {cpu:>7} {curve[-1][metric]:7.3f}")
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, axes = plt.subplots(1, 2, figsize=(11, 3.8))
    for ax, x in zip(axes, ("step", "cpu_seconds")):
        for metric, target in TARGETS.items():
            line = ax.plot(
                [r[x] for r in curve], [r[metric] for r in curve], marker="o", label=metric
            )[0]
            ax.axhline(target, color=line.get_color(), ls=":", lw=1)
        ax.set_xlabel("optimizer steps" if x == "step" else "CPU-seconds (2 threads)")
        ax.set_ylim(0, 1.02)
        ax.grid(alpha=0.3)
    axes[0].set_ylabel("validation metric (dotted: target)")
    axes[1].legend(fontsize=8, loc="lower right")
    fig.suptitle("shapes-clip: quality against training", fontsize=10)
    fig.tight_layout()
    out.mkdir(parents=True, exist_ok=True)
    fig.savefig(out / "clip_training_curve.png", dpi=120)
    print(f"\n   plot: {out / 'clip_training_curve.png'}")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--out", type=Path, default=Path("runs/benchmarks"))
    args = parser.parse_args()
    torch.set_num_threads(2)
    encoder_table()
    loss_table()
    training_table(args.out)


if __name__ == "__main__":
    main()
