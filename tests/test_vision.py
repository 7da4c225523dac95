"""VisionEncoder: the tutorial's API on the course CLIP and on a ViT-B/32-layout folder; inputs of
any kind."""

import numpy as np
import pytest
import torch
from PIL import Image
from transformers import CLIPImageProcessor, CLIPVisionModel

from mmcourse import data, vision


@pytest.fixture(scope="module")
def encoder(nano_clip_folder):
    return vision.VisionEncoder(str(nano_clip_folder), device="cpu")


def test_shapes_of_features(encoder):
    images = [data.random_scene(i).render() for i in range(3)]
    features = encoder.extract_features(images)
    n = encoder.grid_size**2
    assert features["pooled_output"].shape == (3, encoder.hidden_size)
    assert features["last_hidden_state"].shape == (3, 1 + n, encoder.hidden_size)
    assert encoder.get_spatial_features(images).shape == (3, n, encoder.hidden_size)
    grid = encoder.get_spatial_features(images, as_grid=True)
    assert grid.shape == (3, 9, 9, encoder.hidden_size)
    # the grid is the token sequence in row-major image layout: patch (r, c) is token r * W + c
    flat = encoder.get_spatial_features(images)
    assert torch.equal(grid[:, 2, 5], flat[:, 2 * 9 + 5])
    assert not features["pooled_output"].requires_grad


def test_matches_the_hugging_face_model(encoder, nano_clip_folder):
    images = [data.random_scene(i).render() for i in range(2)]
    model = CLIPVisionModel.from_pretrained(nano_clip_folder).eval()
    pixels = CLIPImageProcessor.from_pretrained(nano_clip_folder)(
        images=images, return_tensors="pt"
    )["pixel_values"]
    with torch.no_grad():
        reference = model(pixel_values=pixels)
    ours = encoder.extract_features(images)
    torch.testing.assert_close(ours["pooled_output"], reference.pooler_output)
    torch.testing.assert_close(ours["last_hidden_state"], reference.last_hidden_state)


def test_one_image_or_a_batch_gives_the_same_features(encoder):
    images = [data.random_scene(i).render() for i in range(5)]
    batched = encoder.extract_features(images)["pooled_output"]
    one_by_one = torch.cat([encoder.extract_features(im)["pooled_output"] for im in images])
    torch.testing.assert_close(batched, one_by_one, rtol=1e-4, atol=1e-5)


def test_penultimate_layer(nano_clip_folder):
    encoder = vision.VisionEncoder(str(nano_clip_folder), layer=-2, device="cpu")
    image = data.random_scene(1).render()
    model = CLIPVisionModel.from_pretrained(nano_clip_folder).eval()
    with torch.no_grad():
        states = model(
            pixel_values=encoder.preprocess(image), output_hidden_states=True
        ).hidden_states
    torch.testing.assert_close(encoder.extract_features(image)["last_hidden_state"], states[-2])
    with pytest.raises(ValueError, match="layer must be an int in"):
        vision.VisionEncoder(str(nano_clip_folder), layer=7)


def test_any_image_mode_is_converted(encoder):
    rgb = data.random_scene(4).render()
    reference = encoder.preprocess(rgb)
    array = np.asarray(rgb)
    same = [
        array,  # (H, W, 3) uint8
        array.astype(np.float32) / 255.0,  # floats in [0, 1]
        array.transpose(2, 0, 1),  # (3, H, W)
        torch.from_numpy(array.copy()),
        rgb.convert("RGBA"),  # opaque RGBA
        (array.astype(np.uint16) * 257),  # 16-bit
    ]
    for image in same:
        torch.testing.assert_close(encoder.preprocess(image), reference, atol=1e-2, rtol=0)
    gray = encoder.preprocess(rgb.convert("L"))
    assert gray.shape == reference.shape
    sixteen = Image.fromarray(np.asarray(rgb.convert("L")).astype(np.uint16) * 257)
    assert sixteen.mode.startswith("I")
    torch.testing.assert_close(encoder.preprocess(sixteen), gray, atol=1e-2, rtol=0)
    transparent = Image.new("RGBA", (72, 72), (0, 0, 0, 0))
    assert torch.allclose(
        encoder.preprocess(transparent), encoder.preprocess(Image.new("RGB", (72, 72), "white"))
    )


