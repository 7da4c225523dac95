"""Lesson 08's interactive attention widgets (ipywidgets, with ipyevents for clicks on the image).

- `AttentionExplorer`: a CLIP vision encoder's attention. Pick a scene (by number, a new random one,
  or an uploaded image); layer and head (or a fusion of the heads); rollout on or off; the query
  token by slider or by clicking a patch of the image. The heatmap over the image follows every
  control.
- `TextPatchMap`: type a phrase ("red circle"); the CLIP similarity of each patch with it, over the
  image.
- `CrossModalAttention`: a VLM answers a question (or captions, with no question); pick one of its
  tokens and a layer: which image tokens it attended to, over the image.

Computation and drawing are separate. Each widget runs its model once per image (or image and
question) on the model's device and caches the result (`..._cache`); a control then only slices the
cached tensors (`current_map`) and draws (`display.heatmap_overlay`). `update()` returns the map it
drew and writes its `map_digest` into the widget's digest line, so a test, in Python or in a
browser, can check what is shown against `mmcourse.attention`.

The package: `display` (data -> pictures, no widgets), `controls` (the shared parts), `explorers`
(the three widgets).
"""

from __future__ import annotations

from . import controls, display, explorers
from .controls import *
from .display import *
from .explorers import *

__all__ = [*display.__all__, *controls.__all__, *explorers.__all__]
