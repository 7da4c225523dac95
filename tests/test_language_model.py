"""The by-hand pieces of `mmcourse.language_model` (lesson 04b) against the Hugging Face pieces on
the same weights: the loss, the causal mask, RMSNorm, RoPE, the MLP, one decoder block."""

import pytest
import torch
from transformers import AutoTokenizer, LlamaForCausalLM
from transformers.models.llama.modeling_llama import (
    LlamaRMSNorm,
    LlamaRotaryEmbedding,
    apply_rotary_pos_emb,
)
from transformers.models.llama.modeling_llama import rotate_half as hf_rotate_half

from mmcourse import checkpoints, data, language_model


@pytest.fixture(scope="module")
def lm():
    model = checkpoints.from_pretrained(LlamaForCausalLM, "shapes-lm", attn_implementation="eager")
    return model.eval()


@pytest.fixture(scope="module")
def batch():
    tokenizer = checkpoints.from_pretrained(AutoTokenizer, "shapes-lm")
    texts = [data.caption(s) for s in data.scenes("test", 3)]
    return tokenizer(texts, return_tensors="pt", padding=True)


def test_next_token_loss_is_the_models_own_loss(lm, batch):
    labels = batch["input_ids"].masked_fill(batch["attention_mask"] == 0, -100)
    with torch.no_grad():
        out = lm(**batch, labels=labels)
    ours = language_model.next_token_loss(out.logits, labels)
    assert torch.allclose(ours, out.loss, atol=1e-6)
    # unshifted, it is a different (wrong) number: the shift is what makes it next-token prediction
    unshifted = torch.nn.functional.cross_entropy(out.logits.flatten(0, 1), labels.flatten())
    assert not torch.allclose(unshifted, out.loss, atol=1e-3)


def test_causal_mask_is_what_the_model_applies(lm, batch):
    with torch.no_grad():
        out = lm(input_ids=batch["input_ids"][:1], output_attentions=True)
    t = batch["input_ids"].shape[1]
    mask = language_model.causal_mask(t)
    assert mask.shape == (t, t) and mask.dtype == torch.bool
    assert mask[3, 3] and mask[3, 0] and not mask[0, 3]
    for weights in out.attentions:  # (1, K, T, T) per layer
        assert torch.all(weights[..., ~mask] == 0)
        assert torch.all(weights[..., mask] > 0)


def test_rms_norm_matches_llama_rms_norm(lm):
    norm = lm.model.layers[1].input_layernorm
    x = torch.randn(2, 5, norm.weight.shape[0]) * 7 + 3
    ours = language_model.rms_norm(x, norm.weight, norm.variance_epsilon)
    assert torch.allclose(ours, norm(x), atol=1e-5)
    fresh = LlamaRMSNorm(8, eps=1e-5)
    y = torch.randn(4, 8)
    assert torch.allclose(language_model.rms_norm(y, fresh.weight, 1e-5), fresh(y), atol=1e-6)
    # and it is not LayerNorm: shifting the input changes the output
    assert not torch.allclose(ours, language_model.rms_norm(x + 1, norm.weight), atol=1e-3)


def test_rope_matches_llama_rotary_embedding(lm):
    config = lm.config
    rotary = LlamaRotaryEmbedding(config)
    head_dim = config.head_dim
    positions = torch.arange(11)[None].expand(2, 11)  # (B, T)
    q, k = torch.randn(2, 3, 11, head_dim), torch.randn(2, 3, 11, head_dim)
    cos_hf, sin_hf = rotary(q, positions)
    cos, sin = language_model.rope_angles(positions, head_dim, config.rope_parameters["rope_theta"])
    assert torch.allclose(cos, cos_hf, atol=1e-6) and torch.allclose(sin, sin_hf, atol=1e-6)
    assert torch.equal(language_model.rotate_half(q), hf_rotate_half(q))
    q_hf, k_hf = apply_rotary_pos_emb(q, k, cos_hf, sin_hf)
    assert torch.allclose(language_model.apply_rope(q, cos, sin), q_hf, atol=1e-6)
    assert torch.allclose(language_model.apply_rope(k, cos, sin), k_hf, atol=1e-6)


