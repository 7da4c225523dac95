"""The word-level tokenizer: normalization, special ids, unknown words, save/load round trip."""

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from transformers import AutoTokenizer, PreTrainedTokenizerFast

from mmcourse import data, tokenizer


@pytest.fixture(scope="module")
def tok():
    return tokenizer.build_tokenizer()


def test_special_ids_and_eos_is_not_2(tok):
    assert (tok.pad_token_id, tok.bos_token_id, tok.unk_token_id, tok.eos_token_id) == (0, 1, 2, 3)
    assert tok.eos_token_id != 2
    assert isinstance(tok, PreTrainedTokenizerFast)


def test_every_world_text_is_known(tok):
    for seed in range(300):
        scene, qa = data.qa_example(seed)
        for text in (data.caption(scene), data.alt_text(scene), qa.question, qa.answer):
            ids = tok(text)["input_ids"]
            assert tok.unk_token_id not in ids, text
            assert ids[0] == tok.bos_token_id and ids[-1] == tok.eos_token_id
            assert len(ids) <= tokenizer.MODEL_MAX_LENGTH


def test_case_and_punctuation_are_normalized(tok):
    same = [
        "Where is the red circle?",
        "where is the red circle ?",
        "WHERE is the Red circle!",
        "where is the red circle",
    ]
    assert len({tuple(tok(t)["input_ids"]) for t in same}) == 1


def test_caption_decodes_back(tok):
    for seed in range(50):
        caption = data.caption(data.random_scene(seed))
        assert tok.decode(tok(caption)["input_ids"], skip_special_tokens=True) == caption


def test_unknown_words_become_unk_and_are_named(tok):
    ids = tok("Is there a pink star?")["input_ids"]
    assert ids.count(tok.unk_token_id) == 2
    assert tokenizer.unknown_words("Is there a pink star? 红色 pink") == ["pink", "star", "红色"]


def test_round_trip_through_save_pretrained(tok, tmp_path):
    tok.save_pretrained(tmp_path)
    loaded = AutoTokenizer.from_pretrained(tmp_path)
    for text in [
        "a red circle at the top left, an orange square",
        "How many Diamonds are there?",
        "zebra",
    ]:
        assert loaded(text)["input_ids"] == tok(text)["input_ids"]
    assert loaded.eos_token_id == 3 and loaded.pad_token_id == 0
    batch = loaded(["a red", "where is the red circle"], padding=True, return_tensors="pt")
    assert (
        batch["input_ids"].shape == batch["attention_mask"].shape
        and batch["attention_mask"][0, -1] == 0
    )


@settings(max_examples=300, deadline=None)
@given(st.text(alphabet=st.sampled_from(list("abcdefgXYZ ,.?!'-_09éÄ\t")), max_size=40))
def test_python_mirror_matches_the_tokenizer(text):
    tok = tokenizer.build_tokenizer(extra_words=())
    expected = [tokenizer.VOCAB.get(w, 2) for w in tokenizer.words(text)]
    assert tok(text)["input_ids"][1:-1] == expected


def test_bad_vocabularies_are_clear_errors():
    with pytest.raises(ValueError, match="lacks the special tokens"):
        tokenizer.from_vocab({"a": 0})
    with pytest.raises(ValueError, match="share an id"):
        tokenizer.from_vocab({**tokenizer.VOCAB, "zebra": 4})
    with pytest.raises(ValueError, match="not a normalized single word"):
        tokenizer.build_tokenizer(["Two words"])
