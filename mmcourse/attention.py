"""Seeing attention: maps of where a vision transformer and a VLM look, as pure functions on tensors.

Lesson 08 teaches it. Small parts first, then the whole:

1. `vision_attentions(model, pixel_values)` runs a CLIP vision tower once and stacks its attention
   probabilities into one tensor (L, K, T, T): layer, head, query token, key token; T = 1 + N ([CLS] first).
2. `fuse_heads` merges the K heads (mean, max or min); `query_map` takes one query token's row, drops [CLS] as a
   key and lays the N patch weights out on the patch grid (H, W); `cls_map` does it for the [CLS] row.
3. `rollout` (Abnar & Zuidema 2020, "Quantifying attention flow in transformers") follows attention through all
   layers: each layer's fused matrix gets the residual connection added as an identity term,
   A = 0.5 W + 0.5 I, its rows are renormalized, and the layers are multiplied, last layer on the left.
4. `upsample` puts a (H, W) grid map onto the image's pixels.
5. `text_patch_similarity` asks a CLIP where a phrase is: the cosine similarity between the phrase's text
   embedding and every patch token projected into the joint space the way [CLS] is.
6. `cross_modal_attention` asks a VLM where it looked while it wrote each token of its answer: the attention
   mass on the image-token positions, per generated token and per LM layer, on the image-token grid.

Every map works for any square grid: the shipped `shapes-clip` (72 px / 8 px patches: 9 x 9), ViT-B/32
(224 / 32: 7 x 7), ViT-B/16 (14 x 14) ...; `grid_side` says which.

**Why a switch to "eager".** transformers 5 runs attention with PyTorch's fused `sdpa` kernel by default. The
kernel never forms the attention matrix, so `output_attentions=True` only logs a warning and returns an *empty
tuple*. `use_eager_attention(model)` switches the model to the plain ("eager") implementation, which computes
softmax(QK^T / sqrt(d)) explicitly and can return it; the outputs are the same up to float rounding. The
functions here switch the model they are given themselves, **and leave it switched** (nothing is restored
behind your back): a model you pass stays on eager attention, slightly slower, until you call
`model.set_attn_implementation("sdpa")`. Loading with `attn_implementation="eager"` avoids the switch.

Shape legend (see `utils`): L layers, K heads, T tokens (1 + N for a ViT), N patches, H/W grid height/width,
G generated tokens, P phrases, S image side in pixels.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import dataclass

import torch
import torch.nn.functional as F

from . import contrastive, vlm
from .data import image_to_tensor
from .vision import pixel_values_from_uint8, to_rgb

FUSIONS = ("mean", "max", "min")
UPSAMPLE_MODES = ("nearest", "bilinear")


# --- small parts: checks, the grid, head fusion -------------------------------------------------------------


def grid_side(n_patch_tokens: int) -> int:
    """Patches per side of a square grid: 81 -> 9, 49 -> 7, 196 -> 14, 1 -> 1. Raises unless n is a square."""
    if not isinstance(n_patch_tokens, int) or isinstance(n_patch_tokens, bool) or n_patch_tokens < 1:
        raise ValueError(f"the number of patch tokens must be a positive int, got {n_patch_tokens!r}.")
    side = math.isqrt(n_patch_tokens)
    if side * side != n_patch_tokens:
        raise ValueError(
            f"{n_patch_tokens} patch tokens do not form a square grid (nearest: {side}x{side} = {side * side}). "
            "Did you keep [CLS] among the keys? A ViT has 1 + H*W tokens; the maps use the H*W after [CLS]."
        )
    return side


def as_attention_tensor(attentions) -> torch.Tensor:
    """One (L, K, T, T) tensor from a model output's `attentions` (a tuple of L (1, K, T, T)) or from a tensor.

    A tuple of per-layer tensors is stacked, and a batch dimension of 1 dropped. An empty tuple is what
    transformers 5 returns under `sdpa` attention: the error says so and how to fix it.
    """
    if isinstance(attentions, (tuple, list)):
        if len(attentions) == 0:
            raise ValueError(
                "got no attentions (an empty tuple): the model ran with `sdpa` attention, which in transformers 5 "
                "returns none even with output_attentions=True. Call attention.use_eager_attention(model) first, "
                "or load the model with attn_implementation='eager'."
            )
        if any(a is None for a in attentions):
            raise ValueError("some layers returned no attention (None); switch the model to eager attention.")
        attentions = torch.stack(list(attentions))  # (L, B, K, T, T) or (L, K, T, T)
        if attentions.dim() == 5:
            if attentions.shape[1] != 1:
                raise ValueError(f"attentions of a batch of {attentions.shape[1]} images; pick one (index dim 1).")
            attentions = attentions[:, 0]  # (L, K, T, T)
    if not isinstance(attentions, torch.Tensor):
        raise ValueError(f"attentions must be a tensor (L, K, T, T) or a tuple of layers, "
                         f"got {type(attentions).__name__}.")  # fmt: skip
    if attentions.dim() != 4 or attentions.shape[-1] != attentions.shape[-2]:
        raise ValueError(
            f"attentions must have shape (layers, heads, tokens, tokens), got {tuple(attentions.shape)}; "
            "for one layer use attentions[None], for a batch from a model output pick one image."
        )
    return attentions


def _check_layer(layer: int, n_layers: int) -> int:
    if not isinstance(layer, int) or isinstance(layer, bool) or not -n_layers <= layer < n_layers:
        raise ValueError(f"layer must be an int in [{-n_layers}, {n_layers - 1}] ({n_layers} layers; -1 is the last), "
                         f"got {layer!r}.")  # fmt: skip
    return layer


def fuse_heads(attn: torch.Tensor, fusion: str = "mean") -> torch.Tensor:
    """Merge the heads: (..., K, T, T) -> (..., T, T), by the elementwise mean, max or min over K.

    "mean" keeps rows summing to 1 (a mean of distributions is one); "max" shows what *any* head looks at,
    "min" what *every* head looks at; their rows do not sum to 1 (`rollout` renormalizes them).
    """
    if fusion not in FUSIONS:
        raise ValueError(f"fusion must be one of {FUSIONS}, got {fusion!r}.")
    if attn.dim() < 3:
        raise ValueError(f"fuse_heads needs (..., heads, tokens, tokens), got shape {tuple(attn.shape)}.")
    if fusion == "mean":
        return attn.mean(dim=-3)
    if fusion == "max":
        return attn.amax(dim=-3)
    return attn.amin(dim=-3)


def layer_matrix(attentions, layer: int = -1, head: int | str = "mean") -> torch.Tensor:
    """One layer's (T, T) attention: one head (`head` an int) or the heads fused (`head` "mean", "max", "min")."""
    attentions = as_attention_tensor(attentions)
    n_layers, n_heads = attentions.shape[:2]
    per_head = attentions[_check_layer(layer, n_layers)]  # (K, T, T)
    if isinstance(head, str):
        return fuse_heads(per_head, head)  # (T, T)
    if not isinstance(head, int) or isinstance(head, bool) or not -n_heads <= head < n_heads:
        raise ValueError(f"head must be an int in [{-n_heads}, {n_heads - 1}] or one of {FUSIONS}, got {head!r}.")
    return per_head[head]  # (T, T)


