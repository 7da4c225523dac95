"""Exercise 00 (the shapes world): the dense caption of a scene, and the tokenizer's encoding
step."""

from __future__ import annotations

import random
import re

from ... import data, tokenizer
from ..judging import Hint, Question

__all__ = ["QUESTIONS"]

# --- ex00_caption
# ------------------------------------------------------------------------------------


def scene_args(case: dict) -> dict:
    return {"scene": data.Scene.from_dict(case["scene"])}


def _caption_case(scene: data.Scene) -> dict:
    return {"scene": scene.to_dict()}


def _caption_hidden(rng: random.Random, n: int) -> list[dict]:
    return [
        _caption_case(data.random_scene(rng.randrange(2**31), n_objects=1 + i % 3))
        for i in range(n)
    ]


def _describe_scene(case: dict) -> str:
    objects = case["scene"]["objects"]
    return "a scene of " + "; ".join(
        f"{o['color']} {o['shape']} at {o['position']}" for o in objects
    )


def _triples(text: str) -> list[tuple[str, str, str]] | None:
    return data.parse_caption(text) if type(text) is str else None


def _wrong_order(case, expected, got) -> bool:
    mine = _triples(got)
    return (
        mine is not None
        and mine != _triples(expected)
        and sorted(mine) == sorted(_triples(expected))
    )


def _missing_position(case, expected, got) -> bool:
    return type(got) is str and got.count(" at the ") < expected.count(" at the ")


def _object_count_off(case, expected, got) -> bool:
    mine = _triples(got)
    return mine is not None and len(mine) != len(case["scene"]["objects"])


def _article(case, expected, got) -> bool:
    return type(got) is str and bool(re.search(r"\ba orange\b|\ban (?!orange)", got))


def _joining(case, expected, got) -> bool:
    return type(got) is str and (
        ", and " in got or got.replace(" and ", ", ") == expected.replace(" and ", ", ")
    )


def _case_or_stop(case, expected, got) -> bool:
    return type(got) is str and got != expected and got.lower().strip(" .") == expected


_CAPTION_SCENES = (
    data.Scene.from_triples([("red", "circle", "top left")]),
    data.Scene.from_triples([("blue", "square", "bottom right"), ("green", "triangle", "top")]),
    data.Scene.from_triples(
        [
            ("purple", "diamond", "center"),
            ("orange", "circle", "bottom left"),
            ("yellow", "square", "top right"),
        ]
    ),
    data.Scene.from_triples(
        [("red", "triangle", "right"), ("red", "triangle", "left"), ("blue", "circle", "bottom")]
    ),
)

CAPTION = Question(
    qid="ex00_caption",
    points=2,
    name="my_caption",
    prompt="my_caption(scene) -> str: the dense caption of a scene, as data.caption writes it.",
    oracle=data.caption,
    visible=tuple(_caption_case(s) for s in _CAPTION_SCENES),
    hidden=_caption_hidden,
    prepare=scene_args,
    describe=_describe_scene,
    hints=(
        Hint(
            "The right objects, in the wrong order: list them in reading order, top row first and "
            "left "
            "to right, which is the order of data.POSITIONS (sort by data.POSITIONS.index).",
            _wrong_order,
        ),
        Hint(
            "The number of objects is off: the caption must name every object of the scene exactly "
            "once; "
            "check the range of your loop.",
            _object_count_off,
        ),
        Hint(
            "Every object needs its position: 'a red circle at the top left', even when the scene "
            "has "
            "several objects (that is what makes a caption dense).",
            _missing_position,
        ),
        Hint(
            "Use 'an' before a color that starts with a vowel ('an orange circle'), 'a' otherwise.",
            _article,
        ),
        Hint(
            "Join objects as English does without a serial comma: 'A and B', 'A, B and C'.",
            _joining,
        ),
        Hint("Almost: the caption is all lower case, with no full stop at the end.", _case_or_stop),
    ),
)

# --- ex00_tokenize
# -----------------------------------------------------------------------------------


def _tokenize_reference(text: str, vocab: dict) -> list[int]:
    return list(tokenizer.from_vocab(vocab)(text)["input_ids"])


