"""Benchmarks of chapters 04-07: generation speed and VLM training speed.

1. generation: new tokens/s with and without the KV cache (greedy; without = a decoding loop that
  re-reads the
   whole sequence, since `generate` ignores use_cache=False with inputs_embeds), beam 5, batch 1 vs
   32 (median of 3);
2. training: samples/s of the VLM recipe for each image-token mode: "patches" as shipped (3x3 blocks
  merged: 9
   image tokens), "patches" unmerged (81, LLaVA's way) and "cls" (1).
Accuracy against steps and CPU-seconds comes from runs' `history.json` (`--history
RUN/last/history.json ...`, one or more), plotted to a PNG. The model is the recipe's (random
weights unless `--model FOLDER` is given); speed does not depend on the weights, except through when
[EOS] stops generation, so EOS is ignored here.

Run: `.venv/bin/python benchmarks/vlm.py [--model FOLDER] [--history FILE] [--out runs/benchmarks]`.
"""

from __future__ import annotations

import argparse
import json
import statistics
import tempfile
from dataclasses import replace
from pathlib import Path

import torch
from timing import median_time

from mmcourse import data, vlm
from mmcourse.recipes import shapes_vlm


def greedy_without_cache(model: vlm.MultimodalModel, inputs: dict, new_tokens: int) -> torch.Tensor:
    """Greedy decoding that runs the whole sequence through the model at every step: no KV cache.

    `generate(..., use_cache=False)` is not honoured in transformers 5.24 when it is given
    `inputs_embeds`: it still feeds one token per step from a cache (measured: forward inputs of
    length 16, 1, 1, 1).
    This loop is the honest "without" side.
    """
    embeds, mask = inputs["inputs_embeds"], inputs["attention_mask"]
    tokens = []
    for _ in range(new_tokens):
        # left padding: count real tokens only, as generate does
        positions = (mask.cumsum(-1) - 1).clamp(min=0)
        logits = model.language_model(
            inputs_embeds=embeds, attention_mask=mask, position_ids=positions
        ).logits
        last = logits[:, -1].clone()  # (B, V)
        # as generate's min_new_tokens: always new_tokens tokens
        last[:, model.tokenizer.eos_token_id] = float("-inf")
        next_ids = last.argmax(dim=-1)  # (B,)
        tokens.append(next_ids)
        embeds = torch.cat([embeds, model.embed_text(next_ids[:, None])], dim=1)  # (B, L + 1, D)
        mask = torch.cat([mask, mask.new_ones(len(mask), 1)], dim=1)
    return torch.stack(tokens, dim=1)  # (B, new_tokens)


def generation_table(model: vlm.MultimodalModel, new_tokens: int = 24) -> None:
    print(
        f"\n1. generation: {new_tokens} new tokens after {model.num_image_tokens} image tokens + a "
        "prompt (median of 3)"
    )
    print(f"{'batch':>6} {'decoding':>9} {'KV cache':>9} {'new tokens/s':>13}")
    for batch in (1, 32):
        images = [data.random_scene(i).render() for i in range(batch)]
        inputs = model.generation_inputs(
            model.pixel_values(images), ["Where is the red circle?"] * batch
        )
        with torch.no_grad():
            cached = model.language_model.generate(
                **inputs,
                max_new_tokens=new_tokens,
                min_new_tokens=new_tokens,
                do_sample=False,
                pad_token_id=model.tokenizer.pad_token_id,
            )
            assert torch.equal(cached, greedy_without_cache(model, inputs, new_tokens)), (
                "the two greedy decoders differ"
            )
        runs = {
            ("greedy", "yes"): lambda beams=1: model.language_model.generate(
                **inputs,
                max_new_tokens=new_tokens,
                min_new_tokens=new_tokens,
                num_beams=beams,
                do_sample=False,
                pad_token_id=model.tokenizer.pad_token_id,
            ),
            ("greedy", "no"): lambda: greedy_without_cache(model, inputs, new_tokens),
            ("beam 5", "yes"): lambda: runs[("greedy", "yes")](beams=5),
        }
        for (decoding, cache), run in runs.items():
            with torch.no_grad():
                seconds = median_time(run, 3)
            print(f"{batch:6d} {decoding:>9} {cache:>9} {batch * new_tokens / seconds:13.0f}")
    print(
        "(beam search through generate always uses the cache in transformers 5.24; see "
        "greedy_without_cache)"
    )