def _query_index(query: int | tuple[int, int], n_tokens: int, side: int) -> int:
    if isinstance(query, tuple):  # (row, col) of a patch -> its token index, after [CLS]
        row, col = query
        if not (0 <= row < side and 0 <= col < side):
            raise ValueError(f"patch ({row}, {col}) is outside the {side}x{side} grid.")
        return 1 + row * side + col
    if not isinstance(query, int) or isinstance(query, bool) or not -n_tokens <= query < n_tokens:
        raise ValueError(f"query_index must be a token index in [0, {n_tokens - 1}] (0 is [CLS], 1 + n is patch n) "
                         f"or a (row, col) patch, got {query!r}.")  # fmt: skip
    return query % n_tokens


def row_to_grid(matrix: torch.Tensor, query_index: int | tuple[int, int] = 0) -> torch.Tensor:
    """The row of one query token of a (T, T) matrix over the patch keys, as the patch grid: -> (H, W).

    [CLS] (key 0) is dropped, so the map shows how much of the query's attention went to each patch; the
    weights are not renormalized (what went to [CLS] is simply missing). `query_index`: 0 is [CLS],
    1 + n is patch n, or give a patch as (row, col).
    """
    if matrix.dim() != 2 or matrix.shape[0] != matrix.shape[1]:
        raise ValueError(f"expected a square (tokens, tokens) matrix, got shape {tuple(matrix.shape)}.")
    n_tokens = matrix.shape[0]
    side = grid_side(n_tokens - 1)
    row = matrix[_query_index(query_index, n_tokens, side), 1:]  # (N,): keys without [CLS]
    return row.reshape(side, side)  # (H, W)


