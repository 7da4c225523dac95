"""The multimodal model: vision encoder -> projection -> a Llama language model reading `inputs_embeds`.

Lessons 05-07 teach it. The token sequence the language model reads, for one example:

    [image tokens: N projected vectors] [BOS] question [EOS] answer [EOS]
     attention mask: 1 on every one of them (the image positions too), 0 on padding
     labels:         -100 on the image and the prompt; the answer's ids and its [EOS] (the loss is only there)

`image_tokens="patches"` feeds the N patch tokens of `last_hidden_state` (without [CLS]); with `merge=m` each
m x m block of them is first concatenated into one token (pixel shuffle, as nanoVLM and SmolVLM do), so N / m^2
tokens reach the projector. `"cls"` feeds one token, the post-layernorm [CLS] (`pooler_output`). Captioning is
the same with an empty question.

The shipped `shapes-vlm-patches` merges 3 x 3 blocks: 9 image tokens, one per cell of the scene. With all 81 patch
tokens (merge=1) the tiny language model learned to caption but stalled on questions that must find an object by
its attributes (3000 steps: position 76 %, exists 44 %, questions overall 74 %); with one whole object per token
it learns them.

Doing right what the tutorial's sample code gets wrong: all patch tokens, not one [CLS]; the image positions in the
attention mask; labels -100 outside the answer; decoding through the tokenizer, not the model; `max_new_tokens`,
not `max_length`. Batches are left-padded for generation, so every prompt ends where generation starts.
"""

from __future__ import annotations

import json
import warnings
from dataclasses import asdict, dataclass
from pathlib import Path

import torch
from torch import nn

from . import checkpoints, data, projection
from .train import TrainConfig
from .utils import get_device

IGNORE_INDEX = -100
CONFIG_NAME = "mmcourse_vlm.json"
IMAGE_TOKEN_KINDS = ("patches", "cls")


@dataclass(frozen=True)
class VLMConfig:
    """What is not inside the two Hugging Face models: how they are joined, and which parts train."""

    image_tokens: str = "patches"
    projector: str = "mlp"
    layer: int = -1  # vision hidden state fed to the LM: -1 last, -2 penultimate (LLaVA)
    merge: int = 1  # patches: 1 = one image token per patch (LLaVA); 3 = each 3x3 block is one token (pixel shuffle)
    freeze_vision: bool = True
    freeze_projector: bool = False
    freeze_language: bool = False

    def __post_init__(self) -> None:
        if self.image_tokens not in IMAGE_TOKEN_KINDS:
            raise ValueError(f"image_tokens must be 'patches' or 'cls', got {self.image_tokens!r}.")
        if self.projector not in projection.KINDS:
            raise ValueError(f"projector must be one of {projection.KINDS}, got {self.projector!r}.")
        if self.image_tokens == "cls" and self.layer != -1:
            raise ValueError("image_tokens='cls' uses the final pooled [CLS]; layer must stay -1.")
        if not isinstance(self.merge, int) or self.merge < 1:
            raise ValueError(f"merge must be a positive int (1: one image token per patch), got {self.merge!r}.")
        if self.image_tokens == "cls" and self.merge != 1:
            raise ValueError("image_tokens='cls' is one token; there is nothing to merge (use merge=1).")


def join_inputs(image_embeds: torch.Tensor, text_embeds: torch.Tensor, attention_mask: torch.Tensor,
                labels: torch.Tensor | None = None) -> dict[str, torch.Tensor]:  # fmt: skip
    """What the language model reads: image tokens first, then the text. Lesson 05 builds it step by step.

    image_embeds (B, N, D) and text_embeds (B, T, D) -> `inputs_embeds` (B, N + T, D); the text's attention_mask
    (B, T) -> (B, N + T) with 1 on every image position (the tutorial forgets them: the model then cannot see the
    image); labels (B, T) -> (B, N + T) with -100 on the image positions (nothing to predict there).
    """
    if image_embeds.shape[-1] != text_embeds.shape[-1]:
        raise ValueError(f"image tokens are {image_embeds.shape[-1]} wide but the word embeddings are "
                         f"{text_embeds.shape[-1]}: project the image tokens to the LM's hidden size first.")  # fmt: skip
    b, n_img, _ = image_embeds.shape
    device = text_embeds.device
    inputs_embeds = torch.cat([image_embeds.to(device, text_embeds.dtype), text_embeds], dim=1)  # (B, N + T, D)
    ones = torch.ones(b, n_img, dtype=attention_mask.dtype, device=device)
    joined = {"inputs_embeds": inputs_embeds, "attention_mask": torch.cat([ones, attention_mask.to(device)], dim=1)}
    if labels is not None:
        ignore = torch.full((b, n_img), IGNORE_INDEX, dtype=labels.dtype, device=device)
        joined["labels"] = torch.cat([ignore, labels.to(device)], dim=1)  # (B, N + T)
    return joined


