"""Exercise 05 (assembling the sequence): image tokens + text, one training row of ids / mask /
labels, the loss, and LLaVA's layout (one `<image>` placeholder expanded, labels on the assistant's
turns)."""

from __future__ import annotations

import random

import numpy as np
import torch
import torch.nn.functional as F

from ... import tokenizer, vlm
from ..judging import Close, Exact, Hint, Question, as_tensors

__all__ = ["QUESTIONS"]

IGNORE = vlm.IGNORE_INDEX

# --- ex05_join_inputs
# ------------------------------------------------------------------------------------


def _join_case(
    seed: int, batch: int, n_image: int, length: int, width: int, with_labels: bool = True
) -> dict:
    """Right-padded text (every row at least 3 tokens, one row full), labels -100 on prompt and
    padding."""
    rng = np.random.default_rng(seed)
    lengths = [length, *rng.integers(3, length + 1, batch - 1)]
    mask = np.zeros((batch, length), dtype=np.int64)
    labels = np.full((batch, length), IGNORE, dtype=np.int64)
    for i, n in enumerate(lengths):
        mask[i, :n] = 1
        prompt = int(rng.integers(2, n))
        labels[i, prompt:n] = rng.integers(4, len(tokenizer.VOCAB), n - prompt)
    case = {
        "image_embeds": rng.standard_normal((batch, n_image, width)).astype(np.float32),
        "text_embeds": rng.standard_normal((batch, length, width)).astype(np.float32),
        "attention_mask": mask,
        "labels": labels if with_labels else None,
    }
    return case


def _join_hidden(rng: random.Random, n: int) -> list[dict]:
    return [
        _join_case(
            rng.randrange(2**31),
            rng.randint(1, 4),
            rng.choice([1, 4, 9]),
            rng.randint(3, 10),
            rng.choice([4, 8]),
            with_labels=i % 4 != 3,
        )
        for i in range(n)
    ]


def _part(got, key: str):
    value = got[key]
    return value if isinstance(value, np.ndarray) else None


def _image_masked(case, expected, got) -> bool:
    n = case["image_embeds"].shape[1]
    mask = _part(got, "attention_mask")
    return mask.shape == expected["attention_mask"].shape and (mask[:, :n] == 0).all()


def _image_labelled(case, expected, got) -> bool:
    n = case["image_embeds"].shape[1]
    labels = _part(got, "labels")
    return labels.shape == expected["labels"].shape and (labels[:, :n] != IGNORE).any()


def _text_first(case, expected, got) -> bool:
    embeds = _part(got, "inputs_embeds")
    swapped = np.concatenate([case["text_embeds"], case["image_embeds"]], axis=1)
    return embeds.shape == swapped.shape and np.array_equal(embeds, swapped)


def _describe_join(case: dict) -> str:
    b, n, d = case["image_embeds"].shape
    labels = "labels (B, T)" if case["labels"] is not None else "labels=None"
    return (
        f"B={b}, {n} image tokens and {case['text_embeds'].shape[1]} text tokens of width {d}, "
        f"{labels}"
    )


JOIN = Question(
    qid="ex05_join_inputs",
    points=3,
    name="my_join_inputs",
    prompt="my_join_inputs(image_embeds, text_embeds, attention_mask, labels) -> dict with "
    "inputs_embeds "
    "(B, N+T, D), attention_mask (B, N+T) and, unless labels is None, labels (B, N+T): image "
    "tokens "
    "first, then the text.",
    oracle=vlm.join_inputs,
    visible=(
        _join_case(0, 1, 4, 6, 4),
        _join_case(1, 3, 9, 8, 8),
        _join_case(2, 2, 4, 5, 4, with_labels=False),
    ),
    hidden=_join_hidden,
    prepare=as_tensors,
    compare=Exact(),
    describe=_describe_join,
    hints=(
        Hint(
            "The image tokens come first, then the text: torch.cat([image_embeds, text_embeds], "
            "dim=1).",
            _text_first,
        ),
        Hint(
            "The image positions must be attended to: put 1 in the attention mask there (with 0 "
            "the language "
            "model cannot see the image at all).",
            _image_masked,
        ),
        Hint(
            "There is nothing to predict on the image positions: their labels are -100, so the "
            "loss ignores them.",
            _image_labelled,
        ),
    ),
)

# --- ex05_text_row
# ---------------------------------------------------------------------------------------


def _row_case(
    prompt_ids: list[int], answer_ids: list[int], eos_id: int, pad_id: int, length: int
) -> dict:
    return {
        "prompt_ids": prompt_ids,
        "answer_ids": answer_ids,
        "eos_id": eos_id,
        "pad_id": pad_id,
        "length": length,
    }