def query_map(attentions, layer: int = -1, head: int | str = "mean",
              query_index: int | tuple[int, int] = 0) -> torch.Tensor:  # fmt: skip
    """Where one query token looks in one layer: (L, K, T, T) -> (H, W) over the patch grid.

    `head`: an int for one head, or "mean" / "max" / "min" to fuse them. `query_index`: 0 is [CLS], 1 + n is
    patch n (row n // W, column n % W), or a (row, col) patch.
    """
    return row_to_grid(layer_matrix(attentions, layer, head), query_index)


def cls_map(attentions, layer: int = -1, head: int | str = "mean") -> torch.Tensor:
    """The [CLS] row over the patches, as the grid (H, W).

    `attentions` is either the stacked (L, K, T, T) attentions (then `layer` and `head` pick the matrix), or an
    already-reduced (T, T) matrix such as `rollout(...)`: `cls_map(rollout(attentions))`.
    """
    if isinstance(attentions, torch.Tensor) and attentions.dim() == 2:
        if layer != -1 or head != "mean":
            raise ValueError("a (T, T) matrix has no layers or heads to pick; call cls_map(matrix) alone.")
        return row_to_grid(attentions, 0)
    return query_map(attentions, layer, head, 0)


# --- attention rollout -------------------------------------------------------------------------------------


def _residual_ratio(residual: bool | float) -> float:
    ratio = (0.5 if residual else 0.0) if isinstance(residual, bool) else float(residual)
    if not 0.0 <= ratio <= 1.0:
        raise ValueError(f"residual must be True (0.5), False (0) or a ratio in [0, 1], got {residual!r}.")
    return ratio


def rollout(attentions, residual: bool | float = True, fusion: str = "mean") -> torch.Tensor:
    """Attention rollout (Abnar & Zuidema 2020): (L, K, T, T) -> (T, T), rows summing to 1.

    Per layer: fuse the heads, add the residual connection as an identity term, A = (1 - r) W + r I with
    r = 0.5 for `residual=True` (a float sets r, False drops it), renormalize each row to sum 1. Then multiply
    the layers, R = A_L ... A_2 A_1: row i of R says how much each input token flowed into output token i.
    Roll out fewer layers with `rollout(attentions[:k])`.
    """
    attentions = as_attention_tensor(attentions)
    ratio = _residual_ratio(residual)
    fused = fuse_heads(attentions, fusion).float()  # (L, T, T)
    eye = torch.eye(fused.shape[-1], dtype=fused.dtype, device=fused.device)  # (T, T)
    mixed = (1 - ratio) * fused + ratio * eye  # (L, T, T)
    mixed = mixed / mixed.sum(dim=-1, keepdim=True).clamp(min=torch.finfo(mixed.dtype).tiny)  # rows sum to 1
    flow = eye
    for layer in mixed:  # first layer first: each new layer multiplies on the left
        flow = layer @ flow  # (T, T)
    return flow


# --- onto the image ----------------------------------------------------------------------------------------


