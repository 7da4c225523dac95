"""Scene-generation throughput: is data ever the training bottleneck?

Prints examples per second (median of 5 runs) for drawing scenes, rendering them, the three datasets
and a collated, tokenized DataLoader batch, next to the training speed measured for the course's
tiny models (about 200 images/s for the tiny CLIP on 2 cores). Run: `.venv/bin/python
benchmarks/scene_generation.py`.
"""

from __future__ import annotations

from functools import partial

import torch
from timing import median_time

from mmcourse import data
from mmcourse.tokenizer import build_tokenizer

TRAINING_IMAGES_PER_SECOND = 200  # tiny CLIP, batch 128, 2 cores (see the environment notes)
N = 1000


def rate(fn, n: int = N, repeats: int = 5) -> float:
    offsets = iter(range(0, repeats * n, n))  # fresh scenes on every run
    return n / median_time(lambda: fn(n, next(offsets)), repeats)


def main() -> None:
    torch.set_num_threads(1)
    tok = build_tokenizer()

    def items(dataset_class):
        def fn(n, offset):
            dataset = dataset_class("train", n, start=offset)
            return [dataset[i] for i in range(n)]

        return fn

    rows = [
        (
            "random_scene (scene graph only)",
            N,
            lambda n, o: [data.random_scene(o + i) for i in range(n)],
        ),
        (
            "random_scene + render 72 px",
            N,
            lambda n, o: [data.random_scene(o + i).render() for i in range(n)],
        ),
        (
            "random_scene + render 224 px",
            N // 4,
            lambda n, o: [data.random_scene(o + i).render(224) for i in range(n)],
        ),
        ("AltTextDataset item", N, items(data.AltTextDataset)),
        ("CaptionDataset item", N, items(data.CaptionDataset)),
        ("QADataset item (balanced)", N, items(data.QADataset)),
        (
            "DataLoader batch 128 + collate + tokenize",
            N,
            lambda n, o: list(
                torch.utils.data.DataLoader(
                    data.AltTextDataset("train", n, start=o),
                    batch_size=128,
                    collate_fn=partial(data.collate, tokenizer=tok),
                )
            ),
        ),
    ]
    print(f"{'what':44} {'examples/s':>11} {'x training speed':>17}")
    for name, n, fn in rows:
        per_second = rate(fn, n)
        print(f"{name:44} {per_second:11.0f} {per_second / TRAINING_IMAGES_PER_SECOND:16.1f}x")
    print(
        f"\nmedian of 5 runs (of {N} examples; {N // 4} at 224 px), one thread; training consumes "
        f"about {TRAINING_IMAGES_PER_SECOND} images/s"
    )


if __name__ == "__main__":
    main()
