"""Lesson 09's concepts: described scenes, text batches, freezing and counting, LoRA by hand against
`peft`, nearest words."""

import pytest
import torch

from mmcourse import data, frozen_lm
from mmcourse.language_model import LanguageConfig, build_language_model
from mmcourse.vlm import IGNORE_INDEX

TINY = LanguageConfig(hidden_size=32, layers=2, heads=2, intermediate_size=64)


@pytest.fixture(scope="module")
def tokenizer():
    return frozen_lm.build_lm_tokenizer()


@pytest.fixture(scope="module")
def text_model(tokenizer):
    torch.manual_seed(0)
    return build_language_model(TINY, vocab_size=len(tokenizer)).eval()


def test_a_described_scene_is_one_word_per_cell_in_reading_order():
    scene = data.Scene(
        (data.SceneObject("red", "circle", "top"), data.SceneObject("blue", "square", "left"))
    )
    words = frozen_lm.cell_words(scene)
    assert len(words) == 9
    assert words[data.POSITIONS.index("top")] == "red_circle"
    assert words[data.POSITIONS.index("left")] == "blue_square"
    assert words[0] == "empty_top_left" and words[-1] == "empty_bottom_right"
    assert sum(w.startswith("empty_") for w in words) == 7
    assert frozen_lm.described_scene(scene) == " ".join(words)


def test_every_cell_word_is_one_token_and_the_course_ids_do_not_move(tokenizer):
    from mmcourse.tokenizer import VOCAB

    for word in frozen_lm.CELL_WORDS:
        ids = tokenizer(word, add_special_tokens=False)["input_ids"]
        assert len(ids) == 1 and ids[0] != tokenizer.unk_token_id, word
    for word, index in VOCAB.items():
        assert tokenizer.convert_tokens_to_ids(word) == index
    assert len(tokenizer) == len(VOCAB) + len(frozen_lm.CELL_WORDS)


def test_a_text_row_is_the_vlm_row_with_cell_words_for_image_tokens(tokenizer):
    scene, qa = data.qa_example(3, kind="color")
    batch = frozen_lm.text_batch(tokenizer, [scene, None], [qa.question, ""], [qa.answer, "a b"])
    ids, mask, labels = batch["input_ids"], batch["attention_mask"], batch["labels"]
    assert ids.shape == mask.shape == labels.shape and ids.shape[0] == 2
    row = tokenizer.convert_ids_to_tokens(ids[0][mask[0] == 1].tolist())
    assert row[:9] == frozen_lm.cell_words(scene)
    assert row[9] == "[BOS]" and row[-2:] == [qa.answer, "[EOS]"]
    labelled = labels[0][labels[0] != IGNORE_INDEX].tolist()
    assert tokenizer.convert_ids_to_tokens(labelled) == [qa.answer, "[EOS]"]
    # no scene: the row starts at [BOS]
    assert tokenizer.convert_ids_to_tokens(ids[1, :2].tolist()) == ["[BOS]", "[EOS]"]
    with pytest.raises(ValueError, match="as many"):
        frozen_lm.text_batch(tokenizer, [scene], [], [])


def test_reading_generates_through_the_vlm_path(tokenizer, text_model):
    reader = frozen_lm.TextLM(text_model, tokenizer)
    scenes = data.scenes("val", 3)
    inputs = reader.generation_inputs(scenes, ["", "what color is the circle ?", ""])
    assert inputs["inputs_embeds"].shape[:2] == inputs["attention_mask"].shape
    # left padded: every row ends where generation starts
    assert inputs["attention_mask"][:, -1].all()
    answers = frozen_lm.read_scenes(reader, scenes, ["", "", ""], max_new_tokens=4)
    assert len(answers) == 3 and all(isinstance(a, str) for a in answers)


def _peft_q_proj(text_model):
    import copy

    model = frozen_lm.add_lora(
        copy.deepcopy(text_model), frozen_lm.LoraSettings(rank=4, alpha=8, targets=("q_proj",))
    )
    layer = model.base_model.model.model.layers[0].self_attn.q_proj
    with torch.no_grad():
        layer.lora_B["default"].weight.normal_()  # B starts at 0; give it values to compare
    return layer


def test_lora_by_hand_equals_peft(text_model):
    layer = _peft_q_proj(text_model)
    x = torch.randn(3, 7, TINY.hidden_size)
    by_hand = frozen_lm.lora_forward(
        x,
        layer.base_layer.weight,
        layer.base_layer.bias,
        layer.lora_A["default"].weight,
        layer.lora_B["default"].weight,
        layer.scaling["default"],
    )
    assert layer.scaling["default"] == 2.0  # alpha / rank
    torch.testing.assert_close(by_hand, layer(x))
    # a wrong scale is caught
    wrong = frozen_lm.lora_forward(
        x,
        layer.base_layer.weight,
        layer.base_layer.bias,
        layer.lora_A["default"].weight,
        layer.lora_B["default"].weight,
        1.0,
    )
    assert not torch.allclose(wrong, layer(x))


def test_peft_freezes_the_base_and_merging_keeps_the_function(text_model):
    import copy

    model = frozen_lm.add_lora(copy.deepcopy(text_model), frozen_lm.LoraSettings(rank=2))
    trainable = {n for n, p in model.named_parameters() if p.requires_grad}
    assert trainable and all("lora_" in n for n in trainable)
    hidden, inter = TINY.hidden_size, TINY.intermediate_size
    # per layer, rank r: q, k, v, o (hidden -> hidden) and gate, up (hidden -> inter), down
    per_layer = 2 * (4 * 2 * hidden + 2 * (hidden + inter) + (inter + hidden))
    assert sum(p.numel() for n, p in model.named_parameters() if n in trainable) == (
        TINY.layers * per_layer
    )
    for name, p in model.named_parameters():
        if "lora_B" in name:
            with torch.no_grad():
                p.normal_(std=0.1)
    ids = torch.randint(4, 60, (2, 11))
    with torch.no_grad():
        adapted = model(input_ids=ids).logits
        merged = frozen_lm.merge_lora(model)
        assert type(merged).__name__ == "LlamaForCausalLM"
        torch.testing.assert_close(merged(input_ids=ids).logits, adapted, rtol=1e-4, atol=1e-4)
        assert not torch.allclose(text_model(input_ids=ids).logits, adapted)


def test_attribute_hits():
    assert frozen_lm.attribute_hits("red_circle", "red_circle") == {
        "color": True,
        "shape": True,
        "both": True,
    }
    assert frozen_lm.attribute_hits("red", "red_circle") == {
        "color": True,
        "shape": False,
        "both": False,
    }
    assert frozen_lm.attribute_hits("blue_circle", "red_circle")["shape"]
    assert frozen_lm.attribute_hits("empty_top", "empty_top") == {"empty": True, "position": True}
    assert frozen_lm.attribute_hits("empty_top", "empty_top_left") == {
        "empty": True,
        "position": False,
    }
    assert frozen_lm.attribute_hits("top", "empty_top") == {"empty": False, "position": True}
