"""Exercise 06 (decoding): a greedy decoder by hand, equal to `generate` token for token; the same
decoder with a KV cache; temperature and top-k."""

from __future__ import annotations

import random

import numpy as np
import torch

from ... import data, vlm
from ..judging import Close, Exact, Hint, Question, as_tensors

__all__ = ["QUESTIONS"]

# the VLM the decoding cases run on (loaded once, on the CPU, on first use)
MODEL = "shapes-vlm-patches"

_MODELS: dict[str, vlm.MultimodalModel] = {}


def load_model(name: str) -> vlm.MultimodalModel:
    """The VLM `name` on the CPU, loaded once per process (ex06 and ex07 share it)."""
    if name not in _MODELS:
        _MODELS[name] = vlm.load(name, "cpu").eval()
    return _MODELS[name]


def image_array(scene: data.Scene) -> np.ndarray:
    return np.asarray(scene.render(), dtype=np.uint8)  # (72, 72, 3)


# --- ex06_greedy_decode
# ----------------------------------------------------------------------------------


def _decode_case(scene: data.Scene, question: str, max_new_tokens: int) -> dict:
    return {"image": image_array(scene), "question": question, "max_new_tokens": max_new_tokens}


def _decode_args(case: dict) -> dict:
    """One image and its prompt as the language model reads them: left-padded inputs_embeds, batch
    1."""
    model = load_model(MODEL)
    with torch.no_grad():
        inputs = model.generation_inputs(model.pixel_values([case["image"]]), [case["question"]])
    return {"model": model, **inputs, "max_new_tokens": case["max_new_tokens"]}


@torch.no_grad()
def _greedy_reference(model, inputs_embeds, attention_mask, max_new_tokens):
    """Hugging Face's greedy search; its new token ids up to and with the first [EOS]."""
    inputs = {"inputs_embeds": inputs_embeds, "attention_mask": attention_mask}
    ids = [int(i) for i in vlm.generate_tokens(model, inputs, max_new_tokens)[0]]
    return vlm.until_eos(ids, model.tokenizer.eos_token_id)


def _decode_hidden(rng: random.Random, n: int) -> list[dict]:
    cases = []
    for i in range(n):
        seed = rng.randrange(2**31)
        if i % 3 == 0:  # a caption: long enough to be cut by max_new_tokens now and then
            cases.append(_decode_case(data.random_scene(seed), "", rng.randint(1, 32)))
        else:
            scene, qa = data.qa_example(seed)
            cases.append(_decode_case(scene, qa.question, rng.randint(1, 8)))
    return cases


def _eos(case) -> int:
    return load_model(MODEL).tokenizer.eos_token_id


def _ids(got) -> list[int] | None:
    return got if type(got) is list and all(type(i) is int for i in got) else None


def _no_stop(case, expected, got) -> bool:
    ids = _ids(got)
    return (
        expected[-1] == _eos(case) and len(ids) > len(expected) and ids[: len(expected)] == expected
    )


def _eos_dropped(case, expected, got) -> bool:
    return expected[-1] == _eos(case) and _ids(got) == expected[:-1]


def _length_off(case, expected, got) -> bool:
    ids = _ids(got)
    if expected[-1] == _eos(case) or abs(len(ids) - case["max_new_tokens"]) != 1:
        return False
    n = min(len(ids), len(expected))
    return ids[:n] == expected[:n]


def _first_wrong(case, expected, got) -> bool:
    ids = _ids(got)
    return bool(ids) and ids[0] != expected[0]


def _not_fed_back(case, expected, got) -> bool:
    ids = _ids(got)
    return len(ids) > 1 and ids[0] == expected[0] and ids != expected


_DECODE_VISIBLE = (
    _decode_case(
        data.Scene.from_triples([("red", "circle", "top left"), ("blue", "square", "center")]),
        "What color is the square?",
        8,
    ),
    _decode_case(data.Scene.from_triples([("green", "triangle", "bottom right")]), "", 32),
    _decode_case(
        data.Scene.from_triples(
            [
                ("yellow", "diamond", "top"),
                ("purple", "circle", "bottom left"),
                ("orange", "square", "right"),
            ]
        ),
        "",
        6,
    ),
)