def upsample(grid_map: torch.Tensor, image_size: int | tuple[int, int], mode: str = "nearest") -> torch.Tensor:
    """A grid map onto the image's pixels: (H, W) -> (S, S), or (..., H, W) -> (..., S_h, S_w).

    "nearest" (the default) paints each patch's value over the pixels the patch covers: it is exactly what the
    model saw, one number per patch, and the peak stays in its patch. "bilinear" (align_corners=False) looks
    smoother but invents values between patch centres and smears a peak into its neighbours; use it for display.
    """
    if mode not in UPSAMPLE_MODES:
        raise ValueError(f"mode must be one of {UPSAMPLE_MODES}, got {mode!r}.")
    if grid_map.dim() < 2:
        raise ValueError(f"upsample needs a map (..., H, W), got shape {tuple(grid_map.shape)}.")
    size = (image_size, image_size) if isinstance(image_size, int) else tuple(image_size)
    lead = grid_map.shape[:-2]
    flat = grid_map.reshape(-1, 1, *grid_map.shape[-2:]).float()  # (B, 1, H, W)
    kwargs = {"align_corners": False} if mode == "bilinear" else {}
    out = F.interpolate(flat, size=size, mode=mode, **kwargs)  # (B, 1, S_h, S_w)
    return out.reshape(*lead, *size)


# --- running models ----------------------------------------------------------------------------------------


def use_eager_attention(model) -> bool:
    """Switch a Hugging Face model (and its sub-models) to eager attention so that `output_attentions=True`
    returns the attention matrices. Returns True if it changed anything. The switch stays (see the module doc)."""
    config = getattr(model, "config", None)
    if config is None or not hasattr(model, "set_attn_implementation"):
        raise ValueError(f"a {type(model).__name__} is not a Hugging Face model; pass e.g. a CLIPVisionModel or a "
                         "LlamaForCausalLM (for a MultimodalModel: its .vision_model or .language_model).")  # fmt: skip
    if config._attn_implementation == "eager":
        return False
    model.set_attn_implementation("eager")
    if config._attn_implementation != "eager":
        raise ValueError(f"{type(model).__name__} did not switch to eager attention (still "
                         f"{config._attn_implementation!r}); load it with attn_implementation='eager'.")  # fmt: skip
    return True


def vision_tower(model):
    """The `CLIPVisionModel` inside a CLIPModel, a MultimodalModel or a VisionEncoder (or the model itself)."""
    if hasattr(model, "vision_model"):  # CLIPModel, MultimodalModel
        return model.vision_model
    if hasattr(model, "model") and hasattr(model, "preprocess"):  # vision.VisionEncoder
        return model.model
    return model


def as_pixel_values(image, image_size: int, processor=None) -> torch.Tensor:
    """One image as the vision tower's input (1, 3, S, S).

    A float tensor (3, S, S) or (1, 3, S, S) is taken as pixel values already. Anything else (PIL image, uint8
    array or tensor) goes through `processor` when given; without one it must already be S x S pixels (the
    shapes world), and is rescaled and normalized with CLIP's statistics.
    """
    if isinstance(image, torch.Tensor) and image.is_floating_point():
        pixels = image[None] if image.dim() == 3 else image
        if pixels.dim() != 4 or pixels.shape[:2] != (1, 3):
            raise ValueError(f"pixel values must be (3, H, W) or (1, 3, H, W) for one image, got {tuple(image.shape)}.")
        return pixels
    rgb = to_rgb(image)
    if processor is not None:
        return processor(images=[rgb], return_tensors="pt")["pixel_values"]  # (1, 3, S, S)
    if rgb.size != (image_size, image_size):
        width, height = rgb.size
        raise ValueError(f"the image is {width}x{height} px but the model reads {image_size}x{image_size}; pass "
                         "processor=CLIPImageProcessor.from_pretrained(...) or the pixel values themselves.")  # fmt: skip
    return pixel_values_from_uint8(image_to_tensor(rgb)[None])  # (1, 3, S, S)