def _course_row(question: str, answer: str, extra: int) -> dict:
    tok = tokenizer.build_tokenizer()
    prompt = list(tok(question)["input_ids"])  # [BOS] question [EOS]
    words = list(tok(answer, add_special_tokens=False)["input_ids"])
    return _row_case(
        prompt, words, tok.eos_token_id, tok.pad_token_id, len(prompt) + len(words) + 1 + extra
    )


def _row_hidden(rng: random.Random, n: int) -> list[dict]:
    cases = []
    for _ in range(n):
        # special ids drawn anew each time: the row depends on the ids it is given, not on the
        # course's vocabulary
        pad, bos, eos = rng.sample(range(8), 3)
        words = list(range(8, 60))
        prompt = [bos, *rng.choices(words, k=rng.randint(0, 6)), eos]
        answer = rng.choices(words, k=rng.randint(1, 12))
        cases.append(
            _row_case(prompt, answer, eos, pad, len(prompt) + len(answer) + 1 + rng.randint(0, 5))
        )
    return cases


def _row_labels(got) -> np.ndarray:
    return got[2]


def _prompt_labelled(case, expected, got) -> bool:
    p = len(case["prompt_ids"])
    labels = _row_labels(got)
    return (labels[:p] != IGNORE).any() and np.array_equal(labels[p:], expected[2][p:])


def _no_eos_label(case, expected, got) -> bool:
    end = len(case["prompt_ids"]) + len(case["answer_ids"])  # where the [EOS] label belongs
    labels = _row_labels(got)
    return labels[end] != case["eos_id"] and np.array_equal(labels[:end], expected[2][:end])


def _shifted(case, expected, got) -> bool:
    labels, reference = _row_labels(got), expected[2]
    return np.array_equal(labels[:-1], reference[1:]) or np.array_equal(labels[1:], reference[:-1])


def _all_ignored(case, expected, got) -> bool:
    return bool((_row_labels(got) == IGNORE).all())


def _padding_labelled(case, expected, got) -> bool:
    end = len(case["prompt_ids"]) + len(case["answer_ids"]) + 1
    labels = _row_labels(got)
    return (
        end < case["length"]
        and (labels[end:] != IGNORE).any()
        and np.array_equal(labels[:end], expected[2][:end])
    )


def _padding_attended(case, expected, got) -> bool:
    end = len(case["prompt_ids"]) + len(case["answer_ids"]) + 1
    return end < case["length"] and (got[1][end:] != 0).any()


ROW = Question(
    qid="ex05_text_row",
    points=3,
    name="my_text_row",
    prompt="my_text_row(prompt_ids, answer_ids, eos_id, pad_id, length) -> (input_ids, "
    "attention_mask, labels), "
    "three int64 tensors of shape (length,): prompt, answer, [EOS], then padding; labels -100 "
    "except on "
    "the answer and its [EOS].",
    oracle=vlm.text_row,
    visible=(
        _course_row("where is the red circle", "top left", 3),
        _course_row("", "a red circle at the top left", 0),
        _course_row("is there a blue square", "no", 5),
    ),
    hidden=_row_hidden,
    compare=Exact(),
    describe=lambda case: (
        f"prompt_ids={case['prompt_ids']}, answer_ids={case['answer_ids']}, "
        f"eos_id={case['eos_id']}, pad_id={case['pad_id']}, length={case['length']}"
    ),
    hints=(
        Hint(
            "Every label is -100: the loss would be 0 (or NaN) and the model would learn nothing. "
            "Label the "
            "answer and its [EOS].",
            _all_ignored,
        ),
        Hint(
            "Do not shift the labels yourself: the language model (and answer_loss) shifts them "
            "inside, so "
            "labels[t] = input_ids[t] on the answer.",
            _shifted,
        ),
        Hint(
            "The prompt is given, not predicted: its labels are -100. Only the answer and its "
            "[EOS] carry labels "
            "(otherwise the model spends its capacity learning the questions).",
            _prompt_labelled,
        ),
        Hint(
            "The [EOS] after the answer is a label too: without it the model never learns to stop.",
            _no_eos_label,
        ),
        Hint("The padding is not predicted either: -100 there, not the pad id.", _padding_labelled),
        Hint(
            "The attention mask is 0 on the padding (1 on the prompt, the answer and its [EOS]).",
            _padding_attended,
        ),
    ),
)

# --- ex05_answer_loss
# ------------------------------------------------------------------------------------


def _loss_case(seed: int, answer_lengths: list[int], vocab: int) -> dict:
    """One example per answer length: a prefix (image + prompt) of -100, the answer's labels, then
    padding."""
    rng = np.random.default_rng(seed)
    prefixes = [int(rng.integers(2, 7)) for _ in answer_lengths]
    length = max(p + a for p, a in zip(prefixes, answer_lengths)) + int(rng.integers(0, 3))
    labels = np.full((len(answer_lengths), length), IGNORE, dtype=np.int64)
    for i, (p, a) in enumerate(zip(prefixes, answer_lengths)):
        labels[i, p : p + a] = rng.integers(0, vocab, a)
    logits = (rng.standard_normal((len(answer_lengths), length, vocab)) * 2).astype(np.float32)
    return {"logits": logits, "labels": labels}


