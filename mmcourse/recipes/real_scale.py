"""The two-stage recipe at the scale of real weights, without downloading them.

`openai/clip-vit-base-patch32` and `HuggingFaceTB/SmolLM2-135M` (and `-Instruct`) are what a learner
with the real weights runs lesson 09's recipe on:

    mmcourse train shapes-vlm-aligned --vision PATH/clip-vit-base-patch32 \\
        --language PATH/SmolLM2-135M --merge 1 --run-dir runs/aligned-real
    mmcourse train shapes-vlm-lora --vision PATH/clip-vit-base-patch32 \\
        --language PATH/SmolLM2-135M --merge 1 --start-from runs/aligned-real/last

This module writes folders with *those exact configurations* and random weights, and a byte-level
BPE tokenizer in SmolLM2's layout (its special tokens; the Instruct chat template), so the
mechanics (shapes, which parameters train, saving, reloading, generating) and the memory and time
per step are tested offline. Nothing here is a trained model.
"""

from __future__ import annotations

import resource
import time
from pathlib import Path

import torch

from .. import checkpoints, data

__all__ = [
    "CLIP_VIT_B32_VISION",
    "SMOLLM2_135M",
    "SMOLLM2_CHAT_TEMPLATE",
    "random_clip_folder",
    "random_llama_folder",
    "step_cost",
]

#: `openai/clip-vit-base-patch32`'s vision tower (its `vision_config`).
CLIP_VIT_B32_VISION = {
    "hidden_size": 768,
    "intermediate_size": 3072,
    "num_hidden_layers": 12,
    "num_attention_heads": 12,
    "image_size": 224,
    "patch_size": 32,
    "projection_dim": 512,
    "hidden_act": "quick_gelu",
    "layer_norm_eps": 1e-5,
}

#: `HuggingFaceTB/SmolLM2-135M`'s `config.json` (the Instruct model differs only in its tokens).
SMOLLM2_135M = {
    "vocab_size": 49152,
    "hidden_size": 576,
    "intermediate_size": 1536,
    "num_hidden_layers": 30,
    "num_attention_heads": 9,
    "num_key_value_heads": 3,
    "head_dim": 64,
    "hidden_act": "silu",
    "max_position_embeddings": 8192,
    "rms_norm_eps": 1e-5,
    "rope_theta": 100000.0,
    "initializer_range": 0.041666666666666664,
    "tie_word_embeddings": True,
    "bos_token_id": 0,
    "eos_token_id": 0,
}

#: ChatML, as SmolLM2-Instruct's tokenizer has it (without its default system prompt).
SMOLLM2_CHAT_TEMPLATE = (
    "{% for message in messages %}<|im_start|>{{ message['role'] }}\n"
    "{{ message['content'] }}<|im_end|>\n{% endfor %}"
    "{% if add_generation_prompt %}<|im_start|>assistant\n{% endif %}"
)

_SPECIAL = ("<|endoftext|>", "<|im_start|>", "<|im_end|>")


def random_clip_folder(folder: str | Path, seed: int = 0) -> Path:
    """A `CLIPVisionModel` folder of ViT-B/32's configuration with random weights, and CLIP's own
    image processor (224 px)."""
    with checkpoints.quiet_transformers():
        from transformers import CLIPImageProcessor, CLIPVisionConfig, CLIPVisionModel

    folder = Path(folder)
    torch.manual_seed(seed)
    CLIPVisionModel(CLIPVisionConfig(**CLIP_VIT_B32_VISION)).save_pretrained(folder)
    size = CLIP_VIT_B32_VISION["image_size"]
    CLIPImageProcessor(
        size={"shortest_edge": size}, crop_size={"height": size, "width": size}
    ).save_pretrained(folder)
    return folder


def _bpe_tokenizer(instruct: bool):
    """A byte-level BPE tokenizer with SmolLM2's special tokens at ids 0-2, trained on the shapes
    world's text (a few hundred merges; the model's 49,152 ids leave room)."""
    from tokenizers import Tokenizer, decoders, models, pre_tokenizers, trainers
    from transformers import PreTrainedTokenizerFast

    core = Tokenizer(models.BPE())
    core.pre_tokenizer = pre_tokenizers.ByteLevel(add_prefix_space=False)
    core.decoder = decoders.ByteLevel()
    corpus = []
    for i in range(300):
        scene, qa = data.qa_example(i)
        corpus += [data.caption(scene), qa.question, qa.answer]
    trainer = trainers.BpeTrainer(
        vocab_size=600,
        special_tokens=list(_SPECIAL),
        initial_alphabet=pre_tokenizers.ByteLevel.alphabet(),
    )
    core.train_from_iterator(corpus, trainer)
    end = "<|im_end|>" if instruct else "<|endoftext|>"
    tokenizer = PreTrainedTokenizerFast(
        tokenizer_object=core,
        bos_token="<|im_start|>" if instruct else "<|endoftext|>",
        eos_token=end,
        pad_token=end,
        unk_token="<|endoftext|>",
        model_max_length=8192,
    )
    if instruct:
        tokenizer.chat_template = SMOLLM2_CHAT_TEMPLATE
    return tokenizer


def random_llama_folder(folder: str | Path, instruct: bool = False, seed: int = 0) -> Path:
    """A `LlamaForCausalLM` folder of SmolLM2-135M's configuration with random weights and a
    tokenizer in its layout (`instruct=True`: SmolLM2-135M-Instruct's tokens and chat template)."""
    with checkpoints.quiet_transformers():
        from transformers import LlamaConfig, LlamaForCausalLM

    folder = Path(folder)
    tokens = {"bos_token_id": 1, "eos_token_id": 2, "pad_token_id": 2} if instruct else {}
    torch.manual_seed(seed)
    LlamaForCausalLM(LlamaConfig(**{**SMOLLM2_135M, **tokens})).save_pretrained(folder)
    _bpe_tokenizer(instruct).save_pretrained(folder)
    return folder


def step_cost(recipe, steps: int = 3, warmup: int = 1) -> dict:
    """Median seconds per training step of a two-stage recipe, and the peak memory (the process's
    resident set on a CPU; allocated memory on a GPU). The model is built, nothing is saved."""
    from ..recipes.two_stage import build, stage_batch
    from ..vlm import answer_loss

    model = build(recipe).train()
    params = [p for p in model.parameters() if p.requires_grad]
    optimizer = torch.optim.AdamW(params, lr=recipe.train.lr)
    cuda = model.device.type == "cuda"
    if cuda:
        torch.cuda.reset_peak_memory_stats()
    times = []
    for step in range(warmup + steps):
        start = time.perf_counter()
        images, questions, answers = stage_batch(step, recipe, range(recipe.train.batch_size))
        batch = model.training_batch(questions, answers)
        labels = batch.pop("labels")
        logits = model(model.pixel_values(images), **batch).logits
        loss = answer_loss(logits, model.full_labels(labels))
        optimizer.zero_grad(set_to_none=True)
        loss.backward()
        optimizer.step()
        if cuda:
            torch.cuda.synchronize()
        if step >= warmup:
            times.append(time.perf_counter() - start)
    peak = (
        torch.cuda.max_memory_allocated() / 2**20
        if cuda
        else resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024
    )
    return {
        "seconds_per_step": sorted(times)[len(times) // 2],
        "peak_mib": peak,
        "trained": sum(p.numel() for p in params),
        "total": sum(p.numel() for p in model.parameters()),
        "image_tokens": model.num_image_tokens,
        "device": str(model.device),
    }
