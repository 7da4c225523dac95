"""The multimodal model: a vision tower, a projector and a causal language model that reads
`inputs_embeds`.

Lessons 05-07 teach it. `image_tokens="patches"` feeds the N patch tokens of `last_hidden_state`
(without [CLS]); with `merge=m` each m x m block of them is first concatenated into one token (pixel
shuffle, as nanoVLM and SmolVLM do), so N / m^2 tokens reach the projector. `"cls"` feeds one token,
the post-layernorm [CLS] (`pooler_output`). The model saves to, and loads from, a self-contained
folder of plain Hugging Face parts.
"""

from __future__ import annotations

import json
from dataclasses import asdict, dataclass
from pathlib import Path

import torch
from torch import nn

from .. import checkpoints, data, projection, vision
from ..utils import get_device
from .inputs import IGNORE_INDEX, join_inputs, text_row

__all__ = ["CONFIG_NAME", "IMAGE_TOKEN_KINDS", "MultimodalModel", "VLMConfig", "load"]

CONFIG_NAME = "mmcourse_vlm.json"
IMAGE_TOKEN_KINDS = ("patches", "cls")


@dataclass(frozen=True)
class VLMConfig:
    """What is not inside the two Hugging Face models: how they are joined, and which parts
    train."""

    image_tokens: str = "patches"
    projector: str = "mlp"
    layer: int = -1  # vision hidden state fed to the LM: -1 last, -2 penultimate (LLaVA)
    # patches: 1 = one image token per patch (LLaVA); 3 = each 3x3 block is one token (pixel
    # shuffle)
    merge: int = 1
    freeze_vision: bool = True
    freeze_projector: bool = False
    freeze_language: bool = False

    def __post_init__(self) -> None:
        if self.image_tokens not in IMAGE_TOKEN_KINDS:
            raise ValueError(f"image_tokens must be 'patches' or 'cls', got {self.image_tokens!r}.")
        if self.projector not in projection.KINDS:
            raise ValueError(
                f"projector must be one of {projection.KINDS}, got {self.projector!r}."
            )
        if self.image_tokens == "cls" and self.layer != -1:
            raise ValueError("image_tokens='cls' uses the final pooled [CLS]; layer must stay -1.")
        if not isinstance(self.merge, int) or self.merge < 1:
            raise ValueError(
                f"merge must be a positive int (1: one image token per patch), got {self.merge!r}."
            )
        if self.image_tokens == "cls" and self.merge != 1:
            raise ValueError(
                "image_tokens='cls' is one token; there is nothing to merge (use merge=1)."
            )


