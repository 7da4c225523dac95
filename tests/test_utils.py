import pytest
import torch

from mmcourse import utils


def test_get_device_prefers_cuda_then_mps_then_cpu(monkeypatch):
    monkeypatch.delenv(utils.DEVICE_ENV, raising=False)
    monkeypatch.setattr(torch.cuda, "is_available", lambda: False)
    monkeypatch.setattr(torch.backends.mps, "is_available", lambda: False)
    assert utils.get_device().type == "cpu"
    monkeypatch.setattr(torch.backends.mps, "is_available", lambda: True)
    assert utils.get_device().type == "mps"
    monkeypatch.setattr(torch.cuda, "is_available", lambda: True)
    assert utils.get_device().type == "cuda"


def test_device_override(monkeypatch):
    monkeypatch.setenv(utils.DEVICE_ENV, "cpu")
    monkeypatch.setattr(torch.cuda, "is_available", lambda: True)
    assert utils.get_device() == torch.device("cpu")


@pytest.mark.parametrize(
    "value, words", [("gpu0", "not a device name"), ("cuda:3", "does not have")]
)
def test_bad_device_override_is_a_clear_error(monkeypatch, value, words):
    monkeypatch.setenv(utils.DEVICE_ENV, value)
    monkeypatch.setattr(torch.cuda, "is_available", lambda: False)
    with pytest.raises(ValueError, match=words):
        utils.get_device()


def test_seed_everything_repeats_random_numbers():
    utils.seed_everything(7)
    a = torch.randn(3)
    utils.seed_everything(7)
    assert torch.equal(a, torch.randn(3))


def test_check_shape_accepts_matching_shapes():
    utils.check_shape(torch.zeros(2, 49, 768), ("B", 49, 768), "patch features")
    utils.check_shape(torch.zeros(2, 3, 3), (None, "N", "N"))


@pytest.mark.parametrize(
    "shape, expected, message",
    [
        ((2, 50, 768), ("B", 49, 768), r"dimension 1 should be 49, got 50"),
        ((2, 49), ("B", 49, 768), r"should have 3 dimensions \(B, 49, 768\), got 2"),
        (
            (2, 3, 4),
            (None, "N", "N"),
            r"dimension 2 \(N\) is 4, but dimension 1 is also N and is 3",
        ),
    ],
)
def test_check_shape_names_the_wrong_dimension(shape, expected, message):
    with pytest.raises(ValueError, match=message):
        utils.check_shape(torch.zeros(shape), expected, "x")


def test_check_shape_rejects_non_tensors():
    with pytest.raises(ValueError, match="should be a tensor"):
        utils.check_shape([1, 2], (2,), "x")