def _loss_hidden(rng: random.Random, n: int) -> list[dict]:
    return [
        _loss_case(
            rng.randrange(2**31),
            [rng.randint(1, 12) for _ in range(rng.randint(1, 5))],
            rng.choice([8, 16, 45]),
        )
        for _ in range(n)
    ]


def _loss_reference(logits, labels):
    return vlm.answer_loss(logits, labels, per="example")


def _close_to(value, got) -> bool:
    return type(got) is float and abs(got - value) <= 1e-4 * max(1.0, abs(value))


def _token_mean(case, expected, got) -> bool:
    t = as_tensors(case)
    return _close_to(vlm.answer_loss(t["logits"], t["labels"], per="token").item(), got)


def _per_position(case, shift: bool = True) -> tuple[torch.Tensor, torch.Tensor]:
    t = as_tensors(case)
    logits, labels = (
        (t["logits"][:, :-1], t["labels"][:, 1:]) if shift else (t["logits"], t["labels"])
    )
    # (B, L)
    losses = F.cross_entropy(logits.transpose(1, 2), labels, ignore_index=IGNORE, reduction="none")
    return losses, (labels != IGNORE).float()


def _not_shifted(case, expected, got) -> bool:
    losses, counted = _per_position(case, shift=False)
    return _close_to(((losses * counted).sum(1) / counted.sum(1)).mean().item(), got)


def _ignored_in_mean(case, expected, got) -> bool:
    losses, _ = _per_position(case)
    return _close_to(losses.mean(1).mean().item(), got) or _close_to(losses.mean().item(), got)


LOSS = Question(
    qid="ex05_answer_loss",
    points=3,
    name="my_answer_loss",
    prompt="my_answer_loss(logits, labels) -> scalar: next-token cross-entropy (position t "
    "predicts label t+1) "
    "on the positions whose label is not -100, averaged within each example, then over the "
    "examples.",
    oracle=_loss_reference,
    references=("mmcourse.vlm.answer_loss",),
    visible=(
        _loss_case(0, [1, 6], 8),
        _loss_case(1, [2, 9, 1], 16),
        _loss_case(2, [3, 1, 12, 2], 45),
    ),
    hidden=_loss_hidden,
    prepare=as_tensors,
    compare=Close(rtol=1e-4, atol=1e-5),
    describe=lambda case: (
        f"logits {tuple(case['logits'].shape)}, labels {tuple(case['labels'].shape)} with "
        f"{(case['labels'] != IGNORE).sum(1).tolist()} labelled positions per example"
    ),
    hints=(
        Hint(
            "Shift first: the logits at position t predict the label at t + 1, so compare "
            "logits[:, :-1] with "
            "labels[:, 1:].",
            _not_shifted,
        ),
        Hint(
            "That is the mean over all labelled tokens of the batch (Hugging Face's loss): average "
            "within each "
            "example first, then over the examples, so a long caption does not outweigh a one-word "
            "answer.",
            _token_mean,
        ),
        Hint(
            "Average over the labelled positions only: the -100 positions are not part of the "
            "mean.",
            _ignored_in_mean,
        ),
    ),
)

# --- ex05_expand_image
# ----------------------------------------------------------------------------------

# the course's word ids, and three added tokens as lesson 05 adds them: <image> 45, USER: 46,
# ASSISTANT: 47
_IMAGE, _USER, _ASSISTANT, _BOS, _EOS = 45, 46, 47, 1, 3


def _expand_case(ids: list[int], assistant: list[int], image_token_id: int, n: int) -> dict:
    return {
        "input_ids": np.array(ids, dtype=np.int64),
        "assistant_mask": np.array(assistant, dtype=np.int64),
        "image_token_id": image_token_id,
        "num_image_tokens": n,
    }


def _llava_turns(turns: list[tuple[list[int], list[int]]], n: int) -> dict:
    """USER: <image> q ASSISTANT: a [EOS] (USER: q ASSISTANT: a [EOS] ...): the image in the first
    turn."""
    ids, assistant = [], []
    for k, (question, answer) in enumerate(turns):
        user = [_USER, *([_IMAGE] if k == 0 else []), *question, _ASSISTANT]
        ids += [*user, *answer, _EOS]
        assistant += [0] * len(user) + [1] * (len(answer) + 1)
    return _expand_case(ids, assistant, _IMAGE, n)