def test_rope_scores_depend_only_on_the_offset():
    head_dim = 16
    q, k = torch.randn(head_dim), torch.randn(head_dim)
    cos, sin = language_model.rope_angles(torch.arange(40), head_dim)  # (T, d)

    def score(i, j):
        qi = language_model.apply_rope(q[None, None, None], cos[i : i + 1], sin[i : i + 1])
        kj = language_model.apply_rope(k[None, None, None], cos[j : j + 1], sin[j : j + 1])
        return (qi * kj).sum()

    assert torch.allclose(score(5, 2), score(30, 27), atol=1e-4)  # offset 3 both times
    assert not torch.allclose(score(5, 2), score(5, 4), atol=1e-3)
    # a rotation keeps lengths
    rotated = language_model.apply_rope(q[None, None, None], cos[7:8], sin[7:8])
    assert torch.allclose(rotated.norm(), q.norm(), atol=1e-5)


def test_attention_mlp_and_block_by_hand_match_the_layer(lm, batch):
    ids = batch["input_ids"][:2]
    with torch.no_grad():
        out = lm(input_ids=ids, output_hidden_states=True, output_attentions=True)
        positions = torch.arange(ids.shape[1])[None].expand(len(ids), -1)
        cos, sin = lm.model.rotary_emb(out.hidden_states[0], positions)
        for i, layer in enumerate(lm.model.layers):
            x = out.hidden_states[i]  # (B, T, D): what layer i reads
            normed = layer.input_layernorm(x)
            ours, weights = language_model.attention_by_hand(layer.self_attn, normed, cos, sin)
            assert torch.allclose(weights, out.attentions[i], atol=1e-5)
            future = ~language_model.causal_mask(ids.shape[1])
            additive = torch.zeros(future.shape).masked_fill(future, float("-inf"))[None, None]
            theirs, _ = layer.self_attn(
                normed, position_embeddings=(cos, sin), attention_mask=additive
            )
            assert torch.allclose(ours, theirs, atol=1e-5)
            assert torch.allclose(language_model.swiglu_mlp(layer.mlp, x), layer.mlp(x), atol=1e-5)
            block = language_model.decoder_block_by_hand(layer, x, cos, sin)
            if i + 1 < len(lm.model.layers):  # the last hidden state has the final norm applied
                assert torch.allclose(block, out.hidden_states[i + 1], atol=1e-4)
            else:
                assert torch.allclose(lm.model.norm(block), out.hidden_states[-1], atol=1e-4)


def test_by_hand_pieces_stay_on_the_inputs_device():
    assert language_model.causal_mask(3, device="meta").device.type == "meta"
    cos, _ = language_model.rope_angles(torch.arange(4, device="meta"), 8)
    assert cos.device.type == "meta"


def test_the_builder_makes_a_tied_llama():
    model = language_model.build_language_model(
        language_model.LanguageConfig(hidden_size=32, layers=1, heads=2, intermediate_size=64)
    )
    assert model.lm_head.weight is model.model.embed_tokens.weight


def test_the_primers_figures_take_data():
    import matplotlib

    matplotlib.use("Agg")
    from matplotlib.figure import Figure

    from mmcourse import plotting

    weights = torch.tril(torch.rand(4, 4))
    assert isinstance(plotting.causal_attention(weights, ["a", "b", "c", "d"]), Figure)
    assert isinstance(plotting.rope_scores(torch.randn(6, 6), {"start 0": [1.0, 0.5, 0.2]}), Figure)
    assert isinstance(
        plotting.accuracy_curves([10, 100], {"probe": [0.5, 0.9]}, chance=0.1), Figure
    )
