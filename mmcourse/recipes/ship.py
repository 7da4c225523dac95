"""Shipping a finished run: the one procedure that puts a trained model into the package.

`ship(name, run_dir)` copies the run's last checkpoint into `mmcourse/weights/NAME/` (without what
only resuming needs), lets the recipe finish the folder (a VLM records the hash of its CLIP),
measures the model on fresh held-out test scenes, writes its model card from the recipe's template
(`recipes/cards/*.md`), its metrics, its validation curve and the manifest that `checkpoints.path`
verifies. Maintainers only: a shipped checkpoint is committed once it is final (every retrained copy
stays in git history).
"""

from __future__ import annotations

import json
import shutil
from pathlib import Path

import torch

from .. import checkpoints
from .loop import TRAINING_ONLY_FILES
from .registry import get

__all__ = ["CARDS_DIR", "render_card", "ship"]

CARDS_DIR = Path(__file__).resolve().parent / "cards"


def render_card(template: str, **fields) -> str:
    """A model card from its template file in `recipes/cards/`; `{field}`s are filled in, nothing
    else."""
    return (CARDS_DIR / template).read_text().format(**fields)


def ship(name: str, run_dir: str | Path, eval_size: int = 1000, start: int = 0) -> Path:
    """Copy the finished run `run_dir` of the registry's recipe `name` into the package; return the
    folder."""
    entry = get(name)
    if not entry.shipped:
        raise ValueError(f"{name} is trained to be compared, not shipped: its runs stay in runs/.")
    module = entry.recipe_module
    run_dir = Path(run_dir)
    last = run_dir / "last"
    recipe = json.loads((run_dir / "recipe.json").read_text())
    state = torch.load(last / "trainer_state.pt", weights_only=True)
    if state["step"] != recipe["train"]["steps"]:
        raise ValueError(
            f"{run_dir} stopped at step {state['step']} of {recipe['train']['steps']}; finish it "
            "first."
        )
    target = checkpoints.WEIGHTS_DIR / entry.name
    if target.exists():
        shutil.rmtree(target)
    shutil.copytree(last, target, ignore=shutil.ignore_patterns(*TRAINING_ONLY_FILES))
    if hasattr(module, "finish_folder"):
        module.finish_folder(target, recipe)

    model = module.load(target)
    measured = module.measure(model, eval_size, start)
    history = json.loads((last / "history.json").read_text())
    card = render_card(
        module.CARD,
        name=entry.name,
        recipe=json.dumps(recipe, indent=1),
        commit=recipe.get("commit", "unknown"),
        steps=state["step"],
        threads=recipe["train"]["threads"],
        minutes=state["clock"]["wall"] / 60,
        cpu_minutes=state["clock"]["cpu"] / 60,
        eval_size=eval_size,
        **module.card_fields(target, model, recipe, measured),
    )
    (target / "README.md").write_text(card)
    curve = [
        {k: round(v, 4) for k, v in row.items()} for row in history if module.CURVE_METRIC in row
    ]
    (target / "training_curve.json").write_text(json.dumps(curve, indent=1) + "\n")
    (target / "metrics.json").write_text(json.dumps(measured, indent=1) + "\n")
    checkpoints.write_manifest(target)
    return target