def _expand_hidden(rng: random.Random, n: int) -> list[dict]:
    cases = []
    for _ in range(n):
        image = rng.randrange(40, 200)
        words = [w for w in range(4, 200) if w != image]
        length = rng.randint(4, 20)
        ids = rng.choices(words, k=length)
        at = rng.randrange(length)  # where the placeholder is
        ids[at] = image
        assistant = [0] * length
        for _ in range(rng.randint(1, 2)):  # one or two assistant turns, after the placeholder
            if at + 1 < length:
                start = rng.randrange(at + 1, length)
                for j in range(start, min(length, start + rng.randint(1, 5))):
                    assistant[j] = 1
        if not any(assistant):
            assistant[-1] = 1 if at != length - 1 else 0
        cases.append(_expand_case(ids, assistant, image, rng.choice([1, 2, 4, 9, 16, 49])))
    return cases


def _expand_parts(case):
    ids, mask = list(case["input_ids"]), list(case["assistant_mask"])
    i, n = ids.index(case["image_token_id"]), case["num_image_tokens"]
    return ids, mask, i, n


def _placeholder_kept(case, expected, got) -> bool:
    ids, _, _, n = _expand_parts(case)
    return len(got[0]) == len(ids) + n and int((got[0] == case["image_token_id"]).sum()) == n + 1


def _image_at_start(case, expected, got) -> bool:
    ids, _, i, n = _expand_parts(case)
    at_start = [case["image_token_id"]] * n + ids[:i] + ids[i + 1 :]
    return i > 0 and np.array_equal(got[0], at_start)


def _all_labelled(case, expected, got) -> bool:
    return np.array_equal(got[1], expected[0])


def _image_labelled(case, expected, got) -> bool:
    _, _, i, n = _expand_parts(case)
    return len(got[1]) == len(expected[1]) and bool((got[1][i : i + n] != IGNORE).any())


def _labels_shifted(case, expected, got) -> bool:
    labels, reference = got[1], expected[1]
    return len(labels) == len(reference) and (
        np.array_equal(labels[:-1], reference[1:]) or np.array_equal(labels[1:], reference[:-1])
    )


def _mask_not_expanded(case, expected, got) -> bool:
    _, mask, _, n = _expand_parts(case)
    padded = np.array(mask + [0] * (n - 1))  # the mask left where it was, zeros at the end
    return n > 1 and np.array_equal(got[1], np.where(padded == 1, expected[0], IGNORE))


def _describe_expand(case: dict) -> str:
    return (
        f"input_ids={case['input_ids'].tolist()}, "
        f"assistant_mask={case['assistant_mask'].tolist()}, "
        f"image_token_id={case['image_token_id']}, num_image_tokens={case['num_image_tokens']}"
    )


EXPAND = Question(
    qid="ex05_expand_image",
    points=4,
    name="my_expand_image_tokens",
    prompt="my_expand_image_tokens(input_ids, assistant_mask, image_token_id, num_image_tokens) -> "
    "(input_ids, labels), two int64 tensors of length T - 1 + N: the one image placeholder "
    "repeated N times in its place; labels the ids on the assistant's tokens, -100 elsewhere.",
    oracle=vlm.expand_image_tokens,
    visible=(
        _llava_turns([([15, 12, 7, 22, 28], [36, 37])], 9),
        _llava_turns([([10, 11, 12, 7, 29], [26]), ([15, 12, 7, 22, 28], [36, 37])], 4),
        _expand_case(
            [_IMAGE, _BOS, 15, 12, 7, 22, 28, _EOS, 36, 37, _EOS], [0] * 8 + [1, 1, 1], _IMAGE, 1
        ),
    ),
    hidden=_expand_hidden,
    prepare=as_tensors,
    compare=Exact(),
    describe=_describe_expand,
    hints=(
        Hint(
            "The placeholder is replaced, not kept: N image ids take its place, so the sequence is "
            "T - 1 + N long and holds N image ids, not N + 1.",
            _placeholder_kept,
        ),
        Hint(
            "The image ids go where the placeholder is (in LLaVA's template after 'USER:'), not at "
            "the start of the sequence.",
            _image_at_start,
        ),
        Hint(
            "Only the assistant's tokens are learned: -100 on the user's turn, the template's "
            "words and the image positions (labels = input_ids trains the model on the questions).",
            _all_labelled,
        ),
        Hint(
            "Do not shift the labels: the model shifts them itself, so labels[t] = input_ids[t] on "
            "the assistant's tokens.",
            _labels_shifted,
        ),
        Hint(
            "Expand the assistant mask together with the ids: every token after the placeholder "
            "moves N - 1 places to the right, and its mask value with it.",
            _mask_not_expanded,
        ),
        Hint(
            "The image positions have nothing to predict: their labels are -100, whatever the "
            "assistant mask says around them.",
            _image_labelled,
        ),
    ),
)

QUESTIONS = (JOIN, ROW, LOSS, EXPAND)
