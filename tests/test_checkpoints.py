"""The model-name resolver: shipped names verified by manifest, other names to from_pretrained,
clear errors."""

import shutil
import stat

import pytest
from transformers import CLIPModel, CLIPVisionModel

from mmcourse import checkpoints
from mmcourse.checkpoints import CheckpointError


@pytest.fixture
def weights(tmp_path, monkeypatch, nano_clip_folder):
    """A package weights folder holding one shipped checkpoint, 'tiny-clip'."""
    folder = tmp_path / "weights" / "tiny-clip"
    shutil.copytree(nano_clip_folder, folder)
    checkpoints.write_manifest(folder)
    monkeypatch.setattr(checkpoints, "WEIGHTS_DIR", tmp_path / "weights")
    return folder


def test_shipped_name_resolves_to_its_verified_folder(weights):
    assert checkpoints.shipped() == ["tiny-clip"]
    assert checkpoints.path("tiny-clip") == weights
    model = checkpoints.from_pretrained(CLIPVisionModel, "tiny-clip")
    assert model.config.image_size == 72


def test_files_are_world_readable(weights):
    for path in weights.iterdir():
        assert path.stat().st_mode & stat.S_IROTH, path.name


@pytest.mark.parametrize(
    "damage, message",
    [
        (
            lambda f: (f / "model.safetensors").write_bytes(
                b"\0" * (f / "model.safetensors").stat().st_size
            ),
            "corrupt",
        ),
        (lambda f: (f / "model.safetensors").write_bytes(b"short"), "truncated or replaced"),
        (lambda f: (f / "config.json").unlink(), "config.json is missing"),
    ],
)
def test_a_damaged_file_is_reported_as_damaged(weights, damage, message):
    damage(weights)
    with pytest.raises(CheckpointError, match=f"damaged: .*{message}.*git checkout"):
        checkpoints.from_pretrained(CLIPModel, "tiny-clip")


def test_a_local_folder_goes_to_from_pretrained_unchanged(nano_clip_folder):
    assert checkpoints.resolve(nano_clip_folder) == str(nano_clip_folder)
    assert checkpoints.from_pretrained(CLIPModel, nano_clip_folder).config.projection_dim == 64


def test_an_unknown_name_offline_is_one_clear_error(weights):
    with pytest.raises(
        CheckpointError,
        match=r"cannot load 'nobody/no-such-model'.*shipped checkpoint \(tiny-clip\).*hf download",
    ):
        checkpoints.from_pretrained(CLIPModel, "nobody/no-such-model")


def test_an_incomplete_local_folder_is_named(tmp_path):
    (tmp_path / "half").mkdir()
    with pytest.raises(CheckpointError, match="not a complete Hugging Face folder"):
        checkpoints.from_pretrained(CLIPModel, tmp_path / "half")
    with pytest.raises(CheckpointError, match="not a shipped checkpoint"):
        checkpoints.path("nothing")
