"""Small helpers every lesson uses: the device, seeds, and shape checks with errors a learner can
act on.

Lesson 00 introduces them. Shape legend for the whole course (used in `# (B, N, D)` comments):
B batch, C channels, H/W image or patch-grid height/width, P patch size, N patches, D hidden size, T
text tokens, V vocabulary, L layers, K heads.
"""

from __future__ import annotations

import os
import random
from collections.abc import Sequence

import numpy as np
import torch

__all__ = ["DEVICE_ENV", "check_shape", "get_device", "seed_everything"]

DEVICE_ENV = "MMCOURSE_DEVICE"


def get_device() -> torch.device:
    """The best available device: CUDA, then Apple's MPS, then the CPU.

    `MMCOURSE_DEVICE=cpu` (or `cuda`, `cuda:1`, `mps`) overrides the choice, e.g. to compare speeds.
    """
    wanted = os.environ.get(DEVICE_ENV, "").strip()
    if wanted:
        try:
            device = torch.device(wanted)
        except RuntimeError as error:
            raise ValueError(
                f"{DEVICE_ENV}={wanted!r} is not a device name; use 'cpu', 'cuda', 'cuda:N' or "
                "'mps'."
            ) from error
        available = {
            "cpu": True,
            "cuda": torch.cuda.is_available(),
            "mps": torch.backends.mps.is_available(),
        }.get(device.type, False)
        if not available:
            raise ValueError(
                f"{DEVICE_ENV}={wanted!r} asks for a device this machine does not have; "
                "unset it to let mmcourse choose, or set it to 'cpu'."
            )
        return device
    if torch.cuda.is_available():
        # under torchrun each process drives the GPU of its LOCAL_RANK
        return torch.device("cuda", int(os.environ.get("LOCAL_RANK", 0)))
    if torch.backends.mps.is_available():
        return torch.device("mps")
    return torch.device("cpu")


def seed_everything(seed: int) -> None:
    """Seed Python, NumPy and torch (all devices) so that a lesson gives the same numbers every
    run."""
    random.seed(seed)
    np.random.seed(seed % 2**32)
    torch.manual_seed(seed)


def check_shape(tensor, expected: Sequence[int | str | None], name: str = "tensor") -> None:
    """Raise a ValueError naming the wrong dimension unless `tensor.shape` matches `expected`.

    Each entry of `expected` is an int (that size exactly), None (any size), or a letter of the
    course's legend ("B", "N", "D", ...): every dimension named with the same letter must have the
    same size. `check_shape(x, ("B", 49, 768), "patch features")`.
    """
    shape = tuple(getattr(tensor, "shape", ()))
    legend = "(" + ", ".join("?" if e is None else str(e) for e in expected) + ")"
    if not hasattr(tensor, "shape"):
        raise ValueError(
            f"{name} should be a tensor of shape {legend}, got a {type(tensor).__name__}."
        )
    if len(shape) != len(expected):
        raise ValueError(
            f"{name} should have {len(expected)} dimensions {legend}, got {len(shape)}: shape "
            f"{shape}."
        )
    seen: dict[str, tuple[int, int]] = {}
    for dim, (size, want) in enumerate(zip(shape, expected)):
        if want is None:
            continue
        if isinstance(want, str):
            if want in seen and seen[want][1] != size:
                first, first_size = seen[want]
                raise ValueError(
                    f"{name}: dimension {dim} ({want}) is {size}, but dimension {first} is also "
                    f"{want} "
                    f"and is {first_size}; expected shape {legend}, got {shape}."
                )
            seen.setdefault(want, (dim, size))
        elif size != want:
            raise ValueError(
                f"{name}: dimension {dim} should be {want}, got {size}; expected shape {legend}, "
                f"got {shape}."
            )
