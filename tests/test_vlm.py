"""The multimodal model: inputs_embeds, attention mask and labels done right; generation; save/load;
any Llama."""

import warnings

import pytest
import torch
import torch.nn.functional as F
from transformers import (
    AutoTokenizer,
    CLIPImageProcessor,
    CLIPVisionModel,
    LlamaConfig,
    LlamaForCausalLM,
)

from mmcourse import data, language_model, metrics, projection, vlm
from mmcourse.recipes import loop, shapes_vlm
from mmcourse.tokenizer import VOCAB, build_tokenizer


def tiny_llama(vocab_size=len(VOCAB), hidden=64, heads=4, kv_heads=2, layers=2, **ids):
    torch.manual_seed(0)
    config = LlamaConfig(
        vocab_size=vocab_size,
        hidden_size=hidden,
        intermediate_size=2 * hidden,
        num_hidden_layers=layers,
        num_attention_heads=heads,
        num_key_value_heads=kv_heads,
        max_position_embeddings=256,
        tie_word_embeddings=True,
        **(
            ids
            or dict(
                bos_token_id=VOCAB["[BOS]"],
                eos_token_id=VOCAB["[EOS]"],
                pad_token_id=VOCAB["[PAD]"],
            )
        ),
    )
    return LlamaForCausalLM(config).eval()


@pytest.fixture(scope="module", params=["patches", "cls"])
def model(request, nano_clip_folder):
    vision = CLIPVisionModel.from_pretrained(nano_clip_folder)
    processor = CLIPImageProcessor.from_pretrained(nano_clip_folder)
    return vlm.MultimodalModel(
        vision, tiny_llama(), None, build_tokenizer(), request.param, processor=processor
    ).eval()


def pixels(model, n=2):
    return model.pixel_values([data.random_scene(i).render() for i in range(n)])


def test_sequence_mask_and_labels(model):
    batch = model.training_batch(
        ["Where is the red circle?", "What color is the square?"], ["top left", "blue"]
    )
    out = model(pixels(model), **batch)
    n_img = model.num_image_tokens
    assert n_img == (81 if model.config.image_tokens == "patches" else 1)
    assert out.logits.shape[:2] == (2, n_img + batch["input_ids"].shape[1])
    # labels: -100 on the prompt and padding; the answer and its [EOS] are kept
    prompt = model.prompt_ids("where is the red circle")
    answer = model.answer_ids("top left")
    assert batch["labels"][0, : len(prompt)].eq(vlm.IGNORE_INDEX).all()
    assert batch["labels"][0, len(prompt) : len(prompt) + len(answer)].tolist() == answer
    assert answer[-1] == model.tokenizer.eos_token_id
    # the loss is the cross-entropy of the answer tokens only, predicted one position earlier
    logits = out.logits[:, n_img:]  # the text part
    shifted_logits, shifted_labels = logits[:, :-1], batch["labels"][:, 1:]
    manual = F.cross_entropy(
        shifted_logits.reshape(-1, logits.shape[-1]), shifted_labels.reshape(-1), ignore_index=-100
    )
    torch.testing.assert_close(out.loss, manual, rtol=1e-4, atol=1e-5)


def test_the_image_positions_are_attended(model):
    batch = model.training_batch(["Is there a red circle?"], ["yes"])
    a = model(pixels(model, 1), **batch).logits[:, -1]
    other = model.pixel_values([data.random_scene(99).render()])
    b = model(other, **batch).logits[:, -1]
    assert not torch.allclose(a, b)


def test_greedy_generation_equals_a_decoding_loop_by_hand(model):
    image = [data.random_scene(3).render()]
    inputs = model.generation_inputs(model.pixel_values(image), ["Where is the red circle?"])
    embeds, ids = inputs["inputs_embeds"], []
    with torch.no_grad():
        for _ in range(6):
            next_id = model.language_model(inputs_embeds=embeds).logits[0, -1].argmax().item()
            ids.append(next_id)
            if next_id == model.tokenizer.eos_token_id:
                break
            embeds = torch.cat([embeds, model.embed_text(torch.tensor([[next_id]]))], dim=1)
    by_hand = model.tokenizer.decode(ids, skip_special_tokens=True).strip()
    assert vlm.visual_qa(model, image[0], "Where is the red circle?", max_new_tokens=6) == by_hand