def text_row(prompt_ids: list[int], answer_ids: list[int], eos_id: int, pad_id: int,
             length: int) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:  # fmt: skip
    """One right-padded training row: prompt, answer, [EOS], then padding up to `length`. Lesson 05 builds it.

    -> `input_ids`, `attention_mask` (1 on the text, 0 on padding) and `labels`, each (length,) int64. The labels
    are the answer's ids and its [EOS] at their own positions (the language model shifts them itself), -100 on the
    prompt (given, not predicted) and on the padding. `answer_ids` are the answer's words, without the [EOS].
    """
    sequence = [*prompt_ids, *answer_ids, eos_id]
    if len(sequence) > length:
        raise ValueError(f"the prompt, answer and [EOS] are {len(sequence)} tokens; they do not fit in length={length}.")
    ids = torch.full((length,), pad_id, dtype=torch.long)
    mask = torch.zeros(length, dtype=torch.long)
    labels = torch.full((length,), IGNORE_INDEX, dtype=torch.long)
    ids[: len(sequence)] = torch.tensor(sequence, dtype=torch.long)
    mask[: len(sequence)] = 1
    labels[len(prompt_ids) : len(sequence)] = torch.tensor([*answer_ids, eos_id], dtype=torch.long)
    return ids, mask, labels