def _encode_variant(
    text: str, vocab: dict, lower=True, strip=True, specials=True, keep_unknown=True
) -> list[int]:
    """The encoding with one step left out: recognizes which step a learner's version skipped."""
    if lower:
        text = text.lower()
    if strip:
        text = re.sub(r"[^\w\s,]", " ", text)
    pieces = re.findall(r"[^\s,]+|,", text) if strip else text.split()
    ids = [vocab.get(w, vocab[tokenizer.UNK]) for w in pieces if keep_unknown or w in vocab]
    return [vocab[tokenizer.BOS], *ids, vocab[tokenizer.EOS]] if specials else ids


def _shifted(case, expected, got) -> bool:
    """The word ids (between [BOS] and [EOS]) all one too high or too low."""
    inner = list(zip(got[1:-1], expected[1:-1]))
    return len(got) == len(expected) > 2 and any(all(g == e + d for g, e in inner) for d in (-1, 1))


def _no_specials(case, expected, got) -> bool:
    return got in (expected[1:-1], expected[1:], expected[:-1])


def _one_word_lost(case, expected, got) -> bool:
    return len(got) == len(expected) - 1 and any(
        got == expected[:i] + expected[i + 1 :] for i in range(len(expected))
    )


def _step_skipped(**skip):
    return lambda case, expected, got: got == _encode_variant(case["text"], case["vocab"], **skip)


def _tokenize_hidden(rng: random.Random, n: int) -> list[dict]:
    world = [w for w in tokenizer.VOCAB if w not in tokenizer.SPECIAL_TOKENS]
    strangers = ["pink", "star", "hexagon", "under", "über", "size"]
    cases = []
    for _ in range(n):
        # ids permuted so that a memorized vocabulary cannot pass
        order = list(tokenizer.VOCAB)
        rng.shuffle(order)
        vocab = {w: i for i, w in enumerate(order)}
        picked = [
            rng.choice(world if rng.random() < 0.85 else strangers)
            for _ in range(rng.randint(1, 12))
        ]
        picked = [
            w.upper() if rng.random() < 0.15 else w.capitalize() if rng.random() < 0.15 else w
            for w in picked
        ]
        text = " ".join(picked) + rng.choice(["", "?", ".", "!", " ?"])
        cases.append({"text": text, "vocab": vocab})
    return cases


_TOKENIZE_TEXTS = (
    "a red circle at the top left",
    "Where is the RED circle?",
    "a red circle, a blue square and a green triangle",
    "Is there a pink star?",
)

TOKENIZE = Question(
    qid="ex00_tokenize",
    points=2,
    name="my_tokenize",
    prompt="my_tokenize(text, vocab) -> list[int]: normalize, split, look up (unknown -> [UNK]), "
    "add [BOS]/[EOS].",
    oracle=_tokenize_reference,
    references=(
        "mmcourse.tokenizer.from_vocab",
        "mmcourse.tokenizer.normalize",
        "mmcourse.tokenizer.words",
    ),
    visible=tuple({"text": t, "vocab": dict(tokenizer.VOCAB)} for t in _TOKENIZE_TEXTS),
    hidden=_tokenize_hidden,
    describe=lambda case: f"text={case['text']!r} (with the vocabulary you were given)",
    hints=(
        Hint(
            "Every id is off by one: take ids straight from `vocab[word]`; they start at 0.",
            _shifted,
        ),
        Hint(
            "Wrap the ids in the special tokens: vocab['[BOS]'] first, vocab['[EOS]'] last.",
            _no_specials,
        ),
        Hint(
            "One word has no id: every word of the text, the last one too, gets exactly one id; "
            "check the "
            "bounds of your loop or slice.",
            _one_word_lost,
        ),
        Hint(
            "Lower-case the text first: 'RED' is not in the vocabulary, 'red' is.",
            _step_skipped(lower=False),
        ),
        Hint(
            "Replace punctuation other than commas by spaces ('circle?' -> 'circle') and keep each "
            "comma "
            "as a word of its own.",
            _step_skipped(strip=False),
        ),
        Hint(
            "A word missing from the vocabulary becomes vocab['[UNK]']; it is not dropped.",
            _step_skipped(keep_unknown=False),
        ),
    ),
)

QUESTIONS = (CAPTION, TOKENIZE)
