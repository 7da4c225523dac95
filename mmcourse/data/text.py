"""The two texts of a scene: web-style alt text (what CLIP trains on) and the dense caption (what a
VLM learns).

Lesson 00 teaches it. `caption`'s grammar, parsed back exactly by `parse_caption`::

    caption  := object                                  (one object)
              | object " and " object                   (two)
              | object ", " object " and " object       (three)
    object   := article " " color " " shape " at the " position
    article  := "an" before "orange", else "a"

Objects are in reading order (the order of `POSITIONS`: top row first, left to right).
"""

from __future__ import annotations

import re
from collections.abc import Sequence

from .world import COLORS, POSITIONS, SHAPES, Scene, article

__all__ = ["alt_text", "caption", "parse_caption"]


def _join(phrases: Sequence[str]) -> str:
    if len(phrases) == 1:
        return phrases[0]
    return ", ".join(phrases[:-1]) + " and " + phrases[-1]


def alt_text(scene: Scene) -> str:
    """Web-style alt text: colors and shapes in reading order; a position only for a lone object."""
    objects = scene.in_reading_order
    if len(objects) == 1:
        return f"{objects[0].phrase} at the {objects[0].position}"
    return _join([o.phrase for o in objects])


def caption(scene: Scene) -> str:
    """The dense caption: every object with its position, in reading order (grammar in the module
    doc)."""
    return _join([f"{o.phrase} at the {o.position}" for o in scene.in_reading_order])


_OBJECT = r"(an?) ({}) ({}) at the ({})".format(
    "|".join(COLORS), "|".join(SHAPES), "|".join(sorted(POSITIONS, key=len, reverse=True))
)
_CAPTION_RES = [
    re.compile(rf"^{_OBJECT}$"),
    re.compile(rf"^{_OBJECT} and {_OBJECT}$"),
    re.compile(rf"^{_OBJECT}, {_OBJECT} and {_OBJECT}$"),
]


def parse_caption(text: str) -> list[tuple[str, str, str]] | None:
    """The (color, shape, position) triples of a caption in the grammar of `caption`, or None if it
    is not.

    Case, spacing around commas and a final full stop are normalized first, so a decoded "A red
    circle at the top left , a ..." parses; anything else outside the grammar does not.
    """
    normal = re.sub(r"[^\w\s,]", " ", text.lower())
    normal = " ".join(re.sub(r"\s*,\s*", ", ", normal).split())
    for pattern in _CAPTION_RES:
        match = pattern.match(normal)
        if match:
            groups = match.groups()
            # (article, color, shape, position)
            objects = [groups[i : i + 4] for i in range(0, len(groups), 4)]
            if any(a != article(color) for a, color, _, _ in objects):
                return None
            return [(color, shape, position) for _, color, shape, position in objects]
    return None
