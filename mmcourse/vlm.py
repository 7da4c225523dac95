"""The multimodal model: vision encoder -> projection -> a Llama language model reading `inputs_embeds`.

Lessons 05-07 teach it. The token sequence the language model reads, for one example:

    [image tokens: N projected vectors] [BOS] question [EOS] answer [EOS]
     attention mask: 1 on every one of them (the image positions too), 0 on padding
     labels:         -100 on the image and the prompt; the answer's ids and its [EOS] (the loss is only there)

`image_tokens="patches"` feeds the N patch tokens of `last_hidden_state` (without [CLS]); `"cls"` feeds one token,
the post-layernorm [CLS] (`pooler_output`). Captioning is the same with an empty question.

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


class MultimodalModel(nn.Module):
    """A `CLIPVisionModel`, a projector and a `LlamaForCausalLM` (any causal LM that takes `inputs_embeds`)."""

    def __init__(self, vision_model, language_model, projector: nn.Module | None, tokenizer,
                 image_tokens: str = "patches", config: VLMConfig | None = None, processor=None) -> None:  # fmt: skip
        super().__init__()
        self.processor = processor  # the vision tower's CLIPImageProcessor; None: CLIP's defaults at its size
        config = config or VLMConfig(image_tokens=image_tokens)
        if config.image_tokens != image_tokens:
            config = VLMConfig(**{**asdict(config), "image_tokens": image_tokens})
        self.config = config
        self.vision_model = vision_model
        self.language_model = language_model
        vision_width = vision_model.config.hidden_size
        lm_hidden = language_model.config.hidden_size
        self.projector = projector if projector is not None else projection.make_projector(config.projector, vision_width, lm_hidden)
        projection.check_fits(self.projector, vision_width, lm_hidden)
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
        return (self.vision_model.config.image_size // self.vision_model.config.patch_size) ** 2

    # --- the pieces of a forward pass -------------------------------------------------------------

    def encode_image(self, pixel_values: torch.Tensor) -> torch.Tensor:
        """Image tokens in the LM's space: (B, 3, H, W) -> (B, N_img, D_lm); N_img = N patches or 1 [CLS]."""
        pixel_values = pixel_values.to(self.device)
        with torch.set_grad_enabled(torch.is_grad_enabled() and not self.config.freeze_vision):
            out = self.vision_model(pixel_values=pixel_values, output_hidden_states=self.config.layer != -1)
            if self.config.image_tokens == "cls":
                features = out.pooler_output[:, None]  # (B, 1, D_v)
            else:
                hidden = out.last_hidden_state if self.config.layer == -1 else out.hidden_states[self.config.layer]
                features = hidden[:, 1:]  # (B, N, D_v): [CLS] dropped
        return self.projector(features)  # (B, N_img, D_lm)

    def embed_text(self, input_ids: torch.Tensor) -> torch.Tensor:
        return self.language_model.get_input_embeddings()(input_ids.to(self.device))  # (B, T, D_lm)

    def forward(self, pixel_values: torch.Tensor, input_ids: torch.Tensor, attention_mask: torch.Tensor,
                labels: torch.Tensor | None = None):  # fmt: skip
        """Image tokens, then the (right-padded) text: the LM's output, with the loss when `labels` are given."""
        image = self.encode_image(pixel_values)  # (B, N_img, D)
        b, n_img, _ = image.shape
        inputs_embeds = torch.cat([image, self.embed_text(input_ids)], dim=1)  # (B, N_img + T, D)
        ones = torch.ones(b, n_img, dtype=attention_mask.dtype, device=self.device)
        mask = torch.cat([ones, attention_mask.to(self.device)], dim=1)  # image positions are attended to
        if labels is not None:
            ignore = torch.full((b, n_img), IGNORE_INDEX, dtype=labels.dtype, device=self.device)
            labels = torch.cat([ignore, labels.to(self.device)], dim=1)  # no loss on the image positions
        return self.language_model(inputs_embeds=inputs_embeds, attention_mask=mask, labels=labels)

    # --- text in and out ---------------------------------------------------------------------------

    def prompt_ids(self, question: str) -> list[int]:
        """The prompt after the image: [BOS] question [EOS] with the course tokenizer (its template)."""
        return list(self.tokenizer(data.normalize_question(question) if question else "")["input_ids"])

    def answer_ids(self, answer: str) -> list[int]:
        return [*self.tokenizer(answer, add_special_tokens=False)["input_ids"], self.tokenizer.eos_token_id]

    def training_batch(self, questions: list[str], answers: list[str]) -> dict[str, torch.Tensor]:
        """Right-padded `input_ids`, `attention_mask` and `labels` (-100 on the prompt and padding). (B, T)"""
        rows = [(self.prompt_ids(q), self.answer_ids(a)) for q, a in zip(questions, answers, strict=True)]
        length = max(len(p) + len(a) for p, a in rows)
        pad = self.tokenizer.pad_token_id
        ids = torch.full((len(rows), length), pad, dtype=torch.long)
        mask = torch.zeros((len(rows), length), dtype=torch.long)
        labels = torch.full((len(rows), length), IGNORE_INDEX, dtype=torch.long)
        for i, (prompt, answer) in enumerate(rows):
            n = len(prompt) + len(answer)
            ids[i, :n] = torch.tensor(prompt + answer)
            mask[i, :n] = 1
            labels[i, len(prompt) : n] = torch.tensor(answer)
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