def first_scores(model, images, questions, steps=3):
    inputs = model.generation_inputs(model.pixel_values(images), questions)
    with torch.no_grad():
        out = model.language_model.generate(
            **inputs,
            max_new_tokens=steps,
            do_sample=False,
            output_scores=True,
            return_dict_in_generate=True,
            pad_token_id=model.tokenizer.pad_token_id,
            eos_token_id=None,
        )
    return torch.stack(out.scores, dim=1)  # (B, steps, V)


def test_a_left_padded_batch_scores_like_one_at_a_time(model):
    images = [data.random_scene(i).render() for i in range(3)]
    # prompts of 7, 8 and 2 tokens
    questions = ["Is there a red circle?", "What shape is the blue object?", ""]
    batch = first_scores(model, images, questions)
    for i, (image, question) in enumerate(zip(images, questions)):
        torch.testing.assert_close(
            batch[i], first_scores(model, [image], [question])[0], rtol=1e-4, atol=1e-4
        )
    assert vlm.visual_qa(model, images, questions, max_new_tokens=4) == [
        vlm.visual_qa(model, im, q, max_new_tokens=4) for im, q in zip(images, questions)
    ]
    # and the scores depend on the image: the equality above is not trivial
    other = first_scores(model, [data.random_scene(50).render()], [questions[0]])
    assert not torch.allclose(other[0], batch[0], atol=1e-4)


def test_beam_search_and_sampling_run(model):
    image = data.random_scene(5).render()
    caption = vlm.generate_caption(model, image, max_new_tokens=5, num_beams=5)
    assert isinstance(caption, str)
    torch.manual_seed(0)
    sampled = vlm.generate_caption(
        model, [image, image], max_new_tokens=5, num_beams=1, do_sample=True
    )
    assert isinstance(sampled, list) and len(sampled) == 2


def test_case_and_punctuation_do_not_matter(model):
    image = data.random_scene(7).render()
    assert vlm.visual_qa(model, image, "WHERE is the Red circle ?") == vlm.visual_qa(
        model, image, "where is the red circle"
    )


def test_unknown_words_are_named_in_a_warning(model):
    with pytest.warns(UserWarning, match=r"does not know the word\(s\) \['图片里有什么'\]"):
        vlm.visual_qa(model, data.random_scene(1).render(), "图片里有什么?")
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        vlm.visual_qa(model, data.random_scene(1).render(), "Is there a red circle?")


def test_save_and_load_round_trip(model, tmp_path):
    model.save_pretrained(tmp_path / "vlm", clip_sha256="abc")
    loaded = vlm.load(str(tmp_path / "vlm"), device="cpu")
    assert loaded.config == model.config
    batch = model.training_batch(["Is there a red circle?"], ["no"])
    with torch.no_grad():
        torch.testing.assert_close(
            loaded(pixels(model, 1), **batch).logits, model(pixels(model, 1), **batch).logits
        )


def test_freezing_is_a_config_switch(nano_clip_folder):
    vision = CLIPVisionModel.from_pretrained(nano_clip_folder)
    model = vlm.MultimodalModel(
        vision, tiny_llama(), None, build_tokenizer(), config=vlm.VLMConfig(freeze_language=True)
    )
    assert not any(p.requires_grad for p in model.vision_model.parameters())
    assert not any(p.requires_grad for p in model.language_model.parameters())
    assert all(p.requires_grad for p in model.projector.parameters())


