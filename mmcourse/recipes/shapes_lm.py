"""The recipe of the shipped `shapes-lm`: a tiny `LlamaForCausalLM` pretrained on text alone.

Lesson 09 explains it. It never reads an image token. Each batch is, in words:

- reading comprehension (most of it): a described scene (9 cell vectors, each the sum of its
  words' embeddings: `frozen_lm`), then one of the five kinds of question about it, balanced as in
  lesson 00, and its answer;
- describing a described scene: the same 9 vectors, an empty question, the scene's caption;
- plain scene descriptions: a caption with nothing before it (the language of captions alone).
The withheld color-shape pairs never appear, and the loss is averaged per example, as in the VLM
recipe.
"""

from __future__ import annotations

from dataclasses import asdict, dataclass
from pathlib import Path

from .. import data, frozen_lm, metrics
from ..language_model import LanguageConfig, build_language_model
from ..utils import get_device, seed_everything
from ..vlm import answer_loss
from .loop import TrainConfig, record_recipe, shard, train_loop

__all__ = [
    "CARD",
    "CURVE_METRIC",
    "LMRecipe",
    "card_fields",
    "default",
    "lm_batch",
    "load",
    "measure",
    "report",
    "text_qa_table",
    "train",
    "train_lm",
]


@dataclass(frozen=True)
class LMRecipe:
    # smaller than the VLMs' from-scratch LM: a step costs about a third, and text QA needs no more
    language: LanguageConfig = LanguageConfig(
        hidden_size=128, layers=4, heads=4, intermediate_size=384
    )
    describe_share: float = 0.2  # described scene -> caption
    caption_share: float = 0.1  # a caption alone
    loss_per: str = "example"
    train: TrainConfig = TrainConfig(
        steps=2500, batch_size=96, lr=2e-3, warmup_steps=100, eval_every=500, save_every=500
    )


def lm_batch(
    step: int, recipe: LMRecipe, positions
) -> tuple[list[data.Scene | None], list[str], list[str]]:
    """The text examples at `positions` of step `step`'s batch: (described scene or None, question,
    answer)."""
    batch_size = recipe.train.batch_size
    describe = round(recipe.describe_share * batch_size)
    plain = round(recipe.caption_share * batch_size)
    scenes, questions, answers = [], [], []
    for i in positions:
        seed = data.split_seed("train", step * batch_size + i)
        if i < describe + plain:
            scene = data.random_scene(seed, pairs="seen")
            scenes.append(scene if i < describe else None)
            questions.append("")
            answers.append(data.caption(scene))
        else:
            scene, qa = data.qa_example(seed, pairs="seen")
            scenes.append(scene)
            questions.append(qa.question)
            answers.append(qa.answer)
    return scenes, questions, answers


def build_lm(recipe: LMRecipe):
    tokenizer = frozen_lm.build_lm_tokenizer()
    return build_language_model(recipe.language, vocab_size=len(tokenizer)), tokenizer