GREEDY = Question(
    qid="ex06_greedy_decode",
    points=3,
    name="my_greedy_decode",
    prompt="my_greedy_decode(model, inputs_embeds, attention_mask, max_new_tokens) -> list[int]: "
    "the new token "
    "ids of greedy decoding, one forward pass per token (argmax of the last position's logits, its "
    "embedding and a 1 appended), stopping after [EOS] (kept) or max_new_tokens tokens.",
    oracle=_greedy_reference,
    references=(
        "transformers.generation.utils.GenerationMixin.generate",
        "mmcourse.vlm.decoding.step_times",
    ),
    visible=_DECODE_VISIBLE,
    hidden=_decode_hidden,
    prepare=_decode_args,
    compare=Exact(),
    describe=lambda case: (
        f"an image {case['image'].shape[:2]} with "
        + (f"the question {case['question']!r}" if case["question"] else "the caption prompt")
        + f", max_new_tokens={case['max_new_tokens']}"
    ),
    hints=(
        Hint(
            "Stop after the first [EOS] (model.tokenizer.eos_token_id): what follows it is not "
            "part of the "
            "answer.",
            _no_stop,
        ),
        Hint(
            "Keep the [EOS] itself in the list, as generate does: append the token, then stop.",
            _eos_dropped,
        ),
        Hint(
            "max_new_tokens counts the new tokens: at most that many forward passes, each adding "
            "one token.",
            _length_off,
        ),
        Hint(
            "The next token is the argmax of the logits at the *last* position, logits[0, -1].",
            _first_wrong,
        ),
        Hint(
            "The first token is right, the next ones are not: feed each chosen token back, i.e. "
            "append its "
            "embedding (model.embed_text) to inputs_embeds and a 1 to the attention mask.",
            _not_fed_back,
        ),
    ),
)

# --- ex06_cached_greedy_decode
# ---------------------------------------------------------------------------


class _OneNewPosition:
    """The language model as the cached question hands it over: after the first call (the whole
    prompt), every call must read one new position and the cache of the calls before."""

    def __init__(self, language_model) -> None:
        self._language_model = language_model
        self._calls = 0

    def __call__(self, *args, **kwargs):
        cache = kwargs.get("cache", kwargs.get("past_key_values"))
        new = kwargs.get("inputs_embeds")
        new = kwargs.get("input_ids") if new is None else new
        if self._calls and (cache is None or new is None or new.shape[1] != 1):
            raise ValueError(
                "after the first step, give the language model only the new token (one position) "
                "and the cache of the step before (cache=out.cache): re-reading the whole sequence "
                "is what the KV cache is there to avoid."
            )
        self._calls += 1
        return self._language_model(*args, **kwargs)

    def __getattr__(self, name: str):
        return getattr(self._language_model, name)


class CachedStepsModel:
    """The VLM of ex06_cached_greedy_decode: `language_model` (cached steps only), `embed_text`,
    `tokenizer`, `device`."""

    def __init__(self, model: vlm.MultimodalModel) -> None:
        self.language_model = _OneNewPosition(model.language_model)
        self.embed_text = model.embed_text
        self.tokenizer = model.tokenizer
        self.device = model.device


def _cached_args(case: dict) -> dict:
    """As ex06_greedy_decode's arguments, with a language model that accepts only cached steps."""
    args = _decode_args(case)
    return {**args, "model": CachedStepsModel(args["model"])}


@torch.no_grad()
def _cached_variant(case: dict, grow_mask: bool) -> list[int]:
    """A cached greedy loop as a learner might write it (here: with or without growing the mask)."""
    args = _decode_args(case)
    model, mask, eos = args["model"], args["attention_mask"], _eos(case)
    out = model.language_model(inputs_embeds=args["inputs_embeds"], attention_mask=mask)
    ids: list[int] = []
    for _ in range(case["max_new_tokens"]):
        ids.append(int(out.logits[0, -1].argmax()))
        if ids[-1] == eos:
            break
        if grow_mask:
            mask = torch.cat([mask, mask.new_ones(1, 1)], dim=1)  # (1, L + t)
        new = model.embed_text(torch.tensor([[ids[-1]]]))  # (1, 1, D)
        out = model.language_model(inputs_embeds=new, attention_mask=mask, cache=out.cache)
    return ids


def _mask_not_grown(case, expected, got) -> bool:
    return _ids(got) == _cached_variant(case, grow_mask=False) != expected


CACHED = Question(
    qid="ex06_cached_greedy_decode",
    points=3,
    name="my_cached_greedy_decode",
    prompt="my_cached_greedy_decode(model, inputs_embeds, attention_mask, max_new_tokens) -> "
    "list[int]: greedy decoding with the KV cache: the prompt once, then one new position per "
    "step with the cache (cache=out.cache) and an attention mask one longer; the same ids as "
    "generate, [EOS] kept.",
    oracle=_greedy_reference,
    references=(
        "transformers.generation.utils.GenerationMixin.generate",
        "mmcourse.vlm.decoding.step_times",
        "mmcourse.vlm.decoding.generate_tokens",
    ),
    visible=_DECODE_VISIBLE,
    hidden=_decode_hidden,
    prepare=_cached_args,
    compare=Exact(),
    describe=GREEDY.describe,
    hints=(
        *GREEDY.hints[:4],
        Hint(
            "The attention mask covers the cache and the new token: append a 1 to it at every "
            "step (it is L + t long at step t), or the model ignores the last cached position.",
            _mask_not_grown,
        ),
        GREEDY.hints[4],
    ),
)

