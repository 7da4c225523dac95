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


def test_a_described_scene_is_each_cell_in_words_in_reading_order():
    scene = data.Scene(
        (data.SceneObject("red", "circle", "top"), data.SceneObject("blue", "square", "top left"))
    )
    cells = frozen_lm.cell_words(scene)
    assert len(cells) == 9
    assert cells[0] == ["blue", "square", "top", "left"]
    assert cells[1] == ["red", "circle", "top"]
    assert cells[2] == ["empty", "top", "right"] and cells[-1] == ["empty", "bottom", "right"]
    assert frozen_lm.described_scene(scene).startswith("blue square top left | red circle top |")


def test_the_tokenizer_adds_one_word_and_moves_no_course_id(tokenizer):
    from mmcourse.tokenizer import VOCAB

    assert len(tokenizer) == len(VOCAB) + 1
    for word, index in VOCAB.items():
        assert tokenizer.convert_tokens_to_ids(word) == index
    for scene in data.scenes("val", 20):
        for words in frozen_lm.cell_words(scene):
            assert tokenizer.unk_token_id not in tokenizer.convert_tokens_to_ids(words)


def test_a_cell_vector_is_the_sum_of_its_words_embeddings(tokenizer, text_model):
    scenes = data.scenes("val", 3, n_objects=2)
    cells = frozen_lm.scene_embeddings(text_model, tokenizer, scenes)
    assert cells.shape == (3, 9, TINY.hidden_size)
    table = text_model.get_input_embeddings().weight
    for b, scene in enumerate(scenes):
        for c, words in enumerate(frozen_lm.cell_words(scene)):
            by_hand = table[tokenizer.convert_tokens_to_ids(words)].sum(0)
            torch.testing.assert_close(cells[b, c], by_hand)


def test_a_text_row_is_the_vlm_row_with_cells_for_image_tokens(tokenizer, text_model):
    reader = frozen_lm.TextLM(text_model, tokenizer)
    scene, qa = data.qa_example(3, kind="color")
    inputs = reader.training_inputs([scene], [qa.question], [qa.answer])
    text = frozen_lm.text_batch(tokenizer, [qa.question], [qa.answer])
    length = text["input_ids"].shape[1]
    assert inputs["inputs_embeds"].shape == (1, 9 + length, TINY.hidden_size)
    assert inputs["attention_mask"][0, :9].tolist() == [1] * 9
    labels = inputs["labels"][0]
    assert (labels[:9] == IGNORE_INDEX).all()
    labelled = labels[labels != IGNORE_INDEX].tolist()
    assert tokenizer.convert_ids_to_tokens(labelled) == [qa.answer, "[EOS]"]
    alone = reader.training_inputs(None, [""], ["a red circle at the top"])
    assert alone["inputs_embeds"].shape[1] == alone["labels"].shape[1] < 9 + 12
    with pytest.raises(ValueError, match="as many"):
        frozen_lm.text_batch(tokenizer, ["a"], [])


def test_reading_generates_through_the_vlm_path(tokenizer, text_model):
    reader = frozen_lm.TextLM(text_model, tokenizer)
    scenes = data.scenes("val", 3)
    inputs = reader.generation_inputs(scenes, ["", "what color is the circle ?", ""])
    assert inputs["inputs_embeds"].shape[:2] == inputs["attention_mask"].shape
    # left padded: every row ends where generation starts
    assert inputs["attention_mask"][:, -1].all()
    answers = frozen_lm.read_scenes(reader, scenes, ["", "", ""], max_new_tokens=4)
    assert len(answers) == 3 and all(isinstance(a, str) for a in answers)
    with pytest.raises(ValueError, match="3 scenes but 1 questions"):
        frozen_lm.read_scenes(reader, scenes, [""])


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
    ids = torch.randint(4, 40, (2, 11))
    with torch.no_grad():
        adapted = model(input_ids=ids).logits
        merged = frozen_lm.merge_lora(model)
        assert type(merged).__name__ == "LlamaForCausalLM"
        torch.testing.assert_close(merged(input_ids=ids).logits, adapted, rtol=1e-4, atol=1e-4)
        assert not torch.allclose(text_model(input_ids=ids).logits, adapted)


def test_attribute_hits():
    cell = ["red", "circle", "top", "left"]
    assert frozen_lm.attribute_hits(cell, cell) == {
        "color": True,
        "shape": True,
        "position": True,
        "all": True,
    }
    assert frozen_lm.attribute_hits(["red", "square", "top"], cell) == {
        "color": True,
        "shape": False,
        "position": False,
        "all": False,
    }
    # an object read as empty: wrong content, right place
    assert frozen_lm.attribute_hits(["empty", "top", "left"], cell) == {
        "color": False,
        "shape": False,
        "position": True,
        "all": False,
    }
    assert frozen_lm.attribute_hits(["empty", "top"], ["empty", "top"]) == {
        "empty": True,
        "position": True,
    }
    assert frozen_lm.attribute_hits(["blue", "circle", "top"], ["empty", "top"]) == {
        "empty": False,
        "position": True,
    }
    assert frozen_lm.word_hits(["red", "top", "a"], cell) == {"color": True, "shape": False}
    assert len(frozen_lm.possible_cells()) == 9 * 25