def measure_text(reader: frozen_lm.TextLM, n: int, split: str = "val", start: int = 0) -> dict:
    """Text-QA exact match per kind on fresh described scenes, and captions of described scenes
    that parse back to the scene."""
    examples = data.qa_examples(split, n, start, pairs="seen")
    answers = frozen_lm.read_scenes(
        reader, [s for s, _ in examples], [qa.question for _, qa in examples], max_new_tokens=8
    )
    out = {
        f"text-qa {k}": v
        for k, v in data.accuracy_by_kind([qa for _, qa in examples], answers).items()
    }
    scenes = data.scenes(split, max(1, n // 2), start + 50_000_000, pairs="seen")
    captions = frozen_lm.describe_scenes(reader, scenes)
    out.update({f"describe {k}": v for k, v in metrics.caption_accuracy(captions, scenes).items()})
    return out


def train_lm(
    run_dir: str | Path,
    recipe: LMRecipe = LMRecipe(),
    eval_size: int = 300,
    progress: bool = True,
    stop_at: int | None = None,
):
    """Train (or resume) shapes-lm; returns (TextLM, TrainResult)."""
    config = recipe.train
    record_recipe(run_dir, asdict(recipe))
    seed_everything(config.seed)
    model, tokenizer = build_lm(recipe)
    model.to(get_device())
    positions = shard(config.batch_size)

    def step_loss(model, step):
        scenes, questions, answers = lm_batch(step, recipe, positions)
        reader = frozen_lm.TextLM(model, tokenizer)
        # rows with a described scene, and captions alone: each group joined as the VLM joins
        # image tokens, the loss averaged per example over both
        groups = [
            [i for i, scene in enumerate(scenes) if (scene is None) == alone]
            for alone in (False, True)
        ]
        total = 0.0
        for rows, alone in zip(groups, (False, True)):
            if not rows:
                continue
            inputs = reader.training_inputs(
                None if alone else [scenes[i] for i in rows],
                [questions[i] for i in rows],
                [answers[i] for i in rows],
            )
            labels = inputs.pop("labels")
            loss = answer_loss(model(**inputs).logits, labels, recipe.loss_per)
            total = total + loss * len(rows)
        return total / len(scenes), {}

    def evaluate(model, step):
        return measure_text(frozen_lm.TextLM(model, tokenizer), eval_size)

    result = train_loop(
        model,
        step_loss,
        config,
        run_dir,
        evaluate if eval_size else None,
        save_extra=tokenizer.save_pretrained,
        progress=progress,
        stop_at=stop_at,
    )
    return frozen_lm.TextLM(model, tokenizer), result


# --- the registry's interface ---------------------------------------------------------------------

CARD = "shapes-lm.md"
CURVE_METRIC = "text-qa all"


def default() -> LMRecipe:
    return LMRecipe()


train = train_lm


def load(folder: str | Path) -> frozen_lm.TextLM:
    """A text-only Llama folder with its tokenizer (shipped name or path)."""
    return frozen_lm.load_lm(folder)


def measure(
    reader: frozen_lm.TextLM, eval_size: int, start: int = 0, progress: bool = True
) -> dict:
    """What the card and metrics.json report: text QA and describing, on fresh test scenes."""
    measured = measure_text(reader, eval_size, "test", start)
    baselines = metrics.baseline_scores(n_questions=eval_size, split="test", start=start)
    return {
        "eval_size": eval_size,
        "split": "test",
        "start": start,
        "metrics": measured,
        "baselines": baselines,
    }


def text_qa_table(measured: dict[str, float], baselines: dict[str, float]) -> str:
    """Markdown: text-QA exact match per kind beside the two baselines, then describing."""
    rows = ["| question kind | shapes-lm | majority | question only |", "|---|---|---|---|"]
    for kind in [k for k in (*data.KINDS, "all") if f"text-qa {k}" in measured]:
        rows.append(
            f"| {kind} | {measured[f'text-qa {kind}'] * 100:.1f} % | "
            f"{baselines[f'majority {kind}'] * 100:.1f} % | "
            f"{baselines[f'question-only {kind}'] * 100:.1f} % |"
        )
    rows += ["", "| describing a described scene | parse back to the scene |", "|---|---|"]
    rows += [
        f"| {key.removeprefix('describe ')} | {value * 100:.1f} % |"
        for key, value in measured.items()
        if key.startswith("describe ")
    ]
    return "\n".join(rows)


def card_fields(target: Path, reader: frozen_lm.TextLM, recipe: dict, measured: dict) -> dict:
    model = reader.language_model
    return {
        "params": sum(p.numel() for p in model.parameters()) / 1e6,
        "size": sum(f.stat().st_size for f in target.glob("*.safetensors")) / 1e6,
        "vocab": len(reader.tokenizer),
        "layers": model.config.num_hidden_layers,
        "hidden": model.config.hidden_size,
        "table": text_qa_table(measured["metrics"], measured["baselines"]),
    }


def report(name: str, size: int = 1000, start: int = 0) -> str:
    """`mmcourse eval lm`: text QA per kind beside the baselines, and describing, on test scenes."""
    measured = measure(load(name), size, start)
    return (
        f"{name}: {size} fresh described test scenes with a question each, and {size // 2} to "
        f"describe (start {start}), greedy decoding\n\n"
        f"{text_qa_table(measured['metrics'], measured['baselines'])}"
    )
