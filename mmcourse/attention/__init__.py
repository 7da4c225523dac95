"""Seeing attention: maps of where a vision transformer and a VLM look, as pure functions on
tensors.

Lesson 08 teaches it. Small parts first, then the whole:

1. `vision_attentions(model, pixel_values)` runs a CLIP vision tower once and stacks its attention
   probabilities into one tensor (L, K, T, T): layer, head, query token, key token; T = 1 + N ([CLS]
   first).
2. `fuse_heads` merges the K heads (mean, max or min); `query_map` takes one query token's row,
  drops [CLS] as a
   key and lays the N patch weights out on the patch grid (H, W); `cls_map` does it for the [CLS]
   row.
3. `rollout` (Abnar & Zuidema 2020, "Quantifying attention flow in transformers") follows attention
  through all
   layers: each layer's fused matrix gets the residual connection added as an identity term, A = 0.5
   W + 0.5 I, its rows are renormalized, and the layers are multiplied, last layer on the left.
4. `upsample` puts a (H, W) grid map onto the image's pixels.
5. `text_patch_similarity` asks a CLIP where a phrase is: the cosine similarity between the phrase's
  text
   embedding and every patch token projected into the joint space the way [CLS] is.
6. `cross_modal_attention` asks a VLM where it looked while it wrote each token of its answer: the
  attention
   mass on the image-token positions, per generated token and per LM layer, on the image-token grid.

Every map works for any square grid: the shipped `shapes-clip` (72 px / 8 px patches: 9 x 9),
ViT-B/32 (224 / 32: 7 x 7), ViT-B/16 (14 x 14) ...; `grid_side` says which.

**Why a switch to "eager".** transformers 5 runs attention with PyTorch's fused `sdpa` kernel by
default. The kernel never forms the attention matrix, so `output_attentions=True` only logs a
warning and returns an *empty tuple*. `use_eager_attention(model)` switches the model to the plain
("eager") implementation, which computes softmax(QK^T / sqrt(d)) explicitly and can return it; the
outputs are the same up to float rounding.
The functions here switch the model they are given themselves, **and leave it switched** (nothing is
restored behind your back): a model you pass stays on eager attention, slightly slower, until you
call `model.set_attn_implementation("sdpa")`. Loading with `attn_implementation="eager"` avoids the
switch.

The package: `maps` (pure functions on attention tensors: 2-4) and `probes` (running models: 1, 5,
6).

Shape legend (see `utils`): L layers, K heads, T tokens (1 + N for a ViT), N patches, H/W grid
height/width, G generated tokens, P phrases, S image side in pixels.
"""

from __future__ import annotations

from . import maps, probes
from .maps import *
from .probes import *

__all__ = [*maps.__all__, *probes.__all__]
