"""Running models for their attention: a CLIP vision tower, a CLIP's text-to-patch similarity, a
VLM's attention on its image tokens while it writes each word.

Lesson 08 teaches it (the package doc, `mmcourse.attention`, has the whole picture, and why the
models are switched to eager attention and left so).
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

import torch
import torch.nn.functional as F

from .. import clip, vlm
from ..vision import pixel_values as to_pixel_values
from .maps import as_attention_tensor, fuse_heads, grid_side

__all__ = [
    "CrossModalAttention",
    "cross_modal_attention",
    "patch_embeddings",
    "text_patch_similarity",
    "use_eager_attention",
    "vision_attentions",
    "vision_tower",
]


def use_eager_attention(model) -> bool:
    """Switch a Hugging Face model (and its sub-models) to eager attention so that
    `output_attentions=True` returns the attention matrices. Returns True if it changed anything.
    The switch stays (see the
    module doc)."""
    config = getattr(model, "config", None)
    if config is None or not hasattr(model, "set_attn_implementation"):
        raise ValueError(
            f"a {type(model).__name__} is not a Hugging Face model; pass e.g. a CLIPVisionModel or "
            "a "
            "LlamaForCausalLM (for a MultimodalModel: its .vision_model or .language_model)."
        )
    if config._attn_implementation == "eager":
        return False
    model.set_attn_implementation("eager")
    if config._attn_implementation != "eager":
        raise ValueError(
            f"{type(model).__name__} did not switch to eager attention (still "
            f"{config._attn_implementation!r}); load it with attn_implementation='eager'."
        )
    return True


def vision_tower(model):
    """The `CLIPVisionModel` inside a CLIPModel, a MultimodalModel or a VisionEncoder (or the model
    itself)."""
    if hasattr(model, "vision_model"):  # CLIPModel, MultimodalModel
        return model.vision_model
    if hasattr(model, "model") and hasattr(model, "preprocess"):  # vision.VisionEncoder
        return model.model
    return model


def _one_image(pixels: torch.Tensor) -> torch.Tensor:
    if pixels.shape[0] != 1:
        raise ValueError(
            "pixel values must be (3, H, W) or (1, 3, H, W) for one image, got "
            f"{tuple(pixels.shape)}."
        )
    return pixels  # (1, 3, S, S)


@torch.no_grad()
def vision_attentions(model, pixel_values) -> torch.Tensor:
    """Every attention probability of a CLIP vision tower on one image: (L, K, T, T), on the CPU,
    float32.

    `model`: a `CLIPVisionModel`, or a CLIPModel / MultimodalModel / VisionEncoder (their vision
    tower is used). `pixel_values`: (3, H, W) or (1, 3, H, W), or an image at the model's size (see
    `vision.pixel_values`). The forward pass runs on the model's own device; only the result comes
    back to the CPU as float32 (small:
    0.4 MB for shapes-clip, 1.4 MB for ViT-B/32), ready for plotting. The tower is switched to eager
    attention if needed, and stays so.
    """
    tower = vision_tower(model)
    use_eager_attention(tower)
    pixels = _one_image(to_pixel_values(pixel_values, None, tower.config.image_size))
    parameter = next(tower.parameters())
    out = tower(pixel_values=pixels.to(parameter.device, parameter.dtype), output_attentions=True)
    attentions = as_attention_tensor(out.attentions)  # (L, K, T, T)
    n_layers = tower.config.num_hidden_layers
    if attentions.shape[0] != n_layers:
        raise ValueError(
            f"the model returned attentions of {attentions.shape[0]} layers, expected {n_layers}."
        )
    return attentions.float().cpu()


@torch.no_grad()
def patch_embeddings(clip_model, pixel_values) -> torch.Tensor:
    """Every patch token of one image in CLIP's joint space, projected the way [CLS] is: (1, 3, S,
    S) -> (N, E).

    The patch tokens of `last_hidden_state` go through the vision tower's `post_layernorm` and the
    model's `visual_projection`, as `get_image_features` does with [CLS]. CLIP was only trained on
    the [CLS] path, so this is a probe, not a promise (see `text_patch_similarity`).
    """
    tower = clip_model.vision_model
    parameter = next(tower.parameters())
    hidden = tower(
        pixel_values=pixel_values.to(parameter.device, parameter.dtype)
    ).last_hidden_state  # (1, 1 + N, D)
    patches = tower.post_layernorm(hidden[0, 1:])  # (N, D)
    return clip_model.visual_projection(patches)  # (N, E)


@torch.no_grad()
def text_patch_similarity(
    clip_model, tokenizer, image, phrase: str | Sequence[str], processor=None
) -> torch.Tensor:
    """Where a phrase is, according to CLIP: cosine similarity of its text embedding with every
    patch token.

    `clip_model` is a full `CLIPModel` (both towers), `tokenizer` its tokenizer, `image` one image
    or its pixel values (see `vision.pixel_values`). One phrase -> (H, W); a list of P phrases ->
    (P, H, W). CPU float32.

    What it shows, measured on shapes-clip: on a lone object the peak lies in the object's cell for
    about 70 % of scenes (chance 11 %), but with two objects it lands on the *other* object more
    often than on the named one.
    The patch tokens know "object here", not which object: only [CLS] was trained to match a text.
    """
    if not (hasattr(clip_model, "get_text_features") and hasattr(clip_model, "visual_projection")):
        raise ValueError(
            f"text_patch_similarity needs a full CLIPModel (vision and text towers and their "
            f"projections), got a {type(clip_model).__name__}."
        )
    phrases = [phrase] if isinstance(phrase, str) else list(phrase)
    pixels = _one_image(
        to_pixel_values(image, processor, clip_model.config.vision_config.image_size)
    )
    patches = F.normalize(patch_embeddings(clip_model, pixels), dim=-1)  # (N, E)
    texts = F.normalize(clip.embed_texts(clip_model, tokenizer, phrases), dim=-1)  # (P, E)
    side = grid_side(patches.shape[0])
    similarity = (texts @ patches.T).reshape(len(phrases), side, side)  # (P, H, W)
    return (similarity[0] if isinstance(phrase, str) else similarity).float().cpu()


# --- cross-modal: where a VLM looks while it answers
# -----------------------------------------------------------


@dataclass(frozen=True)
class CrossModalAttention:
    """What `cross_modal_attention` returns.

    tokens: the G generated tokens (strings, the final [EOS] included). maps: (G, L, H, W) for each
    generated token and LM layer, the attention (heads fused) that the position
        predicting that token paid to each image token, laid out on the image-token grid (3x3 for
        the shipped merged model, one cell per image token; 1x1 for the [CLS] model). Not
        renormalized:
        `maps.sum((-2, -1))` is the share of attention that went to the image at all.
    image_positions: the sequence positions of the image tokens (the first N_img). query_positions:
    for each generated token, the position whose attention row is used (the one before it).
    sequence: the tokens of the whole sequence read by the LM, image tokens as "img0", "img1", ...
    """

    tokens: list[str]
    maps: torch.Tensor
    image_positions: list[int]
    query_positions: list[int]
    sequence: list[str]


@torch.no_grad()
def cross_modal_attention(
    model: vlm.MultimodalModel,
    image,
    question: str = "",
    answer: str | None = None,
    max_new_tokens: int = 32,
    fusion: str = "mean",
) -> CrossModalAttention:
    """Per generated token and LM layer, the attention on the image tokens of a `MultimodalModel`.

    With `answer=None` the model first answers `question` greedily (an empty question: it captions);
    with an `answer` that text is scored instead (teacher forcing). Then ONE forward pass over
    [image tokens] [BOS] question [EOS] answer [EOS] with `output_attentions=True` gives every
    layer's attention; generated token g is predicted by the position just before it, so its map is
    that position's row over the image positions. The language model is switched to eager attention,
    and stays so.
    """
    if not isinstance(model, vlm.MultimodalModel):
        raise ValueError(
            f"cross_modal_attention needs a vlm.MultimodalModel, got a {type(model).__name__}."
        )
    model.eval()
    lm, tokenizer = model.language_model, model.tokenizer
    inputs = model.generation_inputs(model.pixel_values([image]), [question])  # one row: no padding
    if answer is None:
        new_ids = vlm.generate_tokens(model, inputs, max_new_tokens)[0].tolist()
        new_ids = vlm.until_eos(new_ids, tokenizer.eos_token_id)  # keep the [EOS] the model chose
    else:
        new_ids = model.answer_ids(answer)
    if not new_ids:
        raise ValueError(
            "there are no generated tokens to explain; give max_new_tokens >= 1 or an answer."
        )
    use_eager_attention(lm)
    generated = torch.tensor([new_ids], device=model.device)  # (1, G)
    # (1, N_img + T_p + G, D)
    embeds = torch.cat([inputs["inputs_embeds"], model.embed_text(generated)], dim=1)
    # (1, N_img + T_p + G)
    mask = torch.cat([inputs["attention_mask"], torch.ones_like(generated)], dim=1)
    out = lm(inputs_embeds=embeds, attention_mask=mask, output_attentions=True)
    # (L, S, S), S the sequence length
    fused = fuse_heads(as_attention_tensor(out.attentions), fusion)
    n_img = model.num_image_tokens
    side = grid_side(n_img)
    # N_img + T_p: the first generated token's position
    prompt_end = inputs["inputs_embeds"].shape[1]
    queries = [prompt_end - 1 + g for g in range(len(new_ids))]
    maps = fused[:, queries, :n_img]  # (L, G, N_img)
    maps = maps.permute(1, 0, 2).reshape(len(new_ids), fused.shape[0], side, side)  # (G, L, H, W)
    prompt_tokens = tokenizer.convert_ids_to_tokens(model.prompt_ids(question))
    tokens = tokenizer.convert_ids_to_tokens(new_ids)
    return CrossModalAttention(
        tokens=tokens,
        maps=maps.float().cpu(),
        image_positions=list(range(n_img)),
        query_positions=queries,
        sequence=[f"img{i}" for i in range(n_img)] + prompt_tokens + tokens,
    )