class MultimodalModel(nn.Module):
    """A `CLIPVisionModel`, a projector and a `LlamaForCausalLM` (any causal LM that takes
    `inputs_embeds`)."""

    def __init__(
        self,
        vision_model,
        language_model,
        projector: nn.Module | None,
        tokenizer,
        image_tokens: str | None = None,
        config: VLMConfig | None = None,
        processor=None,
    ) -> None:
        super().__init__()
        # the vision tower's CLIPImageProcessor; without one, CLIP's own preprocessing at the
        # tower's size
        self.processor = processor or vision.default_processor(vision_model.config.image_size)
        if config is None:
            config = VLMConfig(image_tokens=image_tokens or "patches")
        elif image_tokens is not None and image_tokens != config.image_tokens:
            raise ValueError(
                f"image_tokens={image_tokens!r} but config.image_tokens={config.image_tokens!r}; "
                "give one."
            )
        self.config = config
        self.vision_model = vision_model
        self.language_model = language_model
        # what one image token is before projecting
        vision_width = vision_model.config.hidden_size * config.merge**2
        lm_hidden = language_model.config.hidden_size
        grid = vision_model.config.image_size // vision_model.config.patch_size
        if grid % config.merge:
            raise ValueError(
                f"merge={config.merge} does not divide the {grid} x {grid} patch grid of this "
                "vision tower."
            )
        self.projector = (
            projector
            if projector is not None
            else projection.make_projector(config.projector, vision_width, lm_hidden)
        )
        projection.check_fits(self.projector, vision_width, lm_hidden, config.merge)
        self.tokenizer = tokenizer
        if tokenizer.pad_token_id is None:
            raise ValueError(
                "the tokenizer has no pad token; set tokenizer.pad_token (e.g. to its EOS) first."
            )
        for part, frozen in (
            (self.vision_model, config.freeze_vision),
            (self.projector, config.freeze_projector),
            (self.language_model, config.freeze_language),
        ):
            part.requires_grad_(not frozen)

    @classmethod
    def from_names(
        cls,
        vision_name: str = "shapes-clip",
        language_name: str | None = None,
        projector: str = "mlp",
        image_tokens: str = "patches",
        tokenizer_name: str | None = None,
        **config,
    ) -> MultimodalModel:
        """The tutorial's constructor: a vision model name and a language model name (shipped,
        folder or hub id)."""
        with checkpoints.quiet_transformers():
            from transformers import (
                AutoTokenizer,
                CLIPImageProcessor,
                CLIPVisionModel,
                LlamaForCausalLM,
            )

        if language_name is None:
            raise ValueError(
                "give a language model: a Llama-architecture folder or hub id (language_name=...)."
            )
        vision = checkpoints.from_pretrained(CLIPVisionModel, vision_name)
        language = checkpoints.from_pretrained(LlamaForCausalLM, language_name)
        tokenizer = checkpoints.from_pretrained(AutoTokenizer, tokenizer_name or language_name)
        if tokenizer.pad_token is None:
            tokenizer.pad_token = tokenizer.eos_token
        processor = checkpoints.from_pretrained(CLIPImageProcessor, vision_name)
        vlm_config = VLMConfig(image_tokens=image_tokens, projector=projector, **config)
        return cls(vision, language, None, tokenizer, image_tokens, vlm_config, processor).to(
            get_device()
        )

    @property
    def device(self) -> torch.device:
        return next(self.language_model.parameters()).device

    @property
    def num_image_tokens(self) -> int:
        if self.config.image_tokens == "cls":
            return 1
        return (
            self.vision_model.config.image_size
            // self.vision_model.config.patch_size
            // self.config.merge
        ) ** 2

    # --- the pieces of a forward pass -------------------------------------------------------------

    def pixel_values(self, images) -> torch.Tensor:
        """What the vision tower reads: images (PIL, arrays, any mode) -> (B, 3, H, W) through its
        processor."""
        return vision.pixel_values(images, self.processor, self.vision_model.config.image_size)

    def encode_image(self, pixel_values: torch.Tensor) -> torch.Tensor:
        """Image tokens in the LM's space: (B, 3, H, W) -> (B, N_img, D_lm); N_img = N / merge^2
        patch tokens or 1 [CLS]."""
        pixel_values = pixel_values.to(self.device)
        with torch.set_grad_enabled(torch.is_grad_enabled() and not self.config.freeze_vision):
            out = self.vision_model(
                pixel_values=pixel_values, output_hidden_states=self.config.layer != -1
            )
            if self.config.image_tokens == "cls":
                features = out.pooler_output[:, None]  # (B, 1, D_v)
            else:
                hidden = (
                    out.last_hidden_state
                    if self.config.layer == -1
                    else out.hidden_states[self.config.layer]
                )
                # (B, N / m^2, m^2 D_v)
                features = projection.pixel_shuffle(hidden[:, 1:], self.config.merge)
        return self.projector(features)  # (B, N_img, D_lm)

    def embed_text(self, input_ids: torch.Tensor) -> torch.Tensor:
        return self.language_model.get_input_embeddings()(input_ids.to(self.device))  # (B, T, D_lm)

    def forward(
        self,
        pixel_values: torch.Tensor,
        input_ids: torch.Tensor,
        attention_mask: torch.Tensor,
        labels: torch.Tensor | None = None,
    ):
        """Image tokens, then the (right-padded) text: the LM's output, with the loss when `labels`
        are given."""
        joined = join_inputs(
            self.encode_image(pixel_values), self.embed_text(input_ids), attention_mask, labels
        )
        return self.language_model(**joined)

    def full_labels(self, labels: torch.Tensor) -> torch.Tensor:
        """Text labels (B, T) -> labels over the whole sequence (B, N_img + T): -100 on the image
        positions."""
        ignore = torch.full(
            (labels.shape[0], self.num_image_tokens),
            IGNORE_INDEX,
            dtype=labels.dtype,
            device=self.device,
        )
        return torch.cat([ignore, labels.to(self.device)], dim=1)

    # --- text in and out
    # ---------------------------------------------------------------------------

    def prompt_ids(self, question: str) -> list[int]:
        """The prompt after the image: [BOS] question [EOS] with the course tokenizer (its
        template); with a tokenizer that has a chat template (an instruct model's), the question as
        the user's turn and the assistant's turn opened, as LLaVA does."""
        text = data.normalize_question(question) if question else ""
        if getattr(self.tokenizer, "chat_template", None):
            return list(
                self.tokenizer.apply_chat_template(
                    [{"role": "user", "content": text}],
                    add_generation_prompt=True,
                    tokenize=True,
                    return_dict=False,
                )
            )
        return list(self.tokenizer(text)["input_ids"])

    def answer_ids(self, answer: str) -> list[int]:
        return [
            *self.tokenizer(answer, add_special_tokens=False)["input_ids"],
            self.tokenizer.eos_token_id,
        ]

    def training_batch(self, questions: list[str], answers: list[str]) -> dict[str, torch.Tensor]:
        """Right-padded `input_ids`, `attention_mask` and `labels` (-100 on the prompt and padding).
        (B, T)"""
        if not questions:
            raise ValueError(
                'no examples: give at least one question ("" for a caption) and its answer.'
            )
        # the answer's words; text_row appends the [EOS] (answer_ids(a) = these + [EOS])
        pairs = [
            (self.prompt_ids(q), self.answer_ids(a)[:-1])
            for q, a in zip(questions, answers, strict=True)
        ]
        length = max(len(p) + len(a) + 1 for p, a in pairs)
        eos, pad = self.tokenizer.eos_token_id, self.tokenizer.pad_token_id
        rows = [text_row(prompt, answer, eos, pad, length) for prompt, answer in pairs]
        ids, mask, labels = (torch.stack(part) for part in zip(*rows))  # each (B, T)
        return {"input_ids": ids, "attention_mask": mask, "labels": labels}

    def generation_inputs(
        self, pixel_values: torch.Tensor, questions: list[str]
    ) -> dict[str, torch.Tensor]:
        """Left-padded `inputs_embeds` (B, L, D) and `attention_mask` (B, L): image tokens, then
        each prompt."""
        image = self.encode_image(pixel_values)  # (B, N_img, D)
        prompts = [
            torch.tensor(self.prompt_ids(q), dtype=torch.long, device=self.device)
            for q in questions
        ]  # an empty prompt (a tokenizer without [BOS]) is an empty int tensor
        length = image.shape[1] + max(len(p) for p in prompts)
        pad_embedding = self.embed_text(torch.tensor([self.tokenizer.pad_token_id]))[0]  # (D,)
        embeds = pad_embedding.expand(len(prompts), length, -1).clone()  # (B, L, D)
        mask = torch.zeros(len(prompts), length, dtype=torch.long, device=self.device)
        for i, prompt in enumerate(prompts):
            # (N_img + T_i, D)
            sequence = torch.cat([image[i], self.embed_text(prompt[None])[0]], dim=0)
            embeds[i, length - len(sequence) :] = sequence
            mask[i, length - len(sequence) :] = 1
        return {"inputs_embeds": embeds, "attention_mask": mask}

    # --- saving and loading
    # ------------------------------------------------------------------------

    def save_pretrained(self, folder: str | Path, clip_sha256: str | None = None) -> None:
        """A self-contained folder: vision/ (with its processor), language/ (with the tokenizer),
        the projector."""
        from safetensors.torch import save_file

        folder = Path(folder)
        with checkpoints.quiet_transformers():
            self.vision_model.save_pretrained(folder / "vision")
            self.processor.save_pretrained(folder / "vision")
            self.language_model.save_pretrained(folder / "language")
        self.tokenizer.save_pretrained(folder / "language")
        save_file(
            {k: v.detach().cpu().contiguous() for k, v in self.projector.state_dict().items()},
            folder / "projector.safetensors",
        )
        (folder / CONFIG_NAME).write_text(
            json.dumps({**asdict(self.config), "clip_sha256": clip_sha256}, indent=1) + "\n"
        )

    @classmethod
    def from_pretrained(
        cls, folder: str | Path, device: torch.device | str | None = None
    ) -> MultimodalModel:
        from safetensors.torch import load_file

        with checkpoints.quiet_transformers():
            from transformers import (
                AutoTokenizer,
                CLIPImageProcessor,
                CLIPVisionModel,
                LlamaForCausalLM,
            )

        folder = Path(folder)
        if not (folder / CONFIG_NAME).is_file():
            raise checkpoints.CheckpointError(
                f"{folder} is not an mmcourse VLM folder (no {CONFIG_NAME})."
            )
        saved = json.loads((folder / CONFIG_NAME).read_text())
        saved.pop("clip_sha256", None)
        config = VLMConfig(**saved)
        vision = checkpoints.from_pretrained(CLIPVisionModel, folder / "vision")
        language = checkpoints.from_pretrained(LlamaForCausalLM, folder / "language")
        tokenizer = checkpoints.from_pretrained(AutoTokenizer, folder / "language")
        processor = None
        if (folder / "vision" / "preprocessor_config.json").is_file():
            processor = checkpoints.from_pretrained(CLIPImageProcessor, folder / "vision")
        model = cls(vision, language, None, tokenizer, config.image_tokens, config, processor)
        model.projector.load_state_dict(load_file(folder / "projector.safetensors"))
        return model.to(torch.device(device) if device is not None else get_device()).eval()


def load(name: str, device: torch.device | str | None = None) -> MultimodalModel:
    """A VLM by name: a shipped one ("shapes-vlm-patches") or a folder written by
    `save_pretrained`."""
    return MultimodalModel.from_pretrained(checkpoints.resolve(name), device)
