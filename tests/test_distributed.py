"""The recipes under `torchrun`: two CPU processes (gloo) follow the loss curve of one process with
the same global batch."""

import json
import subprocess
import sys
import textwrap

import pytest

pytestmark = pytest.mark.slow

SCRIPT = textwrap.dedent(
    """
    import json
    import sys
    from pathlib import Path
    from mmcourse.language_model import LanguageConfig
    from mmcourse.recipes import shapes_lm
    from mmcourse.recipes.loop import TrainConfig, distributed, shard

    recipe = shapes_lm.LMRecipe(
        language=LanguageConfig(hidden_size=32, layers=2, heads=2, intermediate_size=64),
        train=TrainConfig(
            steps=12, batch_size=16, lr=3e-3, warmup_steps=2, save_every=6, threads=1
        ),
    )
    shapes_lm.train_lm(sys.argv[1], recipe, eval_size=0, progress=False)
    rank, world = distributed()
    Path(sys.argv[1], f"shard{rank}.json").write_text(json.dumps(list(shard(16))))
    """
)


def _losses(run_dir):
    return [row["loss"] for row in json.loads((run_dir / "last" / "history.json").read_text())]


def test_two_processes_follow_the_curve_of_one(tmp_path):
    script = tmp_path / "train.py"
    script.write_text(SCRIPT)
    env_free = {"OMP_NUM_THREADS": "1"}  # two processes on two cores
    one = tmp_path / "one"
    subprocess.run(
        [sys.executable, str(script), str(one)], check=True, timeout=300, env=_env(env_free)
    )
    two = tmp_path / "two"
    launched = subprocess.run(
        [
            sys.executable,
            "-m",
            "torch.distributed.run",
            "--standalone",
            "--nproc_per_node",
            "2",
            str(script),
            str(two),
        ],
        capture_output=True,
        text=True,
        timeout=300,
        env=_env(env_free),
    )
    assert launched.returncode == 0, launched.stderr[-3000:]
    single, parallel = _losses(one), _losses(two)
    assert len(single) == len(parallel) == 12
    # the same steps: equal shards of a per-example mean, gradients averaged by DDP; only the
    # order of floating-point sums differs
    for a, b in zip(single, parallel):
        assert b == pytest.approx(a, rel=1e-4, abs=1e-5)
    assert single[-1] < single[0]  # it trained
    # each process computed its own half of every batch
    halves = [json.loads((two / f"shard{r}.json").read_text()) for r in (0, 1)]
    assert halves == [list(range(0, 16, 2)), list(range(1, 16, 2))]
    assert json.loads((one / "shard0.json").read_text()) == list(range(16))
    # only rank 0 wrote the run folder; resuming it in one process continues the same run
    assert json.loads((two / "recipe.json").read_text())["train"]["steps"] == 12


def _env(extra):
    import os

    return {**os.environ, **extra}