def load(name: str, device: torch.device | str | None = None) -> MultimodalModel:
    """A VLM by name: a shipped one ("shapes-vlm-patches") or a folder written by `save_pretrained`."""
    return MultimodalModel.from_pretrained(checkpoints.resolve(name), device)


# --- using a VLM ---------------------------------------------------------------------------------------


def _pixel_values(model: MultimodalModel, images) -> torch.Tensor:
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
    inputs = model.generation_inputs(_pixel_values(model, images), questions)
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
    caption_share: float = 0.25  # the rest of each batch is balanced questions
    train: TrainConfig = TrainConfig(steps=3000, batch_size=64, lr=1e-3, warmup_steps=100, eval_every=500, save_every=250)


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
    config = VLMConfig(image_tokens=recipe.image_tokens, projector=recipe.projector)
    return MultimodalModel(vision, build_language_model(recipe.language), None, build_tokenizer(),
                           recipe.image_tokens, config, processor).to(get_device())  # fmt: skip


def evaluate_vlm(model: MultimodalModel, n_questions: int = 500, n_captions: int = 200, split: str = "test",
                 start: int = 0, num_beams: int = 1) -> dict[str, float]:  # fmt: skip
    """Exact match per question kind (balanced questions, canonical forms) and captions parsed back, by object count."""
    from . import metrics

    was_training = model.training
    model.eval()
    examples = data.qa_examples(split, n_questions, start, pairs="seen")
    predictions: list[str] = []
    for i in range(0, len(examples), 64):
        chunk = examples[i : i + 64]
        predictions += visual_qa(model, [s.render() for s, _ in chunk], [qa.question for _, qa in chunk], num_beams=num_beams)
    out = {f"vqa {k}": v for k, v in data.accuracy_by_kind([qa for _, qa in examples], predictions).items()}
    by_count = {}
    for n in (1, 2, 3):
        rows = [(s, qa, p) for (s, qa), p in zip(examples, predictions) if qa.kind == "position" and len(s.objects) == n]
        if rows:
            by_count[f"vqa position ({n} obj)"] = sum(data.normalize_question(p) == qa.answer for _, qa, p in rows) / len(rows)
    out.update(by_count)
    scenes = data.scenes(split, n_captions, start + 50_000_000, pairs="seen")
    captions: list[str] = []
    for i in range(0, len(scenes), 64):
        captions += generate_caption(model, [s.render() for s in scenes[i : i + 64]], num_beams=num_beams)
    out.update({f"caption {k}": v for k, v in metrics.caption_accuracy(captions, scenes).items()})
    model.train(was_training)
    return out


def train_vlm(run_dir: str | Path, recipe: VLMRecipe = VLMRecipe(), eval_size: int = 200, progress: bool = True,
              stop_at: int | None = None):  # fmt: skip
    """Train (or resume) a shapes-world VLM on the frozen vision tower of `recipe.vision`; returns (model, result)."""
    from .train import train_loop
    from .utils import seed_everything
    from .vision import pixel_values_from_uint8

    config = recipe.train
    seed_everything(config.seed)
    model = build_vlm(recipe)

    def step_loss(model, step):
        images, questions, answers = vlm_batch(step, recipe, config.batch_size)
        batch = model.training_batch(questions, answers)
        return model(pixel_values_from_uint8(images), **batch).loss, {}

    def evaluate(model, step):
        return evaluate_vlm(model, eval_size, eval_size // 2, split="val")

    result = train_loop(model, step_loss, config, run_dir, evaluate, progress=progress, stop_at=stop_at)
    return model, result
