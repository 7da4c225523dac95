"""The language model side: a tiny Llama (`LlamaForCausalLM`) over the course's vocabulary.

Lessons 05-07 use it. The course's VLMs train it from scratch together with the projector; any
Llama-architecture model with its tokenizer (`HuggingFaceTB/SmolLM2-135M`, a local folder) takes its
place through `MultimodalModel.from_names`. Input and output embeddings are tied, as in small
Llamas.
"""

from __future__ import annotations

from dataclasses import dataclass

__all__ = ["LanguageConfig", "build_language_model"]


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