class MultimodalModel(nn.Module):
    """A `CLIPVisionModel`, a projector and a `LlamaForCausalLM` (any causal LM that takes `inputs_embeds`)."""

    def __init__(self, vision_model, language_model, projector: nn.Module | None, tokenizer,
                 image_tokens: str | None = None, config: VLMConfig | None = None, processor=None) -> None:  # fmt: skip
        super().__init__()
        self.processor = processor  # the vision tower's CLIPImageProcessor; None: CLIP's defaults at its size
        if config is None:
            config = VLMConfig(image_tokens=image_tokens or "patches")
        elif image_tokens is not None and image_tokens != config.image_tokens:
            raise ValueError(f"image_tokens={image_tokens!r} but config.image_tokens={config.image_tokens!r}; give one.")
        self.config = config
        self.vision_model = vision_model
        self.language_model = language_model
        vision_width = vision_model.config.hidden_size * config.merge**2  # what one image token is before projecting
        lm_hidden = language_model.config.hidden_size
        grid = vision_model.config.image_size // vision_model.config.patch_size
        if grid % config.merge:
            raise ValueError(f"merge={config.merge} does not divide the {grid} x {grid} patch grid of this vision tower.")
        self.projector = projector if projector is not None else projection.make_projector(config.projector, vision_width, lm_hidden)
        projection.check_fits(self.projector, vision_width, lm_hidden, config.merge)
        self.tokenizer = tokenizer
        if tokenizer.pad_token_id is None:
            raise ValueError("the tokenizer has no pad token; set tokenizer.pad_token (e.g. to its EOS) first.")
        for part, frozen in ((self.vision_model, config.freeze_vision), (self.projector, config.freeze_projector),
                             (self.language_model, config.freeze_language)):  # fmt: skip
            part.requires_grad_(not frozen)

    @classmethod
    def from_names(cls, vision_name: str = "shapes-clip", language_name: str | None = None, projector: str = "mlp",
                   image_tokens: str = "patches", tokenizer_name: str | None = None, **config) -> MultimodalModel:  # fmt: skip
        """The tutorial's constructor: a vision model name and a language model name (shipped, folder or hub id)."""
        with checkpoints.quiet_transformers():
            from transformers import AutoTokenizer, CLIPImageProcessor, CLIPVisionModel, LlamaForCausalLM

        if language_name is None:
            raise ValueError("give a language model: a Llama-architecture folder or hub id (language_name=...).")
        vision = checkpoints.from_pretrained(CLIPVisionModel, vision_name)
        language = checkpoints.from_pretrained(LlamaForCausalLM, language_name)
        tokenizer = checkpoints.from_pretrained(AutoTokenizer, tokenizer_name or language_name)
        if tokenizer.pad_token is None:
            tokenizer.pad_token = tokenizer.eos_token
        processor = checkpoints.from_pretrained(CLIPImageProcessor, vision_name)
        vlm_config = VLMConfig(image_tokens=image_tokens, projector=projector, **config)
        return cls(vision, language, None, tokenizer, image_tokens, vlm_config, processor).to(get_device())

    @property
    def device(self) -> torch.device:
        return next(self.language_model.parameters()).device

    @property
    def num_image_tokens(self) -> int:
        if self.config.image_tokens == "cls":
            return 1
        return (self.vision_model.config.image_size // self.vision_model.config.patch_size // self.config.merge) ** 2

    # --- the pieces of a forward pass -------------------------------------------------------------

    def encode_image(self, pixel_values: torch.Tensor) -> torch.Tensor:
        """Image tokens in the LM's space: (B, 3, H, W) -> (B, N_img, D_lm); N_img = N / merge^2 patch tokens or 1 [CLS]."""
        pixel_values = pixel_values.to(self.device)
        with torch.set_grad_enabled(torch.is_grad_enabled() and not self.config.freeze_vision):
            out = self.vision_model(pixel_values=pixel_values, output_hidden_states=self.config.layer != -1)
            if self.config.image_tokens == "cls":
                features = out.pooler_output[:, None]  # (B, 1, D_v)
            else:
                hidden = out.last_hidden_state if self.config.layer == -1 else out.hidden_states[self.config.layer]
                features = projection.pixel_shuffle(hidden[:, 1:], self.config.merge)  # (B, N / m^2, m^2 D_v)
        return self.projector(features)  # (B, N_img, D_lm)

    def embed_text(self, input_ids: torch.Tensor) -> torch.Tensor:
        return self.language_model.get_input_embeddings()(input_ids.to(self.device))  # (B, T, D_lm)

    def forward(self, pixel_values: torch.Tensor, input_ids: torch.Tensor, attention_mask: torch.Tensor,
                labels: torch.Tensor | None = None):  # fmt: skip
        """Image tokens, then the (right-padded) text: the LM's output, with the loss when `labels` are given."""
        joined = join_inputs(self.encode_image(pixel_values), self.embed_text(input_ids), attention_mask, labels)
        return self.language_model(**joined)

    def full_labels(self, labels: torch.Tensor) -> torch.Tensor:
        """Text labels (B, T) -> labels over the whole sequence (B, N_img + T): -100 on the image positions."""
        ignore = torch.full((labels.shape[0], self.num_image_tokens), IGNORE_INDEX, dtype=labels.dtype, device=self.device)
        return torch.cat([ignore, labels.to(self.device)], dim=1)

    # --- text in and out ---------------------------------------------------------------------------

    def prompt_ids(self, question: str) -> list[int]:
        """The prompt after the image: [BOS] question [EOS] with the course tokenizer (its template)."""
        return list(self.tokenizer(data.normalize_question(question) if question else "")["input_ids"])

    def answer_ids(self, answer: str) -> list[int]:
        return [*self.tokenizer(answer, add_special_tokens=False)["input_ids"], self.tokenizer.eos_token_id]

    def training_batch(self, questions: list[str], answers: list[str]) -> dict[str, torch.Tensor]:
        """Right-padded `input_ids`, `attention_mask` and `labels` (-100 on the prompt and padding). (B, T)"""
        if not questions:
            raise ValueError("no examples: give at least one question (\"\" for a caption) and its answer.")
        # the answer's words; text_row appends the [EOS] (answer_ids(a) = these + [EOS])
        pairs = [(self.prompt_ids(q), self.answer_ids(a)[:-1]) for q, a in zip(questions, answers, strict=True)]
        length = max(len(p) + len(a) + 1 for p, a in pairs)
        eos, pad = self.tokenizer.eos_token_id, self.tokenizer.pad_token_id
        rows = [text_row(prompt, answer, eos, pad, length) for prompt, answer in pairs]
        ids, mask, labels = (torch.stack(part) for part in zip(*rows))  # each (B, T)
        return {"input_ids": ids, "attention_mask": mask, "labels": labels}

    def generation_inputs(self, pixel_values: torch.Tensor, questions: list[str]) -> dict[str, torch.Tensor]:
        """Left-padded `inputs_embeds` (B, L, D) and `attention_mask` (B, L): image tokens, then each prompt."""
        image = self.encode_image(pixel_values)  # (B, N_img, D)
        prompts = [torch.tensor(self.prompt_ids(q), device=self.device) for q in questions]
        length = image.shape[1] + max(len(p) for p in prompts)
        pad_embedding = self.embed_text(torch.tensor([self.tokenizer.pad_token_id]))[0]  # (D,)
        embeds = pad_embedding.expand(len(prompts), length, -1).clone()  # (B, L, D)
        mask = torch.zeros(len(prompts), length, dtype=torch.long, device=self.device)
        for i, prompt in enumerate(prompts):
            sequence = torch.cat([image[i], self.embed_text(prompt[None])[0]], dim=0)  # (N_img + T_i, D)
            embeds[i, length - len(sequence) :] = sequence
            mask[i, length - len(sequence) :] = 1
        return {"inputs_embeds": embeds, "attention_mask": mask}

    # --- saving and loading ------------------------------------------------------------------------

    def save_pretrained(self, folder: str | Path, clip_sha256: str | None = None) -> None:
        """A self-contained folder: vision/ (with its processor), language/ (with the tokenizer), the projector."""
        from safetensors.torch import save_file

        folder = Path(folder)
        with checkpoints.quiet_transformers():
            self.vision_model.save_pretrained(folder / "vision")
            if self.processor is not None:
                self.processor.save_pretrained(folder / "vision")
            self.language_model.save_pretrained(folder / "language")
        self.tokenizer.save_pretrained(folder / "language")
        save_file({k: v.detach().cpu().contiguous() for k, v in self.projector.state_dict().items()},
                  folder / "projector.safetensors")  # fmt: skip
        (folder / CONFIG_NAME).write_text(json.dumps({**asdict(self.config), "clip_sha256": clip_sha256}, indent=1) + "\n")

    @classmethod
    def from_pretrained(cls, folder: str | Path, device: torch.device | str | None = None) -> MultimodalModel:
        from safetensors.torch import load_file

        with checkpoints.quiet_transformers():
            from transformers import AutoTokenizer, CLIPImageProcessor, CLIPVisionModel, LlamaForCausalLM

        folder = Path(folder)
        if not (folder / CONFIG_NAME).is_file():
            raise checkpoints.CheckpointError(f"{folder} is not an mmcourse VLM folder (no {CONFIG_NAME}).")
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


def sequence_table(model: MultimodalModel, question: str, answer: str) -> dict[str, list]:
    """One training example as lesson 05 draws it: per position of the full sequence, the token's text, its kind
    ("image", "prompt", "answer", "pad"), the attention-mask value and the label (a token's text or "-100")."""
    batch = model.training_batch([question], [answer])
    n_img = model.num_image_tokens
    ids = batch["input_ids"][0].tolist()
    mask = [1] * n_img + batch["attention_mask"][0].tolist()
    labels = model.full_labels(batch["labels"])[0].tolist()
    prompt_length = len(model.prompt_ids(question))
    kinds = ["image"] * n_img + [
        "pad" if m == 0 else ("prompt" if i < prompt_length else "answer") for i, m in enumerate(batch["attention_mask"][0])
    ]  # fmt: skip
    tokens = [f"img{i}" for i in range(n_img)] + model.tokenizer.convert_ids_to_tokens(ids)
    label_text = ["-100" if t == IGNORE_INDEX else model.tokenizer.convert_ids_to_tokens(t) for t in labels]
    return {"tokens": tokens, "kinds": kinds, "attention_mask": mask, "labels": label_text}


def load(name: str, device: torch.device | str | None = None) -> MultimodalModel:
    """A VLM by name: a shipped one ("shapes-vlm-patches") or a folder written by `save_pretrained`."""
    return MultimodalModel.from_pretrained(checkpoints.resolve(name), device)


def answer_loss(logits: torch.Tensor, labels: torch.Tensor, per: str = "example") -> torch.Tensor:
    """Next-token cross-entropy on the labelled positions. logits (B, T, V), labels (B, T), image positions included.

    `per="token"` is Hugging Face's mean over every labelled token of the batch: a 3-object caption (24 labels with
    its [EOS]) then outweighs a one-word answer (2 labels) 12 to 1, and the model learns to caption long before it
    learns to answer. `per="example"`
    averages within each example first, so every caption and every answer counts the same.
    """
    if per not in ("token", "example"):
        raise ValueError(f"per must be 'token' or 'example', got {per!r}.")
    targets = labels[:, 1:].to(logits.device)  # (B, T-1): position t predicts token t+1
    losses = nn.functional.cross_entropy(
        logits[:, :-1].transpose(1, 2).float(), targets, ignore_index=IGNORE_INDEX, reduction="none"
    )  # (B, T-1)
    counted = (targets != IGNORE_INDEX).float()
    if counted.sum() == 0:
        raise ValueError("every label is -100: there is nothing to learn from (the loss would be 0 or NaN).")
    if per == "token":
        return (losses * counted).sum() / counted.sum()
    per_example = (losses * counted).sum(1) / counted.sum(1).clamp(min=1)  # (B,)
    has_labels = counted.sum(1) > 0
    return per_example[has_labels].mean()


# --- using a VLM ---------------------------------------------------------------------------------------


def pixel_values(model: MultimodalModel, images) -> torch.Tensor:
    """What the vision tower reads: images (PIL, uint8 HWC arrays, any mode) -> (B, 3, H, W) with its processor."""
    from .vision import to_rgb

    batch = list(images) if isinstance(images, (list, tuple)) else [images]
    rgb = [to_rgb(image) for image in batch]
    processor = model.processor
    if processor is None:
        with checkpoints.quiet_transformers():
            from transformers import CLIPImageProcessor

            size = model.vision_model.config.image_size
            processor = CLIPImageProcessor(size={"shortest_edge": size}, crop_size={"height": size, "width": size})
    return processor(images=rgb, return_tensors="pt")["pixel_values"]


@torch.no_grad()
def answer_logprobs(model: MultimodalModel, images, questions: list[str], answers: list[str]) -> torch.Tensor:
    """log p(answer + [EOS] | image, question) under the model, one per example: (B,). Lesson 06 scores decoders."""
    batch = model.training_batch(questions, answers)
    labels = model.full_labels(batch.pop("labels"))
    logits = model(pixel_values(model, images), **batch).logits.float()  # (B, L, V)
    targets = labels[:, 1:]
    logp = torch.log_softmax(logits[:, :-1], dim=-1).gather(-1, targets.clamp(min=0)[..., None])[..., 0]  # (B, L-1)
    return (logp * (targets != IGNORE_INDEX)).sum(dim=1).cpu()


def warn_unknown_words(model: MultimodalModel, text: str) -> list[str]:
    """Warn (and return them) about words the tokenizer maps to its unknown token: the model cannot read them."""
    unk = model.tokenizer.unk_token_id
    if unk is None:
        return []
    from .tokenizer import words

    unknown = [w for w in dict.fromkeys(words(text)) if unk in model.tokenizer(w, add_special_tokens=False)["input_ids"]]
    if unknown:
        warnings.warn(
            f"the model does not know the word(s) {unknown} in {text!r}: it reads them as {model.tokenizer.unk_token} "
            "and its answer is a guess. Ask in the words of the course's questions (see data.questions).",
            stacklevel=3,
        )
    return unknown


@torch.no_grad()
def _generate(model: MultimodalModel, images, questions: list[str], max_new_tokens: int, num_beams: int,
              do_sample: bool, **generate_kwargs) -> list[str]:  # fmt: skip
    model.eval()
    inputs = model.generation_inputs(pixel_values(model, images), questions)
    output = model.language_model.generate(
        **inputs, max_new_tokens=max_new_tokens, num_beams=num_beams, do_sample=do_sample,
        eos_token_id=model.tokenizer.eos_token_id, pad_token_id=model.tokenizer.pad_token_id, **generate_kwargs,
    )  # fmt: skip
    # with inputs_embeds only, generate returns just the new tokens
    return [text.strip() for text in model.tokenizer.batch_decode(output, skip_special_tokens=True)]


def generate_caption(model: MultimodalModel, image, max_new_tokens: int = 32, num_beams: int = 5,
                     do_sample: bool = False, **generate_kwargs):  # fmt: skip
    """The caption of one image (a str) or of a list of images (a list of str)."""
    images = image if isinstance(image, (list, tuple)) else [image]
    texts = _generate(model, images, [""] * len(images), max_new_tokens, num_beams, do_sample, **generate_kwargs)
    return texts if isinstance(image, (list, tuple)) else texts[0]


def visual_qa(model: MultimodalModel, image, question, max_new_tokens: int = 8, num_beams: int = 1,
              do_sample: bool = False, **generate_kwargs):  # fmt: skip
    """The answer to a question about an image (str), or to one question per image of a list (list of str)."""
    batch = isinstance(image, (list, tuple))
    images = image if batch else [image]
    questions = list(question) if isinstance(question, (list, tuple)) else [question] * len(images)
    if len(questions) != len(images):
        raise ValueError(f"{len(images)} images but {len(questions)} questions; give one question per image.")
    for q in dict.fromkeys(questions):
        warn_unknown_words(model, q)
    answers = _generate(model, images, questions, max_new_tokens, num_beams, do_sample, **generate_kwargs)
    return answers if batch else answers[0]


# --- the recipe of the shipped VLMs ----------------------------------------------------------------------


@dataclass(frozen=True)
class LanguageConfig:
    """A tiny Llama for the shapes world, trained from scratch (laptop defaults)."""

    hidden_size: int = 192
    layers: int = 4
    heads: int = 6
    intermediate_size: int = 512
    max_positions: int = 160  # 81 image tokens + the longest prompt and caption, with room to spare


def build_language_model(config: LanguageConfig = LanguageConfig()):
    """A randomly initialised `LlamaForCausalLM` over the course vocabulary, with tied input/output embeddings."""
    from transformers import LlamaConfig, LlamaForCausalLM

    from .tokenizer import VOCAB

    return LlamaForCausalLM(LlamaConfig(
        vocab_size=len(VOCAB), hidden_size=config.hidden_size, intermediate_size=config.intermediate_size,
        num_hidden_layers=config.layers, num_attention_heads=config.heads, num_key_value_heads=config.heads,
        max_position_embeddings=config.max_positions, tie_word_embeddings=True,
        bos_token_id=VOCAB["[BOS]"], eos_token_id=VOCAB["[EOS]"], pad_token_id=VOCAB["[PAD]"],
    ))  # fmt: skip


@dataclass(frozen=True)
class VLMRecipe:
    image_tokens: str = "patches"
    vision: str = "shapes-clip"
    language: LanguageConfig = LanguageConfig()
    projector: str = "mlp"
    merge: int = 3  # patches: each 3x3 block (one cell of the scene) is one image token; cls needs 1
    caption_share: float = 0.25  # the rest of each batch is balanced questions
    loss_per: str = "example"  # see answer_loss: per token, captions drown the one-word answers
    train: TrainConfig = TrainConfig(steps=5000, batch_size=64, lr=1e-3, warmup_steps=100, eval_every=500, save_every=250)


    def __post_init__(self) -> None:
        if self.image_tokens == "cls" and self.merge != 1:
            raise ValueError("the cls recipe reads one token; give merge=1 (or use vlm.recipe('cls')).")


def recipe(image_tokens: str = "patches") -> VLMRecipe:
    """The recipe of the shipped `shapes-vlm-<image_tokens>`: the patch model merges 3x3 blocks, cls reads one token."""
    return VLMRecipe(image_tokens=image_tokens, merge=3 if image_tokens == "patches" else 1)


def vlm_batch(step: int, recipe: VLMRecipe, batch_size: int) -> tuple[torch.Tensor, list[str], list[str]]:
    """The training batch of `step`: uint8 images (B, 3, H, W), prompts ("" for a caption) and targets."""
    captions = round(recipe.caption_share * batch_size)
    scenes, questions, answers = [], [], []
    for i in range(batch_size):
        seed = data.split_seed("train", step * batch_size + i)
        if i < captions:
            scene = data.random_scene(seed, pairs="seen")
            question, answer = "", data.caption(scene)
        else:
            scene, qa = data.qa_example(seed, pairs="seen")
            question, answer = qa.question, qa.answer
        scenes.append(scene)
        questions.append(question)
        answers.append(answer)
    return data.render_batch(scenes), questions, answers


def build_vlm(recipe: VLMRecipe) -> MultimodalModel:
    from .tokenizer import build_tokenizer

    with checkpoints.quiet_transformers():
        from transformers import CLIPImageProcessor, CLIPVisionModel

    vision = checkpoints.from_pretrained(CLIPVisionModel, recipe.vision)
    processor = checkpoints.from_pretrained(CLIPImageProcessor, recipe.vision)
    config = VLMConfig(image_tokens=recipe.image_tokens, projector=recipe.projector, merge=recipe.merge)
    return MultimodalModel(vision, build_language_model(recipe.language), None, build_tokenizer(),
                           recipe.image_tokens, config, processor).to(get_device())  # fmt: skip


def evaluate_vlm(model: MultimodalModel, n_questions: int = 500, n_captions: int = 200, split: str = "test",
                 start: int = 0, num_beams: int = 1, progress: bool = False) -> dict[str, float]:  # fmt: skip
    """Exact match per question kind (balanced questions, canonical forms), position by object count, and
    captions parsed back by object count, with BLEU-4. Keys like "vqa color", "vqa position (2 obj)", "caption all"."""
    from . import metrics

    was_training = model.training
    model.eval()
    examples = data.qa_examples(split, n_questions, start, pairs="seen")
    predictions = answer_questions(model, examples, num_beams, progress)
    out = {f"vqa {k}": v for k, v in data.accuracy_by_kind([qa for _, qa in examples], predictions).items()}
    for n in (1, 2, 3):
        rows = [(qa, p) for (s, qa), p in zip(examples, predictions) if qa.kind == "position" and len(s.objects) == n]
        if rows:
            out[f"vqa position ({n} obj)"] = sum(data.normalize_question(p) == qa.answer for qa, p in rows) / len(rows)
    scenes = data.scenes(split, n_captions, start + 50_000_000, pairs="seen")
    captions = caption_scenes(model, scenes, num_beams, progress)
    out.update({f"caption {k}": v for k, v in metrics.caption_accuracy(captions, scenes).items()})
    out["caption BLEU-4"] = metrics.bleu4(captions, [data.caption(s) for s in scenes])
    model.train(was_training)
    return out


def answer_questions(model: MultimodalModel, examples, num_beams: int = 1, progress: bool = False,
                     batch_size: int = 64) -> list[str]:  # fmt: skip
    """The model's answers to (scene, QA) examples, in batches."""
    from tqdm.auto import tqdm

    answers: list[str] = []
    for i in tqdm(range(0, len(examples), batch_size), desc="questions", disable=not progress):
        chunk = examples[i : i + batch_size]
        answers += visual_qa(model, [s.render() for s, _ in chunk], [qa.question for _, qa in chunk], num_beams=num_beams)
    return answers


def caption_scenes(model: MultimodalModel, scenes, num_beams: int = 1, progress: bool = False,
                   batch_size: int = 64) -> list[str]:  # fmt: skip
    """The model's captions of scenes, in batches."""
    from tqdm.auto import tqdm

    captions: list[str] = []
    for i in tqdm(range(0, len(scenes), batch_size), desc="captions", disable=not progress):
        captions += generate_caption(model, [s.render() for s in scenes[i : i + batch_size]], num_beams=num_beams)
    return captions


def baseline_scores(n_train: int = 20_000, n_questions: int = 500, split: str = "test", start: int = 0) -> dict[str, float]:
    """The two baselines' exact match per kind on the questions `evaluate_vlm` asks ("majority color", ...)."""
    train_items = [qa for _, qa in data.qa_examples("train", n_train, pairs="seen")]
    test_items = [qa for _, qa in data.qa_examples(split, n_questions, start, pairs="seen")]
    out = {}
    for name, baseline in (("majority", data.MajorityBaseline()), ("question-only", data.QuestionOnlyBaseline())):
        baseline.fit(train_items)
        scores = data.accuracy_by_kind(test_items, [baseline.predict(qa.question) for qa in test_items])
        out.update({f"{name} {k}": v for k, v in scores.items()})
    return out


def train_vlm(run_dir: str | Path, recipe: VLMRecipe = VLMRecipe(), eval_size: int = 200, progress: bool = True,
              stop_at: int | None = None):  # fmt: skip
    """Train (or resume) a shapes-world VLM on the frozen vision tower of `recipe.vision`; returns (model, result).

    Every `recipe.train.eval_every` steps and at the end, `eval_size` validation questions (and half as many
    captions) are scored; `eval_size=0` skips that."""
    from .train import record_recipe, train_loop
    from .utils import seed_everything
    from .vision import pixel_values_from_uint8

    config = recipe.train
    record_recipe(run_dir, asdict(recipe))
    seed_everything(config.seed)
    model = build_vlm(recipe)

    def step_loss(model, step):
        images, questions, answers = vlm_batch(step, recipe, config.batch_size)
        batch = model.training_batch(questions, answers)
        labels = batch.pop("labels")
        logits = model(pixel_values_from_uint8(images), **batch).logits
        return answer_loss(logits, model.full_labels(labels), recipe.loss_per), {}

    def evaluate(model, step):
        return evaluate_vlm(model, eval_size, eval_size // 2, split="val")

    result = train_loop(model, step_loss, config, run_dir, evaluate if eval_size else None, progress=progress,
                        stop_at=stop_at)  # fmt: skip
    return model, result


# --- shipping ----------------------------------------------------------------------------------------------


def ship_vlm(run_dir: str | Path, name: str | None = None, eval_size: int = 1000, start: int = 0) -> Path:
    """Copy a finished VLM run into the package (default name "shapes-vlm-<image_tokens>"): card, metrics, manifest."""
    import shutil

    from .train import TRAINING_ONLY_FILES

    run_dir = Path(run_dir)
    last = run_dir / "last"
    recipe = json.loads((run_dir / "recipe.json").read_text())
    state = torch.load(last / "trainer_state.pt", weights_only=True)
    if state["step"] != recipe["train"]["steps"]:
        raise ValueError(f"{run_dir} stopped at step {state['step']} of {recipe['train']['steps']}; finish it first.")
    name = name or f"shapes-vlm-{recipe['image_tokens']}"
    target = checkpoints.WEIGHTS_DIR / name
    if target.exists():
        shutil.rmtree(target)
    shutil.copytree(last, target, ignore=shutil.ignore_patterns(*TRAINING_ONLY_FILES))
    config = json.loads((target / CONFIG_NAME).read_text())
    clip_weights = checkpoints.path(recipe["vision"]) / "model.safetensors"
    config["clip_sha256"] = checkpoints._sha256(clip_weights)
    (target / CONFIG_NAME).write_text(json.dumps(config, indent=1) + "\n")

    model = MultimodalModel.from_pretrained(target, device="cpu")
    metrics = evaluate_vlm(model, eval_size, eval_size, split="test", start=start, progress=True)
    baselines = baseline_scores(n_questions=eval_size, split="test", start=start)
    history = json.loads((last / "history.json").read_text())
    curve = [{k: round(v, 4) for k, v in r.items()} for r in history if "vqa all" in r]
    sizes = {part: sum(f.stat().st_size for f in (target / part).glob("*.safetensors")) / 1e6 for part in ("vision", "language")}
    (target / "README.md").write_text(VLM_CARD.format(
        name=name, image_tokens=recipe["image_tokens"], vision=recipe["vision"], reads=_reads(model),
        projector="2-layer GELU MLP" if recipe["projector"] == "mlp" else "linear",
        lessons="Lessons 04-07 use it." if recipe["image_tokens"] == "patches" else "Lesson 07 compares it with the patch model.",
        clip_sha=config["clip_sha256"][:16], params=sum(p.numel() for p in model.parameters()) / 1e6,
        lm_params=sum(p.numel() for p in model.language_model.parameters()) / 1e6,
        size=sum(sizes.values()) + (target / "projector.safetensors").stat().st_size / 1e6,
        commit=recipe.get("commit", "unknown"), steps=state["step"], threads=recipe["train"]["threads"],
        minutes=state["clock"]["wall"] / 60, cpu_minutes=state["clock"]["cpu"] / 60, eval_size=eval_size,
        vqa_table=vqa_table(metrics, baselines), caption_table=caption_table(metrics),
        recipe=json.dumps(recipe, indent=1),
    ))  # fmt: skip
    (target / "training_curve.json").write_text(json.dumps(curve, indent=1) + "\n")
    (target / "metrics.json").write_text(json.dumps(
        {"eval_size": eval_size, "split": "test", "start": start, "metrics": metrics, "baselines": baselines}, indent=1
    ) + "\n")  # fmt: skip
    checkpoints.write_manifest(target)
    return target


def _reads(model: MultimodalModel) -> str:
    config = model.config
    if config.image_tokens == "cls":
        return "**one** image token, the pooled [CLS] (`pooler_output`)"
    if config.merge == 1:
        return f"**every patch token** of `last_hidden_state`: {model.num_image_tokens} image tokens"
    return (f"the patch tokens of `last_hidden_state`, each {config.merge} x {config.merge} block concatenated into "
            f"one image token (pixel shuffle): **{model.num_image_tokens} image tokens**")


def vqa_table(metrics: dict[str, float], baselines: dict[str, float]) -> str:
    """Markdown: exact match per kind beside the majority and question-only baselines, then position by objects."""
    rows = ["| question kind | model | majority | question only |", "|---|---|---|---|"]
    for kind in [k for k in (*data.KINDS, "all") if f"vqa {k}" in metrics]:  # a small sample may lack a kind
        rows.append(f"| {kind} | {metrics[f'vqa {kind}'] * 100:.1f} % | {baselines[f'majority {kind}'] * 100:.1f} % "
                    f"| {baselines[f'question-only {kind}'] * 100:.1f} % |")  # fmt: skip
    for n in (1, 2, 3):
        if f"vqa position ({n} obj)" in metrics:
            rows.append(f"| position, {n} object{'s' if n > 1 else ''} | {metrics[f'vqa position ({n} obj)'] * 100:.1f} % | | |")
    return "\n".join(rows)


def caption_table(metrics: dict[str, float]) -> str:
    """Markdown: captions that parse back to the true scene, overall and by object count, and BLEU-4."""
    rows = ["| captions | parse back to the scene |", "|---|---|"]
    rows += [f"| {key.removeprefix('caption ')} | {value * 100:.1f} % |" for key, value in metrics.items()
             if key.startswith("caption ") and key != "caption BLEU-4"]  # fmt: skip
    rows.append(f"| BLEU-4 | {metrics['caption BLEU-4'] * 100:.1f} |")
    return "\n".join(rows)


VLM_CARD = """---
library_name: transformers
tags: [vision-language, llama, clip, mmcourse, shapes-world]
---
# {name}

A tiny vision-language model of the shapes world: the frozen vision tower of `{vision}` (its `model.safetensors`
sha256 begins `{clip_sha}`), a {projector} projector, and a `LlamaForCausalLM` ({lm_params:.2f} M parameters)
trained from scratch. The language model reads {reads}, then `[BOS] question [EOS]`, and answers (or, with an
empty question, captions). {params:.2f} M parameters in all,
{size:.1f} MB. {lessons}

Load it with `mmcourse.vlm.load("{name}")`. The parts are plain Hugging Face folders: `vision/` for
`CLIPVisionModel` and `CLIPImageProcessor`, `language/` for `LlamaForCausalLM` and `AutoTokenizer`;
`projector.safetensors` and `mmcourse_vlm.json` join them.

## Training

- recipe: `mmcourse train vlm --image-tokens {image_tokens}` (`mmcourse.vlm.VLMRecipe`), seeded and resumable;
  code at commit `{commit}`
- steps: {steps}; threads: {threads}; training time: {minutes:.1f} min wall, {cpu_minutes:.1f} min CPU
- each batch: a quarter captions, the rest balanced questions of five kinds; the loss is averaged per example,
  so a one-word answer weighs as much as a whole caption; the withheld color-shape pairs never appear

```json
{recipe}
```

## Metrics

Fresh held-out scenes of the test split, computed by `mmcourse eval vlm {name}`: {eval_size} balanced questions
in their canonical forms (greedy decoding, exact match after normalization) beside the baselines fitted on
20,000 training questions, and {eval_size} captions (greedy) parsed back into scene graphs.

{vqa_table}

{caption_table}

The validation curve (every 500 steps, with wall and CPU seconds) is in `training_curve.json`;
`benchmarks/vlm.py` plots it.
"""
