"""LLaVA's layout beside the course's, and the proof that the course's model is LLaVA where the two
architectures match.

Lesson 05 teaches it. LLaVA-1.5 writes one conversation as text with a placeholder,

    USER: <image>\\nwhere is the red circle? ASSISTANT: top left</s>

(`LLAVA_CHAT_TEMPLATE`, rendered by `tokenizer.apply_chat_template`), tokenizes it with ONE
`<image>` id, and repeats that id N times, once per image feature (`expand_image_tokens`); the model
puts the projected patch tokens where those ids are. Labels are -100 everywhere but the assistant's
turns.

The course's `MultimodalModel` puts its image tokens first, before `[BOS] question [EOS]`: the same
thing with the placeholder at position 0. With one image token per patch (`merge=1`) and the 2-layer
GELU projector it *is* transformers' `LlavaForConditionalGeneration`: `to_llava` copies its weights
into one, and the two give the same logits (tests/test_llava.py).
"""

from __future__ import annotations

import torch
from torch import nn

from .. import checkpoints
from .inputs import IGNORE_INDEX
from .model import MultimodalModel

__all__ = ["LLAVA_CHAT_TEMPLATE", "expand_image_tokens", "llava_input_ids", "to_llava"]

#: llava-hf/llava-1.5-7b-hf's chat template (its chat_template.json): the images of a turn first,
#: then its text; the assistant's text inside {% generation %} so that
#: `apply_chat_template(..., return_assistant_tokens_mask=True)` can mark it for the labels.
LLAVA_CHAT_TEMPLATE = (
    "{% for message in messages %}{% if message['role'] != 'system' %}"
    "{{ message['role'].upper() + ': '}}{% endif %}"
    "{# Render all images first #}"
    "{% for content in message['content'] | selectattr('type', 'equalto', 'image') %}"
    "{{ '<image>\n' }}{% endfor %}"
    "{# Render all text next #}"
    "{% if message['role'] != 'assistant' %}"
    "{% for content in message['content'] | selectattr('type', 'equalto', 'text') %}"
    "{{ content['text'] + ' '}}{% endfor %}"
    "{% else %}"
    "{% for content in message['content'] | selectattr('type', 'equalto', 'text') %}"
    "{% generation %}{{ content['text'] + ' '}}{% endgeneration %}{% endfor %}"
    "{% endif %}{% endfor %}"
    "{% if add_generation_prompt %}{{ 'ASSISTANT:' }}{% endif %}"
)


def expand_image_tokens(
    input_ids: torch.Tensor,
    assistant_mask: torch.Tensor,
    image_token_id: int,
    num_image_tokens: int,
) -> tuple[torch.Tensor, torch.Tensor]:
    """One tokenized conversation with one `<image>` placeholder -> (input_ids, labels) with the
    placeholder repeated N times.

    input_ids (T,) holds `image_token_id` exactly once; assistant_mask (T,) is 1 on the assistant's
    tokens (its answer and end token, every assistant turn), 0 elsewhere, as
    `apply_chat_template(..., return_assistant_tokens_mask=True)` gives it. Both outputs are
    (T - 1 + N,) int64 on the input's device: the ids with N image ids in place of the one, and the
    labels: the ids on the assistant's tokens, -100 on everything else (the image included).
    """
    where = (input_ids == image_token_id).nonzero().flatten()
    if len(where) != 1:
        raise ValueError(f"expected one image placeholder ({image_token_id}), found {len(where)}.")
    i = int(where[0])
    device = input_ids.device
    image = torch.full((num_image_tokens,), image_token_id, dtype=torch.long, device=device)
    ids = torch.cat([input_ids[:i].long(), image, input_ids[i + 1 :].long()])  # (T - 1 + N,)
    not_assistant = torch.zeros(num_image_tokens, dtype=torch.bool, device=device)
    is_assistant = torch.cat([assistant_mask[:i] != 0, not_assistant, assistant_mask[i + 1 :] != 0])
    return ids, ids.masked_fill(~is_assistant, IGNORE_INDEX)


def llava_input_ids(model: MultimodalModel, question: str, image_token_id: int) -> torch.Tensor:
    """What a LLaVA model reads for the course's prompt: N image ids, then `[BOS] question [EOS]`.
    (1, N + T)"""
    ids = [image_token_id] * model.num_image_tokens + model.prompt_ids(question)
    return torch.tensor([ids], dtype=torch.long, device=model.device)


def _check_matches(model: MultimodalModel) -> None:
    config, projector = model.config, model.projector
    if config.image_tokens != "patches" or config.merge != 1:
        raise ValueError(
            "LLaVA feeds one image token per patch: build the course model with "
            f"image_tokens='patches', merge=1 (got {config.image_tokens!r}, merge={config.merge})."
        )
    parts = list(projector) if isinstance(projector, nn.Sequential) else []
    if not (
        len(parts) == 3
        and isinstance(parts[1], nn.GELU)
        and parts[1].approximate == "none"  # LLaVA's "gelu" is the exact, erf one
        and all(isinstance(parts[k], nn.Linear) and parts[k].bias is not None for k in (0, 2))
    ):
        raise ValueError("LLaVA's projector is Linear -> GELU -> Linear: use projector='mlp'.")


def to_llava(model: MultimodalModel):
    """A transformers `LlavaForConditionalGeneration` with the weights of a course model
    (patches, merge=1, mlp).

    Its `<image>` id is new: the vocabulary's size V (LLaVA-1.5 too added `<image>` past Llama's
    32,000 words). So its embedding table and LM head have V + 1 rows; the first V are the course
    model's, and its logits' first V columns are the course model's logits. Returns the model (in
    eval mode, on the course model's device); its `config.image_token_id` is the new id.
    """
    _check_matches(model)
    with checkpoints.quiet_transformers():
        from transformers import LlavaConfig, LlavaForConditionalGeneration

    lm = model.language_model
    vocab = lm.config.vocab_size
    config = LlavaConfig(
        vision_config=model.vision_model.config.to_dict(),
        text_config={**lm.config.to_dict(), "vocab_size": vocab + 1},
        image_token_index=vocab,
        image_seq_length=model.num_image_tokens,
        projector_hidden_act="gelu",
        vision_feature_select_strategy="default",  # drop [CLS], keep the N patch tokens
        vision_feature_layer=model.config.layer,
        multimodal_projector_bias=True,
    )
    llava = LlavaForConditionalGeneration(config)
    llava.model.vision_tower.load_state_dict(model.vision_model.state_dict())
    llava.model.multi_modal_projector.linear_1.load_state_dict(model.projector[0].state_dict())
    llava.model.multi_modal_projector.linear_2.load_state_dict(model.projector[2].state_dict())
    weights = lm.model.state_dict()
    grown = weights["embed_tokens.weight"]  # (V, D): one more row, zeros, for <image>
    weights["embed_tokens.weight"] = torch.cat([grown, grown.new_zeros(1, grown.shape[1])])
    llava.model.language_model.load_state_dict(weights)
    with torch.no_grad():  # tied to the embeddings in the course's LM; copied either way
        head = lm.lm_head.weight
        llava.lm_head.weight.copy_(torch.cat([head, head.new_zeros(1, head.shape[1])]))
    return llava.to(model.device).eval()
