"""Figures for the lessons. Each takes data (images, texts, counts, tensors), never a model, and
returns a Figure.

One module per stretch of the course: `world` (lesson 00), `images` (01-02), `learning` (03),
`language` (04b), `sequences` (04-08), `decoding` (06), `stages` (09), and the `style` they share.
"""

from __future__ import annotations

from . import decoding, images, language, learning, sequences, stages, style, world
from .decoding import *
from .images import *
from .language import *
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
    *language.__all__,
    *sequences.__all__,
    *decoding.__all__,
    *stages.__all__,
]
