"""Exercise 07 (visual question answering): answer a question from the model's pieces; accuracy per
question kind."""

from __future__ import annotations

import random

import torch
from PIL import Image

from ... import data, vlm
from ..judging import Close, Hint, Question
from .ex06 import image_array, load_model

__all__ = ["QUESTIONS"]

# the VLM the questions are asked to (loaded once, on the CPU, on first use)
MODEL = "shapes-vlm-patches"

# --- ex07_visual_qa
# --------------------------------------------------------------------------------------


def _qa_case(scene: data.Scene, question: str) -> dict:
    return {"image": image_array(scene), "question": question}


def _qa_args(case: dict) -> dict:
    return {
        "model": load_model(MODEL),
        "image": Image.fromarray(case["image"]),
        "question": case["question"],
    }


def _visual_qa_reference(model, image, question):

    return vlm.visual_qa(model, image, question)  # greedy, max_new_tokens=8


def _as_asked(question: str, rng: random.Random) -> str:
    """The same question as a person might type it: other capitals, no or other punctuation, extra
    spaces."""
    style = rng.randrange(5)
    if style == 1:
        question = question.upper()
    elif style == 2:
        words = question.split()
        question = " ".join([words[0].upper(), *words[1:]]).rstrip("?")
    elif style == 3:
        question = "  " + question.lower().replace("?", " ?!") + " "
    elif style == 4:
        question = question.rstrip("?") + "."
    return question


def _qa_hidden(rng: random.Random, n: int) -> list[dict]:
    cases = []
    for _ in range(n):
        scene, qa = data.qa_example(rng.randrange(2**31))
        cases.append(_qa_case(scene, _as_asked(qa.question, rng)))
    return cases


@torch.no_grad()
def _answer_variant(case: dict, specials: bool = True, image_first: bool = True) -> str:
    """The answer with the prompt built another way: without [BOS]/[EOS], or the image after the
    prompt."""
    args = _qa_args(case)
    model = args["model"]
    pixel_values = model.pixel_values(args["image"])
    image = model.encode_image(pixel_values)
    ids = (
        model.prompt_ids(case["question"]) if specials else model.prompt_ids(case["question"])[1:-1]
    )
    prompt = model.embed_text(torch.tensor([ids]))
    embeds = torch.cat([image, prompt] if image_first else [prompt, image], dim=1)
    inputs = {
        "inputs_embeds": embeds,
        "attention_mask": torch.ones(embeds.shape[:2], dtype=torch.long),
    }
    output = vlm.generate_tokens(model, inputs, max_new_tokens=8)
    return model.tokenizer.decode(output[0], skip_special_tokens=True).strip()


def _special_tokens_kept(case, expected, got) -> bool:
    return type(got) is str and any(token in got for token in ("[EOS]", "[PAD]", "[BOS]"))


def _not_stripped(case, expected, got) -> bool:
    return type(got) is str and got != expected and got.strip() == expected


def _no_specials(case, expected, got) -> bool:
    return type(got) is str and got == _answer_variant(case, specials=False) != expected


def _image_after(case, expected, got) -> bool:
    return type(got) is str and got == _answer_variant(case, image_first=False) != expected


_QA_VISIBLE = (
    _qa_case(
        data.Scene.from_triples([("red", "circle", "top left"), ("blue", "square", "center")]),
        "What color is the square?",
    ),
    _qa_case(
        data.Scene.from_triples([("green", "triangle", "bottom right"), ("red", "circle", "left")]),
        "WHERE is the red circle",
    ),
    _qa_case(
        data.Scene.from_triples(
            [
                ("yellow", "square", "top"),
                ("purple", "square", "bottom left"),
                ("orange", "diamond", "right"),
            ]
        ),
        "how many squares are there ?",
    ),
)

VISUAL_QA = Question(
    qid="ex07_visual_qa",
    points=3,
    name="my_visual_qa",
    prompt="my_visual_qa(model, image, question) -> str: pixel values, image tokens, the prompt "
    "[BOS] question "
    "[EOS] (model.prompt_ids), greedy generate with max_new_tokens=8, decoded without special "
    "tokens "
    "and stripped: what vlm.visual_qa answers.",
    oracle=_visual_qa_reference,
    references=("mmcourse.vlm.visual_qa", "mmcourse.metrics.answer_questions"),
    visible=_QA_VISIBLE,
    hidden=_qa_hidden,
    prepare=_qa_args,
    describe=lambda case: (
        f"an image {case['image'].shape[:2]} and the question {case['question']!r}"
    ),
    hints=(
        Hint(
            "Decode with skip_special_tokens=True: [EOS] and [PAD] are not part of the answer.",
            _special_tokens_kept,
        ),
        Hint("Almost: strip() the spaces around the decoded answer.", _not_stripped),
        Hint(
            "The prompt is [BOS] question [EOS], as in training: model.prompt_ids(question) builds "
            "it (and "
            "normalizes the question's case and punctuation).",
            _no_specials,
        ),
        Hint(
            "The image tokens come first, then the prompt: the order the model was trained on.",
            _image_after,
        ),
    ),
)

