"""The course's model is LLaVA where the architecture matches: same weights, same logits as
transformers' `LlavaForConditionalGeneration` (as minGPT's test_huggingface_import); LLaVA's
placeholder expansion and labels."""

import pytest
import torch
from transformers import CLIPVisionConfig, CLIPVisionModel, LlamaConfig, LlamaForCausalLM

from mmcourse import tokenizer, vlm

IGNORE = vlm.IGNORE_INDEX


def small_course_model(seed=0, **config):
    """A random course VLM: a 2-layer CLIP tower (16 px, 4 px patches: 16 patches), a 2-layer
    Llama."""
    torch.manual_seed(seed)
    tok = tokenizer.build_tokenizer()
    vision = CLIPVisionModel(
        CLIPVisionConfig(
            hidden_size=32,
            intermediate_size=64,
            num_hidden_layers=2,
            num_attention_heads=4,
            image_size=16,
            patch_size=4,
        )
    )
    language = LlamaForCausalLM(
        LlamaConfig(
            vocab_size=len(tok),
            hidden_size=48,
            intermediate_size=96,
            num_hidden_layers=2,
            num_attention_heads=4,
            num_key_value_heads=2,
            pad_token_id=tok.pad_token_id,
            bos_token_id=tok.bos_token_id,
            eos_token_id=tok.eos_token_id,
            tie_word_embeddings=config.pop("tie", True),
        )
    )
    vlm_config = vlm.VLMConfig(**{"merge": 1, "projector": "mlp", **config})
    return vlm.MultimodalModel(vision, language, None, tok, config=vlm_config).eval()


@pytest.mark.parametrize(
    "layer, tie", [(-1, True), (-2, True), (-1, False)], ids=["last", "penultimate", "untied"]
)
def test_same_logits_as_llava(layer, tie):
    model = small_course_model(layer=layer, tie=tie)
    llava = vlm.to_llava(model)
    torch.manual_seed(1)
    pixels = torch.randn(3, 3, 16, 16)
    questions = ["where is the red circle", "what color is the square", ""]
    batch = model.training_batch(questions, ["top left", "blue", "a red circle"])  # right-padded
    batch_labels = batch.pop("labels")
    image_id = llava.config.image_token_id
    image_ids = torch.full((3, model.num_image_tokens), image_id)
    ids = torch.cat([image_ids, batch["input_ids"]], dim=1)  # (B, N + T)
    mask = torch.cat([torch.ones_like(image_ids), batch["attention_mask"]], dim=1)
    labels = model.full_labels(batch_labels)
    with torch.no_grad():
        ours = model(pixels, **batch, labels=batch_labels)
        theirs = llava(input_ids=ids, pixel_values=pixels, attention_mask=mask)
    vocab = ours.logits.shape[-1]
    assert theirs.logits.shape == (*ours.logits.shape[:2], vocab + 1)
    real = mask.bool()  # padding positions may differ; every real position must not
    assert torch.allclose(ours.logits[real], theirs.logits[..., :vocab][real], atol=1e-5)
    # the same loss on the course's words (LLaVA's own would also count its extra <image> column)
    token_mean = vlm.answer_loss(theirs.logits[..., :vocab], labels, per="token")
    assert torch.allclose(ours.loss, token_mean, atol=1e-5)


def test_llava_input_ids_match_the_course_prompt():
    model = small_course_model()
    llava = vlm.to_llava(model)
    pixels = torch.randn(1, 3, 16, 16)
    prompt = torch.tensor([model.prompt_ids("is there a blue square")])
    ids = vlm.llava_input_ids(model, "is there a blue square", llava.config.image_token_id)
    assert ids.shape == (1, model.num_image_tokens + prompt.shape[1])
    with torch.no_grad():
        ours = model(pixels, prompt, torch.ones_like(prompt)).logits
        theirs = llava(input_ids=ids, pixel_values=pixels).logits[..., :-1]
    assert torch.allclose(ours, theirs, atol=1e-5)


@pytest.mark.parametrize(
    "config, message",
    [
        ({"merge": 2}, "merge=1"),
        ({"image_tokens": "cls"}, "merge=1"),
        ({"projector": "linear"}, "mlp"),
    ],
)
def test_to_llava_refuses_other_layouts(config, message):
    with pytest.raises(ValueError, match=message):
        vlm.to_llava(small_course_model(**config))


def test_expand_image_tokens():
    ids = torch.tensor([5, 9, 7, 8, 30, 31, 3])  # USER: <image> q q ASSISTANT: a [EOS]
    assistant = torch.tensor([0, 0, 0, 0, 0, 1, 1])
    new_ids, labels = vlm.expand_image_tokens(ids, assistant, image_token_id=9, num_image_tokens=3)
    assert new_ids.tolist() == [5, 9, 9, 9, 7, 8, 30, 31, 3]
    assert labels.tolist() == [IGNORE] * 7 + [31, 3]
    assert new_ids.dtype == labels.dtype == torch.long


def test_expand_image_tokens_two_turns_and_one_token():
    ids = torch.tensor([9, 4, 20, 3, 5, 21, 22, 3])
    assistant = torch.tensor([0, 0, 1, 1, 0, 1, 1, 1])
    new_ids, labels = vlm.expand_image_tokens(ids, assistant, 9, 1)
    assert torch.equal(new_ids, ids)
    assert labels.tolist() == [IGNORE, IGNORE, 20, 3, IGNORE, 21, 22, 3]


@pytest.mark.parametrize("ids", [[1, 2, 3], [9, 1, 9]], ids=["none", "two"])
def test_expand_image_tokens_needs_one_placeholder(ids):
    with pytest.raises(ValueError, match="one image placeholder"):
        vlm.expand_image_tokens(torch.tensor(ids), torch.zeros(len(ids)), 9, 4)


def test_llava_chat_template_renders_llava_prompt():
    tok = tokenizer.build_tokenizer()
    conversation = [
        {
            "role": "user",
            "content": [{"type": "image"}, {"type": "text", "text": "where is the red circle?"}],
        }
    ]
    text = tok.apply_chat_template(
        conversation,
        chat_template=vlm.LLAVA_CHAT_TEMPLATE,
        tokenize=False,
        add_generation_prompt=True,
    )
    assert text == "USER: <image>\nwhere is the red circle? ASSISTANT:"
