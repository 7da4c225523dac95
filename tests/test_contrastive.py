"""The contrastive loss: equal to Hugging Face CLIP's and to a hand computation; chance at init;
variants."""

import math
import random

import pytest
import torch
from transformers import CLIPConfig, CLIPModel

from mmcourse import contrastive, data
from mmcourse.contrastive import ContrastiveLoss


def test_equals_hugging_face_clip_loss():
    torch.manual_seed(0)
    config = CLIPConfig(
        text_config=dict(
            hidden_size=32,
            intermediate_size=64,
            num_hidden_layers=1,
            num_attention_heads=2,
            vocab_size=50,
            eos_token_id=49,
        ),
        vision_config=dict(
            hidden_size=32,
            intermediate_size=64,
            num_hidden_layers=1,
            num_attention_heads=2,
            image_size=32,
            patch_size=8,
        ),
        projection_dim=16,
    )
    model = CLIPModel(config).eval()
    ids = torch.randint(1, 48, (6, 7))
    ids[:, -1] = 49
    with torch.no_grad():
        out = model(input_ids=ids, pixel_values=torch.randn(6, 3, 32, 32), return_loss=True)
    temperature = 1 / model.logit_scale.exp().item()
    ours = ContrastiveLoss(temperature)(out.image_embeds, out.text_embeds)
    torch.testing.assert_close(ours, out.loss, rtol=1e-5, atol=1e-6)


def test_equals_a_hand_computation():
    images = torch.tensor([[1.0, 0.0], [0.0, 2.0]])
    texts = torch.tensor([[3.0, 0.0], [1.0, 1.0]])
    s = 1 / 0.5
    sim = [[1.0, 1 / math.sqrt(2)], [0.0, 1 / math.sqrt(2)]]  # cosine similarities, images as rows
    logits = [[s * v for v in row] for row in sim]

    def ce(row, target):
        return -row[target] + math.log(sum(math.exp(v) for v in row))

    i2t = (ce(logits[0], 0) + ce(logits[1], 1)) / 2
    columns = [[logits[0][0], logits[1][0]], [logits[0][1], logits[1][1]]]
    t2i = (ce(columns[0], 0) + ce(columns[1], 1)) / 2
    assert ContrastiveLoss(0.5)(images, texts).item() == pytest.approx((i2t + t2i) / 2, rel=1e-6)


@pytest.mark.parametrize("batch", [8, 64, 256])
def test_random_embeddings_give_about_ln_batch(batch):
    torch.manual_seed(batch)
    losses = [
        ContrastiveLoss(1.0)(torch.randn(batch, 64), torch.randn(batch, 64)).item()
        for _ in range(20)
    ]
    assert sum(losses) / len(losses) == pytest.approx(math.log(batch), rel=0.05)


def test_learnable_scale_starts_at_1_over_007_and_is_clamped():
    loss = ContrastiveLoss(0.07, learnable=True)
    assert isinstance(loss.log_scale, torch.nn.Parameter)
    assert loss.scale.item() == pytest.approx(1 / 0.07, rel=1e-5)
    with torch.no_grad():
        loss.log_scale.fill_(10.0)
    assert loss.scale.item() == pytest.approx(100.0, rel=1e-5)
    value = loss(torch.randn(4, 8), torch.randn(4, 8))
    value.backward()
    assert loss.log_scale.grad is not None
    assert not isinstance(ContrastiveLoss(0.07).log_scale, torch.nn.Parameter)


def test_identical_texts_count_as_positives():
    names = ["a red circle", "a red circle", "a blue square"]
    assert contrastive.positive_mask(names).tolist() == [
        [True, True, False],
        [True, True, False],
        [False, False, True],
    ]
    # images 0 and 1 share a text, and the model embeds each image exactly like its text. As
    # negatives, the two copies split the probability: the loss cannot go below about ln 2 for them.
    # As positives it can.
    texts = torch.tensor([[1.0, 0.0], [1.0, 0.0], [0.0, 1.0]])
    as_negatives = ContrastiveLoss(0.01)(texts, texts).item()
    as_positives = ContrastiveLoss(0.01)(texts, texts, names).item()
    assert as_positives < 1e-6
    # 2 of 3 rows and columns pay ln 2
    assert as_negatives == pytest.approx(2 / 3 * math.log(2), rel=1e-4)
    distinct = torch.randn(4, 8), torch.randn(4, 8)
    assert ContrastiveLoss(0.1)(*distinct, ["a", "b", "c", "d"]).item() == pytest.approx(
        ContrastiveLoss(0.1)(*distinct).item(), rel=1e-6
    )


def test_mismatched_shapes_are_a_clear_error():
    with pytest.raises(ValueError, match="must have the same shape"):
        ContrastiveLoss()(torch.randn(4, 8), torch.randn(4, 16))
    with pytest.raises(ValueError, match="temperature must be positive"):
        ContrastiveLoss(0.0)


def test_recall_at_k():
    similarity = torch.tensor([[0.9, 0.1, 0.0], [0.2, 0.3, 0.5], [0.0, 0.6, 0.4]])
    correct = torch.eye(3, dtype=torch.bool)
    assert contrastive.recall_at_k(similarity, correct, (1, 2)) == {
        1: pytest.approx(1 / 3),
        2: pytest.approx(1.0),
    }


def test_hard_negatives_are_one_attribute_away():
    rng = random.Random(0)
    for seed in range(300):
        scene = data.random_scene(seed, pairs="seen")
        negative = contrastive.hard_negative(scene, rng)
        assert data.alt_text(negative) != data.alt_text(scene)
        assert all(o.pair in data.SEEN_PAIRS for o in negative.objects)
        before = {o.position: o.pair for o in scene.objects}
        after = {o.position: o.pair for o in negative.objects}
        if len(before) == 1:  # a lone object: its color, its shape or its position changed
            (p0, (c0, s0)), (p1, (c1, s1)) = *before.items(), *after.items()
            assert [p0 != p1, c0 != c1, s0 != s1].count(True) == 1
        elif before.keys() == after.keys():
            changed = [p for p in before if before[p] != after[p]]
            one_attribute = (
                len(changed) == 1
                and sum(a != b for a, b in zip(before[changed[0]], after[changed[0]])) == 1
            )
            swapped = (
                len(changed) == 2
                and before[changed[0]] == after[changed[1]]
                and before[changed[1]] == after[changed[0]]
            )
            assert one_attribute or swapped, (scene, negative)
        else:
            raise AssertionError(f"objects moved cells: {scene} -> {negative}")