# --- ex06_next_token_probs
# -------------------------------------------------------------------------------


def _probs_case(seed: int, vocab: int, temperature: float, top_k: int) -> dict:
    logits = (np.random.default_rng(seed).standard_normal(vocab) * 3).astype(np.float32)
    return {"logits": logits, "temperature": temperature, "top_k": top_k}


def _probs_reference(logits, temperature, top_k):
    """Hugging Face's own warpers, in generate's order, then the softmax that sampling draws
    from."""
    from transformers import TemperatureLogitsWarper, TopKLogitsWarper

    scores = logits[None].float()  # (1, V): the warpers work on a batch
    scores = TemperatureLogitsWarper(float(temperature))(None, scores)
    scores = TopKLogitsWarper(int(top_k))(None, scores)
    return scores.softmax(dim=-1)[0]  # (V,)


def _probs_hidden(rng: random.Random, n: int) -> list[dict]:
    cases = []
    for _ in range(n):
        vocab = rng.choice([8, 16, 45])
        cases.append(
            _probs_case(
                rng.randrange(2**31),
                vocab,
                rng.choice([0.3, 0.5, 0.7, 1.5, 2.0]),
                rng.choice([1, 2, 3, 5, 10, vocab]) if vocab > 10 else rng.randint(1, vocab),
            )
        )
    return cases


def _probs_variant(
    case, temperature=None, top_k=None, fill=float("-inf"), renormalize=True
) -> np.ndarray:
    logits = torch.from_numpy(case["logits"].copy())
    scaled = logits / case["temperature"] if temperature is None else logits * temperature
    k = case["top_k"] if top_k is None else top_k
    keep = scaled >= scaled.topk(max(1, min(k, len(scaled)))).values[-1]
    if renormalize:
        return scaled.masked_fill(~keep, fill).softmax(-1).numpy()
    return (scaled.softmax(-1) * keep).numpy()


def _near(got, alternative: np.ndarray) -> bool:
    return got.shape == alternative.shape and np.allclose(got, alternative, rtol=1e-4, atol=1e-6)


def _multiplied(case, expected, got) -> bool:
    return case["temperature"] != 1 and _near(
        got, _probs_variant(case, temperature=case["temperature"])
    )


def _no_temperature(case, expected, got) -> bool:
    return case["temperature"] != 1 and _near(got, _probs_variant(case, temperature=1.0))


def _k_off_by_one(case, expected, got) -> bool:
    kept = int((got > 0).sum())
    return (
        got.shape == expected.shape
        and kept in (case["top_k"] - 1, case["top_k"] + 1)
        and kept <= len(got)
    )


def _no_top_k(case, expected, got) -> bool:
    return case["top_k"] < len(case["logits"]) and _near(
        got, _probs_variant(case, top_k=len(case["logits"]))
    )


def _softmax_first(case, expected, got) -> bool:
    return _near(got, _probs_variant(case, renormalize=False))


def _zero_filled(case, expected, got) -> bool:
    return _near(got, _probs_variant(case, fill=0.0))


PROBS = Question(
    qid="ex06_next_token_probs",
    points=2,
    name="my_next_token_probs",
    prompt="my_next_token_probs(logits, temperature, top_k) -> (V,) probabilities: logits / "
    "temperature, "
    "every logit below the k-th largest set to -inf, then the softmax (what sampling draws from).",
    oracle=_probs_reference,
    visible=(_probs_case(0, 10, 0.7, 3), _probs_case(1, 45, 1.5, 10), _probs_case(2, 16, 0.5, 1)),
    hidden=_probs_hidden,
    prepare=as_tensors,
    compare=Close(rtol=1e-4, atol=1e-6),
    describe=lambda case: (
        f"logits of {len(case['logits'])} tokens, temperature={case['temperature']}, "
        f"top_k={case['top_k']}"
    ),
    hints=(
        Hint(
            "Divide the logits by the temperature (a small temperature sharpens the distribution); "
            "do not "
            "multiply.",
            _multiplied,
        ),
        Hint("Apply the temperature: logits / temperature, before the softmax.", _no_temperature),
        Hint(
            "Apply top-k: keep only the top_k highest logits, set every other one to -inf before "
            "the softmax.",
            _no_top_k,
        ),
        Hint(
            "Off by one: keep exactly the top_k highest logits (logits.topk(top_k)), no fewer, no "
            "more.",
            _k_off_by_one,
        ),
        Hint(
            "Filter first, then softmax: set the removed logits to -inf and take the softmax of "
            "the rest, so "
            "the kept probabilities sum to 1.",
            _softmax_first,
        ),
        Hint(
            "Set the removed logits to -inf, not 0: exp(0) = 1 still gives them probability.",
            _zero_filled,
        ),
    ),
)

QUESTIONS = (GREEDY, CACHED, PROBS)