@torch.no_grad()
def vision_attentions(model, pixel_values) -> torch.Tensor:
    """Every attention probability of a CLIP vision tower on one image: (L, K, T, T), on the CPU, float32.

    `model`: a `CLIPVisionModel`, or a CLIPModel / MultimodalModel / VisionEncoder (their vision tower is used).
    `pixel_values`: (3, H, W) or (1, 3, H, W), or an image at the model's size (see `as_pixel_values`). The
    forward pass runs on the model's own device; only the result comes back to the CPU as float32 (small:
    0.4 MB for shapes-clip, 1.4 MB for ViT-B/32), ready for plotting. The tower is switched to eager attention if needed, and stays so.
    """
    tower = vision_tower(model)
    use_eager_attention(tower)
    pixels = as_pixel_values(pixel_values, tower.config.image_size)
    parameter = next(tower.parameters())
    out = tower(pixel_values=pixels.to(parameter.device, parameter.dtype), output_attentions=True)
    attentions = as_attention_tensor(out.attentions)  # (L, K, T, T)
    n_layers = tower.config.num_hidden_layers
    if attentions.shape[0] != n_layers:
        raise ValueError(f"the model returned attentions of {attentions.shape[0]} layers, expected {n_layers}.")
    return attentions.float().cpu()


@torch.no_grad()
def patch_embeddings(clip_model, pixel_values) -> torch.Tensor:
    """Every patch token of one image in CLIP's joint space, projected the way [CLS] is: (1, 3, S, S) -> (N, E).

    The patch tokens of `last_hidden_state` go through the vision tower's `post_layernorm` and the model's
    `visual_projection`, as `get_image_features` does with [CLS]. CLIP was only trained on the [CLS] path, so
    this is a probe, not a promise (see `text_patch_similarity`).
    """
    tower = clip_model.vision_model
    parameter = next(tower.parameters())
    hidden = tower(pixel_values=pixel_values.to(parameter.device, parameter.dtype)).last_hidden_state  # (1, 1 + N, D)
    patches = tower.post_layernorm(hidden[0, 1:])  # (N, D)
    return clip_model.visual_projection(patches)  # (N, E)


@torch.no_grad()
def text_patch_similarity(clip_model, tokenizer, image, phrase: str | Sequence[str], processor=None) -> torch.Tensor:
    """Where a phrase is, according to CLIP: cosine similarity of its text embedding with every patch token.

    `clip_model` is a full `CLIPModel` (both towers), `tokenizer` its tokenizer, `image` one image or its pixel
    values (see `as_pixel_values`). One phrase -> (H, W); a list of P phrases -> (P, H, W). CPU float32.

    What it shows, measured on shapes-clip: on a lone object the peak lies in the object's cell for about 70 % of
    scenes (chance 11 %), but with two objects it lands on the *other* object more often than on the named one.
    The patch tokens know "object here", not which object: only [CLS] was trained to match a text.
    """
    if not (hasattr(clip_model, "get_text_features") and hasattr(clip_model, "visual_projection")):
        raise ValueError(f"text_patch_similarity needs a full CLIPModel (vision and text towers and their "
                         f"projections), got a {type(clip_model).__name__}.")  # fmt: skip
    phrases = [phrase] if isinstance(phrase, str) else list(phrase)
    pixels = as_pixel_values(image, clip_model.config.vision_config.image_size, processor)
    patches = F.normalize(patch_embeddings(clip_model, pixels), dim=-1)  # (N, E)
    texts = F.normalize(contrastive.embed_texts(clip_model, tokenizer, phrases), dim=-1)  # (P, E)
    side = grid_side(patches.shape[0])
    similarity = (texts @ patches.T).reshape(len(phrases), side, side)  # (P, H, W)
    return (similarity[0] if isinstance(phrase, str) else similarity).float().cpu()


# --- cross-modal: where a VLM looks while it answers -----------------------------------------------------------