# --- ex07_accuracy_by_kind
# -------------------------------------------------------------------------------


def _accuracy_reference(kinds, answers, predictions):
    items = [data.QA("", answer, kind) for kind, answer in zip(kinds, answers, strict=True)]
    return data.accuracy_by_kind(items, predictions)


def _typed(answer: str, rng: random.Random) -> str:
    """A right answer as a model or a person might write it."""
    return rng.choice(
        [
            answer,
            answer.capitalize(),
            answer.upper(),
            answer + ".",
            f" {answer} ",
            answer + "!",
            answer.replace(" ", "  "),
        ]
    )


def _wrong(kind: str, answer: str, rng: random.Random) -> str:
    options = {
        "color": data.COLORS,
        "shape": data.SHAPES,
        "position": data.POSITIONS,
        "count": ["0", "1", "2", "3"],
        "exists": ["yes", "no"],
    }[kind]
    return rng.choice([o for o in options if o != answer])


def _accuracy_case(
    seed: int, n: int, kinds: tuple[str, ...] = data.KINDS, right: float = 0.6
) -> dict:
    rng = random.Random(seed)
    case = {"kinds": [], "answers": [], "predictions": []}
    for _ in range(n):
        _, qa = data.qa_example(rng.randrange(2**31), kind=rng.choice(kinds))
        case["kinds"].append(qa.kind)
        case["answers"].append(qa.answer)
        ok = rng.random() < right
        case["predictions"].append(
            _typed(qa.answer, rng) if ok else _wrong(qa.kind, qa.answer, rng)
        )
    return case


def _accuracy_hidden(rng: random.Random, n: int) -> list[dict]:
    cases = []
    for _ in range(n):
        kinds = tuple(rng.sample(data.KINDS, rng.randint(1, len(data.KINDS))))
        cases.append(_accuracy_case(rng.randrange(2**31), rng.randint(1, 40), kinds, rng.random()))
    return cases


def _accuracy_with(case: dict, keys, same) -> dict[str, float]:
    """Accuracy per key of `keys` with another way of comparing a prediction with its answer."""
    rows = list(zip(case["kinds"], case["answers"], case["predictions"]))
    out = {}
    for key in keys:
        chosen = [(a, p) for k, a, p in rows if key in ("all", k)]
        out[key] = sum(bool(same(p, a)) for a, p in chosen) / len(chosen)
    return out


def _raw_match(case, expected, got) -> bool:
    ways = (lambda p, a: p == a, lambda p, a: p.lower() == a, lambda p, a: p.strip().lower() == a)
    return (
        type(got) is dict
        and set(got) == set(expected)
        and any(
            all(abs(got[k] - v[k]) < 1e-9 for k in v)
            for v in (_accuracy_with(case, expected, same) for same in ways)
        )
    )


def _all_missing(case, expected, got) -> bool:
    return type(got) is dict and "all" not in got and set(got) == set(expected) - {"all"}


def _absent_kinds(case, expected, got) -> bool:
    return type(got) is dict and set(got) > set(expected)


def _macro_all(case, expected, got) -> bool:
    kinds = [k for k in expected if k != "all"]
    macro = sum(expected[k] for k in kinds) / len(kinds)
    return (
        type(got) is dict and abs(got["all"] - macro) < 1e-9 and abs(macro - expected["all"]) > 1e-9
    )


ACCURACY = Question(
    qid="ex07_accuracy_by_kind",
    points=2,
    name="my_accuracy_by_kind",
    prompt="my_accuracy_by_kind(kinds, answers, predictions) -> dict: exact-match accuracy "
    "(answers compared "
    "after data.normalize_question) per question kind that occurs, and over all items under 'all'.",
    oracle=_accuracy_reference,
    references=("mmcourse.data.accuracy_by_kind",),
    visible=(
        _accuracy_case(0, 10),
        _accuracy_case(1, 25, ("color", "position", "count"), 0.7),
        _accuracy_case(2, 6, ("exists", "shape"), 0.5),
    ),
    hidden=_accuracy_hidden,
    compare=Close(rtol=1e-9, atol=1e-12),
    describe=lambda case: (
        f"{len(case['kinds'])} questions of the kinds {sorted(set(case['kinds']))}; "
        f"first predictions {case['predictions'][:3]} for answers {case['answers'][:3]}"
    ),
    hints=(
        Hint("Add the accuracy over all items under the key 'all'.", _all_missing),
        Hint(
            "Only the kinds that occur get a key; a kind with no question has no accuracy (not 0).",
            _absent_kinds,
        ),
        Hint(
            "Compare normalized answers (data.normalize_question on both): 'Red.', ' red ' and "
            "'RED' are all "
            "the answer 'red'.",
            _raw_match,
        ),
        Hint(
            "'all' is the share of all items answered right, not the mean of the per-kind "
            "accuracies.",
            _macro_all,
        ),
    ),
)

QUESTIONS = (VISUAL_QA, ACCURACY)
