"""The training loop: the loss falls well below chance, resuming gives the same weights, the
schedule."""

import math

import pytest
import torch
from safetensors.torch import load_file

from mmcourse import clip
from mmcourse.recipes import loop, shapes_clip


def nano_recipe(steps, batch_size=64):
    return shapes_clip.ClipRecipe(
        model=clip.PRESETS["nano"],
        train=loop.TrainConfig(
            steps=steps,
            batch_size=batch_size,
            lr=2e-3,
            warmup_steps=10,
            eval_every=10**9,
            save_every=10,
        ),
    )


@pytest.mark.slow
def test_smoke_training_falls_clearly_below_chance(tmp_path):
    recipe = nano_recipe(100)
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    try:
        model, result = shapes_clip.train_clip(tmp_path / "run", recipe, progress=False)
        assert torch.get_num_threads() == 1  # the caller's setting is restored
    finally:
        torch.set_num_threads(threads)
    losses = [r["loss"] for r in result.history]
    chance = math.log(recipe.train.batch_size)
    first, last = sum(losses[:5]) / 5, sum(losses[-10:]) / 10
    assert first > 0.8 * chance  # it starts at chance
    assert last < 0.6 * chance, f"loss {last:.2f} after 100 steps, chance is {chance:.2f}"
    folder = tmp_path / "run" / "last"
    for name in ("config.json", "model.safetensors", "tokenizer.json", "preprocessor_config.json"):
        assert (folder / name).is_file()


@pytest.mark.slow
def test_resuming_gives_the_same_weights(tmp_path):
    recipe = nano_recipe(20, batch_size=16)
    shapes_clip.train_clip(tmp_path / "straight", recipe, progress=False)
    paused = shapes_clip.train_clip(tmp_path / "paused", recipe, progress=False, stop_at=13)[1]
    assert paused.steps == 13 and len(paused.history) == 13
    resumed = shapes_clip.train_clip(tmp_path / "paused", recipe, progress=False)[1]
    assert [r["step"] for r in resumed.history] == list(range(1, 21))
    a = load_file(tmp_path / "straight" / "last" / "model.safetensors")
    b = load_file(tmp_path / "paused" / "last" / "model.safetensors")
    assert a.keys() == b.keys()
    for key in a:
        torch.testing.assert_close(a[key], b[key], rtol=1e-4, atol=1e-5)


def test_a_run_folder_of_another_recipe_is_refused(tmp_path):
    shapes_clip.train_clip(tmp_path / "run", nano_recipe(2, batch_size=8), progress=False)
    with pytest.raises(ValueError, match="another recipe"):
        shapes_clip.train_clip(tmp_path / "run", nano_recipe(3, batch_size=8), progress=False)


def test_warmup_then_cosine():
    config = loop.TrainConfig(steps=100, warmup_steps=10, min_lr_ratio=0.1)
    factors = [loop.lr_factor(s, config) for s in range(100)]
    assert factors[0] == pytest.approx(0.1) and factors[9] == pytest.approx(1.0)
    assert all(a >= b for a, b in zip(factors[9:], factors[10:]))
    assert factors[-1] == pytest.approx(0.1, abs=0.01)
