"""The shapes world: procedural scenes, their texts and questions, splits, baselines and datasets.

Lesson 00 teaches it. Everything in the course trains and evaluates on it offline and
deterministically:
a scene is 1-3 objects, each a **color**, a **shape** and a **position** on a 3x3 grid, drawn from a
seed.
The package reads top-down in five short modules:

- `world`: the vocabulary, `SceneObject`, `Scene`, `random_scene(seed)`, and the splits (`train`,
  `val` and `test` draw seeds from disjoint ranges, `SPLITS`);
- `drawing`: a scene's pixels (72 px; each of the 3x3 cells is exactly 3x3 patches of 8 px:
  `cell_patches`);
- `text`: `alt_text(scene)`, what CLIP trains on, like web alt text: colors and shapes in reading
  order, the position only for a lone object ("a red circle at the top left", "a red circle and a
  blue square"); `caption(scene)`, the dense description a VLM learns, in a grammar that
  `parse_caption` reads back exactly;
- `qa`: `questions(scene)` (five kinds, asked only where the answer is unique), `qa_example(seed)`
  (balanced answers), and the two baselines every accuracy is reported beside;
- `datasets`: the same as PyTorch datasets, and `collate`.

The compositional split: the color-shape pairs in `WITHHELD_PAIRS` never occur in training data
(`pairs="seen"`); they are evaluated on their own (`pairs="withheld"`).
"""

from __future__ import annotations

from . import datasets, drawing, qa, text, world
from .datasets import *
from .drawing import *
from .qa import *
from .text import *
from .world import *

__all__ = [*world.__all__, *drawing.__all__, *text.__all__, *qa.__all__, *datasets.__all__]
