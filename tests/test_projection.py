"""Projectors: the tutorial's Linear and LLaVA-1.5's MLP, their sizes, and clear errors when sizes
do not fit."""

import pytest
import torch
from torch import nn

from mmcourse import projection


@pytest.mark.parametrize(
    "kind, expected", [("linear", 128 * 192 + 192), ("mlp", 128 * 192 + 192 + 192 * 192 + 192)]
)
def test_kinds_shapes_and_parameter_counts(kind, expected):
    projector = projection.make_projector(kind, 128, 192)
    assert projection.parameter_count(projector) == expected
    tokens = torch.randn(2, 81, 128)  # (B, N, D_v)
    assert projector(tokens).shape == (2, 81, 192)  # (B, N, D_lm)


def test_mlp_is_linear_gelu_linear():
    mlp = projection.make_projector("mlp", 768, 576)
    assert [type(m) for m in mlp] == [nn.Linear, nn.GELU, nn.Linear]
    assert (mlp[0].in_features, mlp[0].out_features, mlp[2].out_features) == (768, 576, 576)


def test_each_token_is_projected_on_its_own():
    projector = projection.make_projector("mlp", 16, 8)
    tokens = torch.randn(1, 5, 16)
    whole = projector(tokens)
    torch.testing.assert_close(whole[0, 3], projector(tokens[0, 3]))


@pytest.mark.parametrize(
    "args, message",
    [
        (("conv", 8, 8), "unknown projector kind 'conv'"),
        (("linear", 0, 8), "in_dim must be a positive int"),
        (("mlp", 8, 2.5), "out_dim must be a positive int"),
    ],
)
def test_bad_arguments(args, message):
    with pytest.raises(ValueError, match=message):
        projection.make_projector(*args)


def test_mismatched_hidden_sizes_are_named():
    projector = projection.make_projector("linear", 128, 192)
    projection.check_fits(projector, 128, 192)
    with pytest.raises(
        ValueError, match="takes 128-wide tokens but the vision tower gives 768.*make_projector"
    ):
        projection.check_fits(projector, 768, 192)
    with pytest.raises(
        ValueError, match="gives 192-wide tokens but the language model's hidden size is 576"
    ):
        projection.check_fits(projector, 128, 576)


def test_pixel_shuffle_concatenates_each_block_in_reading_order():
    # (B, N, D): a 9 x 9 grid, 2 numbers each
    tokens = torch.arange(81 * 2, dtype=torch.float32).reshape(1, 81, 2)
    merged = projection.pixel_shuffle(tokens, 3)  # (B, 9, 18)
    assert merged.shape == (1, 9, 18)
    # block 4 is the middle cell: patch rows 3-5, columns 3-5, each patch's 2 numbers in turn
    patches = [r * 9 + c for r in range(3, 6) for c in range(3, 6)]
    assert torch.equal(merged[0, 4], tokens[0, patches].reshape(-1))
    assert torch.equal(projection.pixel_shuffle(tokens, 1), tokens)
    assert torch.equal(projection.pixel_shuffle(tokens, 9)[0, 0], tokens[0].reshape(-1))
    with pytest.raises(ValueError, match="side divides by merge=2"):
        projection.pixel_shuffle(tokens, 2)