def test_mismatched_sizes_and_bad_config_are_clear_errors(nano_clip_folder):
    vision = CLIPVisionModel.from_pretrained(nano_clip_folder)
    with pytest.raises(ValueError, match="takes 768-wide tokens but the vision tower gives 64"):
        vlm.MultimodalModel(
            vision, tiny_llama(), projection.make_projector("linear", 768, 64), build_tokenizer()
        )
    with pytest.raises(ValueError, match="image_tokens must be 'patches' or 'cls'"):
        vlm.VLMConfig(image_tokens="pooled")
    with pytest.raises(ValueError, match="language model"):
        vlm.MultimodalModel.from_names(str(nano_clip_folder))


def test_any_llama_folder_with_its_own_tokenizer(nano_clip_folder, tmp_path):
    """The layout of HuggingFaceTB/SmolLM2-135M (hidden 576, 9 heads, 3 KV heads, tied embeddings, a
    BPE tokenizer of its own), with two layers and a small vocabulary: random weights, saved
    locally, never
    downloaded."""
    from tokenizers import Tokenizer, decoders, models, pre_tokenizers, trainers
    from transformers import PreTrainedTokenizerFast

    bpe = Tokenizer(models.BPE(unk_token="<|unk|>"))
    bpe.pre_tokenizer = pre_tokenizers.ByteLevel(add_prefix_space=False)
    bpe.decoder = decoders.ByteLevel()
    corpus = [data.caption(data.random_scene(i)) for i in range(300)] + [
        qa.question for _, qa in data.qa_examples("train", 300)
    ]
    bpe.train_from_iterator(
        corpus,
        trainers.BpeTrainer(
            vocab_size=400, special_tokens=["<|endoftext|>", "<|im_start|>", "<|unk|>"]
        ),
    )
    tokenizer = PreTrainedTokenizerFast(
        tokenizer_object=bpe,
        bos_token="<|im_start|>",
        eos_token="<|endoftext|>",
        unk_token="<|unk|>",
    )
    folder = tmp_path / "smollm2-layout"
    language = tiny_llama(
        vocab_size=bpe.get_vocab_size(),
        hidden=576,
        heads=9,
        kv_heads=3,
        layers=2,
        bos_token_id=tokenizer.bos_token_id,
        eos_token_id=tokenizer.eos_token_id,
    )
    language.save_pretrained(folder)
    tokenizer.save_pretrained(folder)
    model = vlm.MultimodalModel.from_names(str(nano_clip_folder), str(folder), projector="mlp").to(
        "cpu"
    )
    assert model.tokenizer.pad_token == model.tokenizer.eos_token  # set when the tokenizer has none
    assert projection.parameter_count(model.projector) == 64 * 576 + 576 + 576 * 576 + 576
    answer = vlm.visual_qa(
        model, data.random_scene(0).render(), "Where is the red circle?", max_new_tokens=3
    )
    assert isinstance(answer, str)
    assert isinstance(AutoTokenizer.from_pretrained(folder), PreTrainedTokenizerFast)


def test_merged_patch_tokens_are_pixel_shuffled_cells(nano_clip_folder):
    vision = CLIPVisionModel.from_pretrained(nano_clip_folder)
    model = vlm.MultimodalModel(
        vision, tiny_llama(), None, build_tokenizer(), config=vlm.VLMConfig(merge=3)
    ).eval()
    assert model.num_image_tokens == 9
    assert model.projector[0].in_features == 9 * vision.config.hidden_size
    pv = pixels(model)
    with torch.no_grad():
        patches = vision(pixel_values=pv).last_hidden_state[:, 1:]  # (B, 81, D_v)
        expected = model.projector(projection.pixel_shuffle(patches, 3))
        torch.testing.assert_close(model.encode_image(pv), expected)
    batch = model.training_batch(["Where is the red circle?"], ["top left"])
    assert model(pv[:1], **batch).logits.shape[1] == 9 + batch["input_ids"].shape[1]
    with pytest.raises(ValueError, match="nothing to merge"):
        vlm.VLMConfig(image_tokens="cls", merge=3)
    with pytest.raises(ValueError, match="merge=2 does not divide the 9 x 9"):
        vlm.MultimodalModel(
            vision, tiny_llama(), None, build_tokenizer(), config=vlm.VLMConfig(merge=2)
        )


