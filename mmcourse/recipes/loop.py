"""The training loop every recipe uses: small, step-based, seeded and resumable (nanoGPT's
`train.py` role).

Lesson 03 trains with it; every shipped model's recipe (`mmcourse.recipes.*`) runs `train_loop`.
What it does, and why:

- **step-based**: the schedule is warm-up then cosine decay over a fixed number of optimizer steps,
  and the data of step s is a pure function of s (the shapes world draws scene `s * batch + i`), so
- **resumable**: every `save_every` steps it writes the model (Hugging Face format) and the
  optimizer state to `RUN/last/`; started again with the same `RUN`, it continues from there and
  ends with the same weights;
- **data parallel** under `torchrun` (PyTorch DDP: gloo on CPUs, NCCL on GPUs): each process
  computes its `shard` of every step's batch, DDP averages the gradients, so the steps are those of
  one process with the whole batch; only rank 0 evaluates, saves and prints;
- **seeded**, AdamW, gradient clipping, a tqdm progress bar, and an `evaluate(model, step)` callback
  every `eval_every` steps whose metrics go into `RUN/history.json` with the wall and CPU seconds
  spent so far.
"""

from __future__ import annotations

import json
import math
import os
import shutil
import subprocess
import time
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

import torch
from tqdm.auto import tqdm

from ..checkpoints import quiet_transformers
from ..utils import seed_everything

__all__ = [
    "TRAINING_ONLY_FILES",
    "TrainConfig",
    "TrainResult",
    "distributed",
    "git_commit",
    "lr_factor",
    "record_recipe",
    "shard",
    "train_loop",
]

#: What a run folder's checkpoint holds for resuming only; never shipped.
TRAINING_ONLY_FILES = ("trainer_state.pt", "history.json", "training_state.safetensors")


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


def distributed() -> tuple[int, int]:
    """(rank, world size): (0, 1) in one process; under `torchrun`, the process group's (started
    here on first use: NCCL when the process has a GPU, gloo otherwise)."""
    import torch.distributed as dist

    if int(os.environ.get("WORLD_SIZE", "1")) < 2:
        return 0, 1
    if not dist.is_initialized():
        dist.init_process_group("nccl" if torch.cuda.is_available() else "gloo")
    return dist.get_rank(), dist.get_world_size()


def shard(batch_size: int) -> range:
    """The positions of a step's batch that this process computes: all of them in one process, every
    world-th from its rank under `torchrun` (equal shards, so averaged gradients are exact)."""
    rank, world = distributed()
    if batch_size % world:
        raise ValueError(
            f"batch_size={batch_size} does not split into {world} equal shards; pick a batch size "
            f"that {world} processes divide."
        )
    return range(rank, batch_size, world)


class _DataParallel(torch.nn.parallel.DistributedDataParallel):
    """DDP that still answers the wrapped model's own attributes (`model.training_batch`, ...), so a
    recipe's `step_loss` is the same code in one process or many."""

    def __getattr__(self, name: str):
        try:
            return super().__getattr__(name)
        except AttributeError:
            return getattr(self.module, name)


def lr_factor(step: int, config: TrainConfig) -> float:
    """Linear warm-up to 1, then cosine decay to `min_lr_ratio` at the last step."""
    if step < config.warmup_steps:
        return (step + 1) / config.warmup_steps
    progress = (step - config.warmup_steps) / max(1, config.steps - config.warmup_steps)
    return config.min_lr_ratio + (1 - config.min_lr_ratio) * 0.5 * (
        1 + math.cos(math.pi * min(progress, 1.0))
    )


@dataclass
class TrainResult:
    steps: int
    history: list[dict]
    wall_seconds: float
    cpu_seconds: float


def _save(
    model, folder: Path, optimizer, step: int, history: list, clock: dict, save_extra
) -> None:
    tmp = folder.with_name(folder.name + ".tmp")
    tmp.mkdir(parents=True, exist_ok=True)
    from safetensors.torch import save_model

    with quiet_transformers():
        model.save_pretrained(tmp)  # the Hugging Face folder(s) a user loads
    # every tensor, exactly, for resuming
    save_model(model, str(tmp / "training_state.safetensors"))
    if save_extra:
        save_extra(tmp)
    torch.save(
        {"optimizer": optimizer.state_dict(), "step": step, "clock": clock},
        tmp / "trainer_state.pt",
    )
    (tmp / "history.json").write_text(json.dumps(history, indent=1))
    # replace the previous checkpoint only once the new one is complete; `_recover` mends an
    # interruption
    old = folder.with_name(folder.name + ".old")
    shutil.rmtree(old, ignore_errors=True)
    if folder.exists():
        folder.rename(old)
    tmp.rename(folder)
    shutil.rmtree(old, ignore_errors=True)


def _recover(folder: Path) -> None:
    """After a crash between the two renames of `_save`, the previous complete checkpoint is
    `last.old`."""
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
    """Train `model` for `config.steps` steps of `step_loss(model, step) -> (loss, logs)`; resume
    from `run_dir`.

    `stop_at` pauses after that step (saving first): run again to continue where it stopped.
    """
    threads = torch.get_num_threads()
    torch.set_num_threads(config.threads)
    try:
        return _train(
            model, step_loss, config, Path(run_dir), evaluate, save_extra, progress, stop_at
        )
    finally:
        torch.set_num_threads(threads)  # the caller's setting, e.g. the rest of a notebook


