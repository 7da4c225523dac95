"""The language model side: a tiny Llama (`LlamaForCausalLM`) over the course's vocabulary.

Lesson 04b (the language-model primer) opens it up; lessons 05-07 use it. The course's VLMs train
it from scratch together with the projector; any Llama-architecture model with its tokenizer
(`HuggingFaceTB/SmolLM2-135M`, a local folder) takes its place through
`MultimodalModel.from_names`. Input and output embeddings are tied, as in small Llamas.

Below the builder, the pieces of a Llama block written out by hand, small to whole, each checked
against the Hugging Face piece on the same weights (tests/test_language_model.py): the next-token
loss, the causal mask, RMSNorm, rotary position embeddings (RoPE), the SwiGLU MLP, and one decoder
block in Llama's order (norm -> attention -> residual -> norm -> MLP -> residual).
Legend: B batch, T tokens, D hidden size, K heads, d = D / K per head.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import torch
import torch.nn.functional as F

__all__ = [
    "LanguageConfig",
    "apply_rope",
    "attention_by_hand",
    "build_language_model",
    "causal_mask",
    "decoder_block_by_hand",
    "next_token_loss",
    "rms_norm",
    "rope_angles",
    "rotate_half",
    "swiglu_mlp",
]


@dataclass(frozen=True)
class LanguageConfig:
    """A tiny Llama for the shapes world, trained from scratch (laptop defaults)."""

    hidden_size: int = 192
    layers: int = 4
    heads: int = 6
    intermediate_size: int = 512
    max_positions: int = 160  # 81 image tokens + the longest prompt and caption, with room to spare


def build_language_model(config: LanguageConfig = LanguageConfig(), vocab_size: int | None = None):
    """A randomly initialised `LlamaForCausalLM` over the course vocabulary (or `vocab_size` ids,
    the course's first), with tied input/output embeddings."""
    from transformers import LlamaConfig, LlamaForCausalLM

    from .tokenizer import VOCAB

    return LlamaForCausalLM(
        LlamaConfig(
            vocab_size=vocab_size or len(VOCAB),
            hidden_size=config.hidden_size,
            intermediate_size=config.intermediate_size,
            num_hidden_layers=config.layers,
            num_attention_heads=config.heads,
            num_key_value_heads=config.heads,
            max_position_embeddings=config.max_positions,
            tie_word_embeddings=True,
            bos_token_id=VOCAB["[BOS]"],
            eos_token_id=VOCAB["[EOS]"],
            pad_token_id=VOCAB["[PAD]"],
        )
    )


# --- causal language modelling -------------------------------------------------------------------


def next_token_loss(logits: torch.Tensor, labels: torch.Tensor, ignore_index: int = -100):
    """Causal LM loss: position t predicts token t + 1. Shift by one, then the mean cross-entropy
    over every label that is not `ignore_index` (the token mean, as `LlamaForCausalLM` computes it).

    logits (B, T, V), labels (B, T) -> a scalar."""
    predictions = logits[:, :-1]  # (B, T - 1, V): the last position has nothing left to predict
    targets = labels[:, 1:]  # (B, T - 1): the token that came next
    return F.cross_entropy(
        predictions.reshape(-1, predictions.shape[-1]),  # (B * (T - 1), V)
        targets.reshape(-1),  # (B * (T - 1),)
        ignore_index=ignore_index,
    )


def causal_mask(length: int, device=None) -> torch.Tensor:
    """(T, T) booleans: query i may read key j exactly when j <= i (True on and below the diagonal).
    A token never sees the future, so one forward pass trains every position at once."""
    return torch.ones(length, length, dtype=torch.bool, device=device).tril()


# --- RMSNorm -------------------------------------------------------------------------------------


def rms_norm(x: torch.Tensor, weight: torch.Tensor, eps: float = 1e-6) -> torch.Tensor:
    """Divide each vector by its root mean square, then scale each dimension by a learned gain.
    Unlike LayerNorm: no mean is subtracted and there is no bias. (..., D) -> (..., D)."""
    rms = torch.sqrt(x.float().pow(2).mean(dim=-1, keepdim=True) + eps)  # (..., 1)
    return weight * (x.float() / rms).to(x.dtype)


# --- rotary position embeddings (RoPE) -----------------------------------------------------------


def rope_angles(positions: torch.Tensor, head_dim: int, theta: float = 10000.0):
    """cos and sin of the rotation angles, (..., T) positions -> two (..., T, d) tensors.

    Pair p of a head's d numbers turns by position * theta^(-2p / d): fast for the first pairs,
    slow for the last. Llama pairs number p with number p + d / 2 (the "half" layout)."""
    exponents = torch.arange(0, head_dim, 2, device=positions.device).float() / head_dim
    frequencies = theta**-exponents  # (d / 2,)
    angles = positions[..., None].float() * frequencies  # (..., T, d / 2)
    angles = torch.cat([angles, angles], dim=-1)  # (..., T, d): pair p is (p, p + d / 2)
    return angles.cos(), angles.sin()


def rotate_half(x: torch.Tensor) -> torch.Tensor:
    """(x1, x2) -> (-x2, x1) on the two halves of the last dimension: each pair turned by 90 deg."""
    first, second = x.chunk(2, dim=-1)  # (..., d / 2) each
    return torch.cat([-second, first], dim=-1)  # (..., d)


def apply_rope(x: torch.Tensor, cos: torch.Tensor, sin: torch.Tensor) -> torch.Tensor:
    """Rotate every pair of x by its angle: x cos + rotate_half(x) sin, the 2-D rotation
    (a, b) -> (a cos - b sin, b cos + a sin). x (B, K, T, d); cos, sin (B, T, d) or (T, d)."""
    if cos.dim() == 3:
        cos, sin = cos[:, None], sin[:, None]  # (B, 1, T, d): the same angles for every head
    return x * cos + rotate_half(x) * sin


# --- attention, MLP, block -----------------------------------------------------------------------


def attention_by_hand(attention, x: torch.Tensor, cos: torch.Tensor, sin: torch.Tensor):
    """A `LlamaAttention`'s forward pass by hand: project, rotate q and k, causal softmax, mix the
    values, project out. x (B, T, D) -> (output (B, T, D), weights (B, K, T, T))."""
    b, t, _ = x.shape
    d = attention.head_dim

    def heads(projection):
        return projection(x).view(b, t, -1, d).transpose(1, 2)  # (B, T, K * d) -> (B, K, T, d)

    q = apply_rope(heads(attention.q_proj), cos, sin)
    k = apply_rope(heads(attention.k_proj), cos, sin)
    v = heads(attention.v_proj)
    scores = q @ k.transpose(-1, -2) / math.sqrt(d)  # (B, K, T, T)
    scores = scores.masked_fill(~causal_mask(t, device=x.device), float("-inf"))
    weights = scores.softmax(dim=-1)  # (B, K, T, T): row i sums to 1 over keys j <= i
    mixed = (weights @ v).transpose(1, 2).reshape(b, t, -1)  # (B, K, T, d) -> (B, T, K * d)
    return attention.o_proj(mixed), weights


def swiglu_mlp(mlp, x: torch.Tensor) -> torch.Tensor:
    """Llama's MLP: down(silu(gate(x)) * up(x)); the gate decides, per hidden unit, how much of
    up(x) passes. (B, T, D) -> (B, T, D)."""
    return mlp.down_proj(F.silu(mlp.gate_proj(x)) * mlp.up_proj(x))


def decoder_block_by_hand(layer, x: torch.Tensor, cos: torch.Tensor, sin: torch.Tensor):
    """One `LlamaDecoderLayer` in its order: norm -> attention -> residual -> norm -> MLP ->
    residual. The norms only feed the branches; the residual stream itself is never normalized.
    x (B, T, D) -> (B, T, D)."""
    eps = layer.input_layernorm.variance_epsilon
    attended, _ = attention_by_hand(
        layer.self_attn, rms_norm(x, layer.input_layernorm.weight, eps), cos, sin
    )
    x = x + attended
    eps = layer.post_attention_layernorm.variance_epsilon
    return x + swiglu_mlp(layer.mlp, rms_norm(x, layer.post_attention_layernorm.weight, eps))
