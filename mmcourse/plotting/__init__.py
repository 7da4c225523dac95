"""Figures for the lessons. Each takes data (images, texts, counts, tensors), never a model, and
returns a Figure.

One module per stretch of the course: `world` (lesson 00), `images` (01-02), `learning` (03),
`sequences` (04-08), `stages` (09), and the `style` they share.
"""

from __future__ import annotations

from . import images, learning, sequences, stages, style, world
from .images import *
from .learning import *
from .sequences import *
from .stages import *
from .style import *
from .world import *

__all__ = [
    *style.__all__,
    *world.__all__,
    *images.__all__,
    *learning.__all__,
    *sequences.__all__,
    *stages.__all__,
]