def _train(
    model, step_loss, config, run_dir, evaluate, save_extra, progress, stop_at
) -> TrainResult:
    seed_everything(config.seed)
    rank, world = distributed()
    main = rank == 0
    last = run_dir / "last"
    params = [p for p in model.parameters() if p.requires_grad]
    decay = [p for p in params if p.ndim >= 2]
    no_decay = [p for p in params if p.ndim < 2]  # biases, norms, the logit scale
    optimizer = torch.optim.AdamW(
        [
            {"params": decay, "weight_decay": config.weight_decay},
            {"params": no_decay, "weight_decay": 0.0},
        ],
        lr=config.lr,
    )
    start, history, clock = 0, [], {"wall": 0.0, "cpu": 0.0}
    _recover(last)
    if (last / "trainer_state.pt").exists():
        from safetensors.torch import load_model

        load_model(
            model,
            str(last / "training_state.safetensors"),
            device=str(next(model.parameters()).device),
        )
        state = torch.load(last / "trainer_state.pt", weights_only=True)
        optimizer.load_state_dict(state["optimizer"])
        start, clock = state["step"], state["clock"]
        history = json.loads((last / "history.json").read_text())
    model.train()
    trained = model if world == 1 else _DataParallel(model)
    wall0, cpu0 = time.perf_counter() - clock["wall"], time.process_time() - clock["cpu"]
    end = config.steps if stop_at is None else min(stop_at, config.steps)
    bar = tqdm(
        range(start, end),
        initial=start,
        total=config.steps,
        disable=not (progress and main),
        desc="training",
    )
    for step in bar:
        for group in optimizer.param_groups:
            group["lr"] = config.lr * lr_factor(step, config)
        loss, logs = step_loss(trained, step)
        optimizer.zero_grad(set_to_none=True)
        loss.backward()
        torch.nn.utils.clip_grad_norm_(params, config.grad_clip)
        optimizer.step()
        loss_value = _mean_over_processes(loss.detach(), world)
        bar.set_postfix(loss=f"{loss_value:.3f}")
        done = step + 1
        record = {"step": done, "loss": loss_value, "lr": optimizer.param_groups[0]["lr"], **logs}
        if not main:
            continue
        if evaluate and (done % config.eval_every == 0 or done == config.steps):
            model.eval()
            with torch.no_grad():
                record.update(evaluate(model, done))
            model.train()
            tqdm.write(
                f"step {done}: "
                + ", ".join(f"{k} {v:.3f}" for k, v in record.items() if k != "step")
            )
        clock = {"wall": time.perf_counter() - wall0, "cpu": time.process_time() - cpu0}
        record.update(wall_seconds=clock["wall"], cpu_seconds=clock["cpu"])
        history.append(record)
        if done % config.save_every == 0 or done in (config.steps, end):
            _save(model, last, optimizer, done, history, clock, save_extra)
    if world > 1:
        torch.distributed.barrier()  # every process returns once rank 0 has saved
    model.eval()
    return TrainResult(max(start, end), history, clock["wall"], clock["cpu"])


def _mean_over_processes(loss: torch.Tensor, world: int) -> float:
    """The step's loss over the whole batch: the mean of the processes' equal shards."""
    if world > 1:
        torch.distributed.all_reduce(loss)
        loss = loss / world
    return loss.item()


def record_recipe(run_dir: str | Path, described: dict) -> None:
    """Write RUN/recipe.json (with the code's commit) or, when resuming, refuse a run folder of
    another recipe."""
    run_dir = Path(run_dir)
    run_dir.mkdir(parents=True, exist_ok=True)
    if distributed()[0] != 0:
        return  # rank 0 writes it
    recipe_file = run_dir / "recipe.json"
    if recipe_file.exists():
        previous = {k: v for k, v in json.loads(recipe_file.read_text()).items() if k != "commit"}
        # compared as JSON: tuples read back as lists
        if previous != json.loads(json.dumps(described)):
            raise ValueError(
                f"{run_dir} holds a run of another recipe; pick a new run folder or delete it."
            )
    else:
        recipe_file.write_text(json.dumps({**described, "commit": git_commit()}, indent=1) + "\n")


def git_commit() -> str:
    """The short hash of HEAD, with "-dirty" when tracked files differ from it (the run then used
    other code)."""
    here = Path(__file__).resolve().parent.parent
    try:
        head = subprocess.run(
            ["git", "rev-parse", "--short", "HEAD"],
            capture_output=True,
            text=True,
            cwd=here,
            timeout=10,
        )
        changed = subprocess.run(
            ["git", "status", "--porcelain", "--untracked-files=no", "--", "."],
            capture_output=True,
            text=True,
            cwd=here,
            timeout=10,
        )
    except (OSError, subprocess.SubprocessError):
        return "unknown"
    commit = head.stdout.strip()
    if not commit:
        return "unknown"
    return commit + ("-dirty" if changed.stdout.strip() else "")