def training_table(steps: int = 12) -> None:
    print(f"\n2. training the VLM recipe (batch 64, 2 threads; median over steps 2-{steps})")
    print(f"{'image tokens':28} {'samples/s':>10}")
    modes = (
        ("patches, 3x3 merged (9)", dict(image_tokens="patches")),
        ("patches, unmerged (81)", dict(image_tokens="patches", merge=1)),
        ("cls (1)", dict(image_tokens="cls", merge=1)),
    )
    for name, fields in modes:
        recipe = replace(shapes_vlm.VLMRecipe(), **fields)
        recipe = replace(recipe, train=replace(recipe.train, eval_every=10**9, save_every=10**9))
        with tempfile.TemporaryDirectory() as folder:
            history = shapes_vlm.train_vlm(folder, recipe, progress=False, stop_at=steps)[1].history
        per_step = statistics.median(
            b["wall_seconds"] - a["wall_seconds"] for a, b in zip(history, history[1:])
        )
        print(f"{name:28} {recipe.train.batch_size / per_step:10.0f}")


def curve_plot(history_files: list[Path], out: Path) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, axes = plt.subplots(1, 2, figsize=(12, 4.4))
    styles = ("-", "--", ":")
    for style, history_file in zip(styles, history_files):
        run = history_file.parent.parent.name
        curve = [r for r in json.loads(history_file.read_text()) if "vqa all" in r]
        metrics = [
            k
            for k in curve[0]
            if k
            in ("vqa color", "vqa shape", "vqa position", "vqa count", "vqa exists", "caption all")
        ]
        for ax, x in zip(axes, ("step", "cpu_seconds")):
            for i, metric in enumerate(metrics):
                ax.plot(
                    [r[x] for r in curve],
                    [r[metric] for r in curve],
                    ls=style,
                    marker="o",
                    ms=3,
                    color=f"C{i}",
                    label=f"{run}: {metric}",
                )
        print(f"\n3. validation curve of {run} ({history_file})")
        print(f"{'step':>6} {'CPU s':>7} " + " ".join(f"{m:>14}" for m in metrics))
        for r in curve:
            print(
                f"{r['step']:6d} {r['cpu_seconds']:7.0f} "
                + " ".join(f"{r[m]:14.3f}" for m in metrics)
            )
    for ax, x in zip(axes, ("step", "cpu_seconds")):
        ax.set_xlabel("optimizer steps" if x == "step" else "CPU-seconds (2 threads)")
        ax.set_ylim(0, 1.02)
        ax.grid(alpha=0.3)
    axes[0].set_ylabel("validation accuracy (200 questions, 100 captions)")
    axes[1].legend(fontsize=6, loc="lower right", ncol=len(history_files))
    fig.tight_layout()
    out.mkdir(parents=True, exist_ok=True)
    fig.savefig(out / "vlm_training_curve.png", dpi=120)
    print(f"\nplot: {out / 'vlm_training_curve.png'}")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument(
        "--model", help="a VLM folder (default: the recipe's model with random weights)"
    )
    parser.add_argument("--history", type=Path, nargs="+", help="runs' history.json files to plot")
    parser.add_argument("--out", type=Path, default=Path("runs/benchmarks"))
    args = parser.parse_args()
    torch.set_num_threads(2)
    model = (
        vlm.load(args.model) if args.model else shapes_vlm.build_vlm(shapes_vlm.VLMRecipe()).eval()
    )
    generation_table(model, 24)  # an answer or a caption
    generation_table(model, 120)  # longer outputs: the cache saves more as the sequence grows
    training_table()
    if args.history:
        curve_plot(args.history, args.out)


if __name__ == "__main__":
    main()