@pytest.mark.parametrize(
    "image, message",
    [
        (np.zeros((5,)), "must be"),
        (np.zeros((8, 8, 2), dtype=np.uint8), "must be"),
        (np.full((8, 8, 3), 2.0), r"values in \[0, 1\]"),
        (np.full((8, 8, 3), np.nan), "NaN"),
        (np.zeros((8, 8, 3), dtype=np.complex64), "unsupported image dtype"),
        ("cat.png", "cannot read a str"),
    ],
)
def test_unusable_images_are_clear_errors(encoder, image, message):
    with pytest.raises(ValueError, match=message):
        encoder.preprocess(image)
    with pytest.raises(ValueError, match="no images"):
        encoder.preprocess([])


def test_works_unchanged_on_a_vit_b32_folder(vit_b32_folder):
    encoder = vision.VisionEncoder(str(vit_b32_folder), device="cpu")
    photo = Image.fromarray(
        np.random.default_rng(0).integers(0, 255, (300, 400, 3), dtype=np.uint8)
    )
    assert encoder.preprocess(photo).shape == (1, 3, 224, 224)
    features = encoder.extract_features([photo, data.random_scene(0).render()])
    assert features["pooled_output"].shape == (2, 768)
    assert features["last_hidden_state"].shape == (2, 50, 768)
    assert encoder.get_spatial_features(photo, as_grid=True).shape == (1, 7, 7, 768)


def test_patchify_matches_the_patch_embedding(nano_clip_folder):
    model = CLIPVisionModel.from_pretrained(nano_clip_folder).eval()
    pixels = torch.randn(2, 3, 72, 72)
    conv = model.embeddings.patch_embedding  # Conv2d(3, D, kernel=P, stride=P, bias=False)
    patches = vision.patchify(pixels, 8)  # (B, N, 3 * 8 * 8)
    assert patches.shape == (2, 81, 192)
    by_hand = patches @ conv.weight.reshape(conv.out_channels, -1).T  # (B, N, D)
    reference = conv(pixels).flatten(2).transpose(1, 2)  # (B, N, D)
    torch.testing.assert_close(by_hand, reference, rtol=1e-5, atol=1e-5)
    with pytest.raises(ValueError, match="does not split"):
        vision.patchify(torch.zeros(1, 3, 70, 70), 8)


# --- the one way an image becomes pixel values ---------------------------------------------------


def test_pixel_values_fast_path_equals_the_processor(encoder):
    scenes = [data.random_scene(seed) for seed in range(4)]
    through_processor = vision.pixel_values([s.render() for s in scenes], encoder.processor)
    fast = vision.pixel_values(data.render_batch(scenes), encoder.processor)  # uint8 (B, 3, 72, 72)
    torch.testing.assert_close(fast, through_processor, rtol=0, atol=1e-5)
    without_processor = vision.pixel_values([s.render() for s in scenes], image_size=72)
    torch.testing.assert_close(without_processor, through_processor, rtol=0, atol=1e-5)
    assert torch.equal(encoder.preprocess([s.render() for s in scenes]).cpu(), through_processor)


def test_pixel_values_pass_through_and_clear_errors():
    pixels = torch.randn(3, 72, 72)
    assert torch.equal(vision.pixel_values(pixels), pixels[None])  # already pixel values
    with pytest.raises(ValueError, match=r"must be \(3, H, W\) or \(B, 3, H, W\)"):
        vision.pixel_values(torch.randn(72, 72))
    with pytest.raises(ValueError, match="no images"):
        vision.pixel_values([])
    with pytest.raises(ValueError, match="is 120x80 px but the model reads 72x72.*processor"):
        vision.pixel_values(Image.new("RGB", (120, 80)), image_size=72)
    # a uint8 batch of another size goes through the processor, image by image
    other = data.render_batch([data.random_scene(0)], size=96)
    resized = vision.pixel_values(other, vision.default_processor(72), image_size=72)
    assert resized.shape == (1, 3, 72, 72)


def test_model_view_is_the_picture_the_tower_reads(encoder):
    scene = data.random_scene(5).render()
    assert vision.model_view(scene, encoder.processor).tobytes() == scene.tobytes()
    wide = Image.new("RGB", (144, 72), (0, 114, 178))
    wide.paste(
        (213, 94, 0), (0, 0, 36, 72)
    )  # a red band at the left, cropped away by CLIP's processor
    seen = vision.model_view(wide, encoder.processor)
    assert seen.size == (72, 72) and seen.getpixel((0, 36)) == (0, 114, 178)
    pixels = vision.pixel_values(seen, encoder.processor)
    torch.testing.assert_close(
        pixels, vision.pixel_values(wide, encoder.processor), atol=2e-2, rtol=0
    )
