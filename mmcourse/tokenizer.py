"""The course's word-level tokenizer: every word of the shapes world, one id each.

Lesson 00 teaches it (and exercise 00 has the learner write its encoding step). It is built with the
`tokenizers` library and wrapped as a transformers fast tokenizer, so `save_pretrained` and
`AutoTokenizer.from_pretrained` work on it like on any Hugging Face model's tokenizer.

Encoding, step by step (`normalize` and `words` mirror the first two in plain Python):

1. normalize: Unicode NFKC, lower case, every punctuation mark but the comma becomes a space
   ("Where is the RED circle?" -> "where is the red circle ");
2. split into words at spaces, the comma being a word of its own;
3. look each word up in the vocabulary; unknown words become [UNK];
4. wrap in [BOS] ... [EOS].

Special ids: [PAD] 0, [BOS] 1, [UNK] 2, [EOS] 3. EOS is deliberately not 2: Hugging Face's CLIP text
model has an old rule that, when `eos_token_id == 2`, pools the highest token id instead of EOS.
"""

from __future__ import annotations

import re
import unicodedata
from collections.abc import Iterable, Mapping

from tokenizers import Regex, Tokenizer, models, normalizers, pre_tokenizers, processors
from transformers import PreTrainedTokenizerFast

from . import data

__all__ = [
    "MODEL_MAX_LENGTH",
    "SPECIAL_TOKENS",
    "VOCAB",
    "build_tokenizer",
    "from_vocab",
    "normalize",
    "unknown_words",
    "words",
]

PAD, BOS, UNK, EOS = "[PAD]", "[BOS]", "[UNK]", "[EOS]"
SPECIAL_TOKENS: tuple[str, ...] = (PAD, BOS, UNK, EOS)
# : Longer than any caption, question or answer of the shapes world (a 3-object caption is 25
# tokens).
MODEL_MAX_LENGTH = 64

_GRAMMAR_WORDS = (
    "a",
    "an",
    "at",
    "the",
    "and",
    ",",
    "what",
    "color",
    "is",
    "shape",
    "object",
    "where",
    "how",
    "many",
    "are",
    "there",
    "yes",
    "no",
)


def _world_words() -> list[str]:
    """Every word the shapes world writes, in a fixed order (so ids never move between versions)."""
    words: list[str] = []
    for group in (
        _GRAMMAR_WORDS,
        data.COLORS,
        data.SHAPES,
        tuple(data.PLURALS.values()),
        tuple(w for p in data.POSITIONS for w in p.split()),
        data.COUNT_ANSWERS,
    ):
        for word in group:
            if word not in words:
                words.append(word)
    return words


#: word -> id, specials first.
VOCAB: dict[str, int] = {w: i for i, w in enumerate([*SPECIAL_TOKENS, *_world_words()])}

_PUNCTUATION = r"[^\w\s,]"


def normalize(text: str) -> str:
    """Step 1 in plain Python, identical to the tokenizer's normalizer."""
    return re.sub(_PUNCTUATION, " ", unicodedata.normalize("NFKC", text).lower())


def words(text: str) -> list[str]:
    """Steps 1-2: the words the tokenizer looks up ("Is there a RED circle?" -> [is, there, a, red,
    circle])."""
    return re.findall(r"[^\s,]+|,", normalize(text))


def unknown_words(text: str, vocab: Mapping[str, int] = VOCAB) -> list[str]:
    """The words of `text` that would become [UNK], in order, without repeats."""
    return list(dict.fromkeys(w for w in words(text) if w not in vocab))


def from_vocab(vocab: Mapping[str, int]) -> PreTrainedTokenizerFast:
    """A fast tokenizer for any word -> id mapping that contains the four special tokens."""
    missing = [t for t in SPECIAL_TOKENS if t not in vocab]
    if missing:
        raise ValueError(
            f"the vocabulary lacks the special tokens {missing}; it needs all of "
            f"{list(SPECIAL_TOKENS)}."
        )
    if len(set(vocab.values())) != len(vocab):
        raise ValueError("two words of the vocabulary share an id; every word needs its own id.")
    core = Tokenizer(models.WordLevel(dict(vocab), unk_token=UNK))
    core.normalizer = normalizers.Sequence(
        [normalizers.NFKC(), normalizers.Lowercase(), normalizers.Replace(Regex(_PUNCTUATION), " ")]
    )
    # After normalization only words, spaces and commas are left: split at spaces, then each comma
    # alone.
    core.pre_tokenizer = pre_tokenizers.Sequence(
        [pre_tokenizers.WhitespaceSplit(), pre_tokenizers.Split(",", behavior="isolated")]
    )
    core.post_processor = processors.TemplateProcessing(
        single=f"{BOS} $A {EOS}",
        pair=f"{BOS} $A {EOS} $B:1 {EOS}:1",
        special_tokens=[(BOS, vocab[BOS]), (EOS, vocab[EOS])],
    )
    return PreTrainedTokenizerFast(
        tokenizer_object=core,
        bos_token=BOS,
        eos_token=EOS,
        unk_token=UNK,
        pad_token=PAD,
        model_max_length=MODEL_MAX_LENGTH,
        clean_up_tokenization_spaces=True,  # decode gives "a red circle, a ..." not "circle , a"
    )


def build_tokenizer(extra_words: Iterable[str] = ()) -> PreTrainedTokenizerFast:
    """The shapes-world tokenizer; `extra_words` are appended after the world's words."""
    vocab = dict(VOCAB)
    for word in extra_words:
        if normalize(word).split() != [word]:
            raise ValueError(
                f"{word!r} is not a normalized single word (lower case, no punctuation, no spaces)."
            )
        vocab.setdefault(word, len(vocab))
    return from_vocab(vocab)