@dataclass(frozen=True)
class CrossModalAttention:
    """What `cross_modal_attention` returns.

    tokens: the G generated tokens (strings, the final [EOS] included).
    maps: (G, L, H, W) for each generated token and LM layer, the attention (heads fused) that the position
        predicting that token paid to each image token, laid out on the image-token grid (3x3 for the shipped
        merged model, one cell per image token; 1x1 for the [CLS] model). Not renormalized: `maps.sum((-2, -1))`
        is the share of attention that went to the image at all.
    image_positions: the sequence positions of the image tokens (the first N_img).
    query_positions: for each generated token, the position whose attention row is used (the one before it).
    sequence: the tokens of the whole sequence read by the LM, image tokens as "img0", "img1", ...
    """

    tokens: list[str]
    maps: torch.Tensor
    image_positions: list[int]
    query_positions: list[int]
    sequence: list[str]


@torch.no_grad()
def cross_modal_attention(model: vlm.MultimodalModel, image, question: str = "", answer: str | None = None,
                          max_new_tokens: int = 32, fusion: str = "mean") -> CrossModalAttention:  # fmt: skip
    """Per generated token and LM layer, the attention on the image tokens of a `MultimodalModel`.

    With `answer=None` the model first answers `question` greedily (an empty question: it captions); with an
    `answer` that text is scored instead (teacher forcing). Then ONE forward pass over
    [image tokens] [BOS] question [EOS] answer [EOS] with `output_attentions=True` gives every layer's
    attention; generated token g is predicted by the position just before it, so its map is that position's
    row over the image positions. The language model is switched to eager attention, and stays so.
    """
    if not isinstance(model, vlm.MultimodalModel):
        raise ValueError(f"cross_modal_attention needs a vlm.MultimodalModel, got a {type(model).__name__}.")
    model.eval()
    lm, tokenizer = model.language_model, model.tokenizer
    inputs = model.generation_inputs(vlm.pixel_values(model, [image]), [question])  # one row: no padding
    if answer is None:
        new_ids = lm.generate(**inputs, max_new_tokens=max_new_tokens, num_beams=1, do_sample=False,
                              eos_token_id=tokenizer.eos_token_id, pad_token_id=tokenizer.pad_token_id)  # fmt: skip
        new_ids = new_ids[0].tolist()  # with inputs_embeds only, generate returns just the new tokens
        if tokenizer.eos_token_id in new_ids:  # keep the [EOS] the model chose; drop anything after it
            new_ids = new_ids[: new_ids.index(tokenizer.eos_token_id) + 1]
    else:
        new_ids = model.answer_ids(answer)
    if not new_ids:
        raise ValueError("there are no generated tokens to explain; give max_new_tokens >= 1 or an answer.")
    use_eager_attention(lm)
    generated = torch.tensor([new_ids], device=model.device)  # (1, G)
    embeds = torch.cat([inputs["inputs_embeds"], model.embed_text(generated)], dim=1)  # (1, N_img + T_p + G, D)
    mask = torch.cat([inputs["attention_mask"], torch.ones_like(generated)], dim=1)  # (1, N_img + T_p + G)
    out = lm(inputs_embeds=embeds, attention_mask=mask, output_attentions=True)
    fused = fuse_heads(as_attention_tensor(out.attentions), fusion)  # (L, S, S), S the sequence length
    n_img = model.num_image_tokens
    side = grid_side(n_img)
    prompt_end = inputs["inputs_embeds"].shape[1]  # N_img + T_p: the first generated token's position
    queries = [prompt_end - 1 + g for g in range(len(new_ids))]
    maps = fused[:, queries, :n_img]  # (L, G, N_img)
    maps = maps.permute(1, 0, 2).reshape(len(new_ids), fused.shape[0], side, side)  # (G, L, H, W)
    prompt_tokens = tokenizer.convert_ids_to_tokens(model.prompt_ids(question))
    tokens = tokenizer.convert_ids_to_tokens(new_ids)
    return CrossModalAttention(
        tokens=tokens, maps=maps.float().cpu(), image_positions=list(range(n_img)), query_positions=queries,
        sequence=[f"img{i}" for i in range(n_img)] + prompt_tokens + tokens,
    )  # fmt: skip