def test_answer_loss_per_token_is_hugging_faces_and_per_example_weighs_examples_equally(model):
    batch = model.training_batch(
        ["", "Is there a red circle?"],
        ["a red circle at the top left and a blue square at the center", "no"],
    )
    labels = batch.pop("labels")
    with torch.no_grad():
        out = model(pixels(model), **batch, labels=labels)
        logits = model(pixels(model), **batch).logits
    full = model.full_labels(labels)
    torch.testing.assert_close(vlm.answer_loss(logits, full, per="token"), out.loss)
    per_example = [
        vlm.answer_loss(logits[i : i + 1], full[i : i + 1], per="token") for i in range(2)
    ]
    torch.testing.assert_close(vlm.answer_loss(logits, full), (per_example[0] + per_example[1]) / 2)
    with pytest.raises(ValueError, match="every label is -100"):
        vlm.answer_loss(logits, torch.full_like(full, vlm.IGNORE_INDEX))


def test_sequence_table_and_answer_logprobs(model):
    row = vlm.sequence_table(model, "Where is the red circle?", "top left")
    n_img = model.num_image_tokens
    assert len({len(v) for v in row.values()}) == 1
    assert row["kinds"][:n_img] == ["image"] * n_img and row["tokens"][n_img] == "[BOS]"
    assert [t for t, k in zip(row["tokens"], row["kinds"]) if k == "answer"] == [
        "top",
        "left",
        "[EOS]",
    ]
    assert [lab for lab, k in zip(row["labels"], row["kinds"]) if k != "answer"] == ["-100"] * (
        len(row["kinds"]) - 3
    )
    images = [data.random_scene(i).render() for i in range(2)]
    scores = vlm.answer_logprobs(
        model, images, ["Where is the red circle?", ""], ["top left", "a red circle at the top"]
    )
    batch = model.training_batch(["Where is the red circle?"], ["top left"])
    labels = batch.pop("labels")
    with torch.no_grad():
        logits = model(model.pixel_values(images[:1]), **batch).logits
    mean = vlm.answer_loss(logits, model.full_labels(labels), per="token")
    torch.testing.assert_close(scores[0], -3 * mean, rtol=1e-4, atol=1e-4)  # "top", "left", [EOS]
    assert scores.shape == (2,) and (scores < 0).all()


@pytest.mark.slow
def test_vlm_training_smoke(tmp_path):
    """A few steps of the shipped recipe on a tiny LM: the loss falls from chance, and training
    resumes."""
    import math

    recipe = shapes_vlm.VLMRecipe(
        language=language_model.LanguageConfig(
            hidden_size=64, layers=2, heads=4, intermediate_size=128
        ),
        train=loop.TrainConfig(
            steps=40, batch_size=16, lr=3e-3, warmup_steps=5, eval_every=10**9, save_every=20
        ),
    )
    model, result = shapes_vlm.train_vlm(tmp_path / "run", recipe, progress=False, stop_at=20)
    assert result.steps == 20
    model, result = shapes_vlm.train_vlm(tmp_path / "run", recipe, progress=False)
    losses = [r["loss"] for r in result.history]
    assert len(losses) == 40
    chance = math.log(len(VOCAB))
    assert losses[0] > 0.7 * chance and sum(losses[-5:]) / 5 < 0.6 * chance, losses
    loaded = vlm.load(str(tmp_path / "run" / "last"), device="cpu")
    assert loaded.config.image_tokens == "patches"
    scores = metrics.evaluate_vlm(loaded, n_questions=20, n_captions=6, split="val")
    assert {"vqa all", "vqa position", "caption all"} <= set(scores)
