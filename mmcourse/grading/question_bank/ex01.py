"""Exercise 01 (the CLIP vision encoder): rescale + normalize by hand, and patchify."""

from __future__ import annotations

import random

import numpy as np
import torch

from ... import data, vision
from ..judging import Close, Hint, Question, as_tensors

__all__ = ["QUESTIONS"]


def _preprocess_reference(image: torch.Tensor) -> torch.Tensor:
    return vision.pixel_values(image[None])[0]  # (3, H, W)


def _preprocess_hidden(rng: random.Random, n: int) -> list[dict]:
    cases = []
    for i in range(n):
        if i % 2:
            image = np.asarray(data.random_scene(rng.randrange(2**31)).render(), dtype=np.uint8)
        else:  # noise: every pixel value and channel matters
            image = np.random.default_rng(rng.randrange(2**31)).integers(
                0, 256, (rng.choice([8, 16, 24]),) * 2 + (3,), dtype=np.uint8
            )
        cases.append({"image": image})
    return cases


def _as_images(case: dict) -> dict:
    # (H, W, 3) -> (3, H, W)
    return {"image": torch.from_numpy(case["image"].copy()).permute(2, 0, 1)}


def _no_rescale(case, expected, got) -> bool:
    image = _as_images(case)["image"].float()
    return np.allclose(got, vision.normalize_pixels(image[None])[0].numpy(), atol=1e-3)


def _order_swapped(case, expected, got) -> bool:
    image = _as_images(case)["image"].float() / 255.0
    mean = torch.tensor(vision.CLIP_MEAN).view(3, 1, 1)
    std = torch.tensor(vision.CLIP_STD).view(3, 1, 1)
    return any(
        np.allclose(got, alt.numpy(), atol=1e-4)
        for alt in (image / std - mean, (image - std) / mean)
    )


def _imagenet_stats(case, expected, got) -> bool:
    image = _as_images(case)["image"].float()[None] / 255.0
    alt = vision.normalize_pixels(image, (0.485, 0.456, 0.406), (0.229, 0.224, 0.225))[0]
    return np.allclose(got, alt.numpy(), atol=1e-4)


def _channels_last(case, expected, got) -> bool:
    return got.shape == expected.transpose(1, 2, 0).shape and np.allclose(
        got, expected.transpose(1, 2, 0), atol=1e-5
    )


PREPROCESS = Question(
    qid="ex01_preprocess",
    points=2,
    name="my_preprocess",
    prompt="my_preprocess(image) -> (3, H, W) float: uint8 (3, H, W) pixels rescaled to [0, 1], "
    "then normalized "
    "with CLIP's mean and std per channel.",
    oracle=_preprocess_reference,
    visible=tuple(
        {"image": np.asarray(data.random_scene(s).render(), dtype=np.uint8)} for s in (0, 1, 2)
    ),
    hidden=_preprocess_hidden,
    prepare=_as_images,
    compare=Close(rtol=0.0, atol=1e-6),
    describe=lambda case: (
        f"a uint8 image of shape {tuple(case['image'].shape[:2])} (as a (3, H, W) tensor)"
    ),
    hints=(
        Hint("Keep the layout (3, H, W): channels first, as the model expects.", _channels_last),
        Hint("Rescale first: divide the uint8 pixels by 255 so they lie in [0, 1].", _no_rescale),
        Hint("Normalize as (x - mean) / std, channel by channel.", _order_swapped),
        Hint(
            "Those are ImageNet's mean and std; CLIP has its own: vision.CLIP_MEAN and "
            "vision.CLIP_STD.",
            _imagenet_stats,
        ),
    ),
)


def _patchify_hidden(rng: random.Random, n: int) -> list[dict]:
    cases = []
    for _ in range(n):
        patch = rng.choice([2, 4, 8])
        side = patch * rng.randint(1, 5)
        shape = (rng.randint(1, 3), 3, side, side)
        cases.append(
            {
                "pixel_values": np.random.default_rng(rng.randrange(2**31))
                .standard_normal(shape)
                .astype(np.float32),
                "patch_size": patch,
            }
        )
    return cases


def _column_order(case, expected, got) -> bool:
    b, n, d = expected.shape
    side = int(round(n**0.5))
    return got.shape == expected.shape and np.allclose(
        got, expected.reshape(b, side, side, d).transpose(0, 2, 1, 3).reshape(b, n, d)
    )


def _channels_inside(case, expected, got) -> bool:
    p = case["patch_size"]
    b, n, d = expected.shape
    # (P, P, C) flattening
    alt = expected.reshape(b, n, 3, p, p).transpose(0, 1, 3, 4, 2).reshape(b, n, d)
    return got.shape == expected.shape and np.allclose(got, alt)


def _plain_reshape(case, expected, got) -> bool:
    values = case["pixel_values"]
    return got.shape == expected.shape and np.allclose(got, values.reshape(expected.shape))


def _patchify_case(seed: int, batch: int, side: int, patch: int) -> dict:
    values = np.random.default_rng(seed).standard_normal((batch, 3, side, side)).astype(np.float32)
    return {"pixel_values": values, "patch_size": patch}


PATCHIFY = Question(
    qid="ex01_patchify",
    points=2,
    name="my_patchify",
    prompt="my_patchify(pixel_values, patch_size) -> (B, N, 3 * P * P): patches row by row, each "
    "flattened as "
    "(C, P, P) like the weight of the patch embedding's Conv2d.",
    oracle=vision.patchify,
    visible=(_patchify_case(0, 1, 8, 4), _patchify_case(1, 2, 72, 8), _patchify_case(2, 1, 12, 4)),
    hidden=_patchify_hidden,
    prepare=as_tensors,
    compare=Close(rtol=0.0, atol=1e-6),
    describe=lambda case: (
        f"pixel_values of shape {tuple(case['pixel_values'].shape)}, "
        f"patch_size={case['patch_size']}"
    ),
    hints=(
        Hint(
            "That is a plain reshape of the image: the shape is right, but each 'patch' is a run "
            "of pixels from one row of one channel. Split H and W into (patches, P) each, move the "
            "two patch-grid axes in front of (C, P, P), then flatten.",
            _plain_reshape,
        ),
        Hint(
            "The patches come out column by column: go along each row of patches first "
            "(row-major), "
            "like reading text.",
            _column_order,
        ),
        Hint(
            "Flatten each patch channel first, (C, P, P), not (P, P, C): that is how Conv2d's "
            "weight is laid out.",
            _channels_inside,
        ),
    ),
)

QUESTIONS = (PREPROCESS, PATCHIFY)
