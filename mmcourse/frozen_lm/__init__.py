"""A pretrained, frozen language model: LLaVA's two stages, LoRA, and what the projector learns.

Lesson 09 teaches it. The language model of lessons 05-07 learned to speak and to see at once. Real
VLMs (LLaVA, LiMBeR, ClipCap) start from a language model that already speaks, and teach it to see
with a small projector. The course's own such model is `shapes-lm`, a tiny `LlamaForCausalLM`
trained on text alone: scenes *described in words*, questions about them, and descriptions of them.

A described scene is written where the image tokens will go: 9 vectors, one per cell of the 3 x 3
grid in reading order, each the sum of the word embeddings of what the cell holds and where
("red circle top left", "empty top")::

    [9 cell vectors] [BOS] question [EOS] answer [EOS]

The image gives the same layout: merged 3 x 3 patch blocks are one token per cell (lesson 07). So
the projector's job is exactly to *write the image as such a described scene*, and what the
language model does with a described scene (answer the five kinds of question) may carry over to
images it never saw with a question. That is LLaVA's stage 1 (only the projector trains, on
captions); stage 2 then tunes the language model too, here with LoRA through `peft`.

Reads top-down: `described` (scenes in words, the text batches, the text-only reader `TextLM`),
`tuning` (what trains in each stage; LoRA by hand and through `peft`), `soft_words` (image tokens
read back as words: nearest cells and words).
How shapes-lm and the two stages are trained are recipes (`mmcourse.recipes.shapes_lm`,
`mmcourse.recipes.two_stage`).
"""

from __future__ import annotations

from . import described, soft_words, tuning
from .described import *
from .soft_words import *
from .tuning import *

__all__ = [*described.__all__, *tuning.__all__, *soft_words.__all__]
