"""The CLIP vision encoder: preprocessing, patches and [CLS], and spatial patch features.

Lessons 01 and 02 teach it. `VisionEncoder` wraps a Hugging Face `CLIPVisionModel` and its
`CLIPImageProcessor` behind the tutorial's API:

- `pixel_values(images, processor)` -> the one way any image becomes pixel values (every module uses
  it);
- `preprocess(images)` -> pixel values (B, 3, H, W): resize, center-crop, rescale to [0, 1],
  normalize;
- `extract_features(images)` -> {"pooled_output": (B, D), "last_hidden_state": (B, 1 + N, D)};
- `get_spatial_features(images, as_grid=False)` -> the patch tokens without [CLS], (B, N, D) or (B,
  H, W, D).

`pooled_output` is the post-layernorm [CLS] token (`pooler_output`): one vector for the whole image.
The patch tokens keep *where*: patch n covers row n // W, column n % W of the patch grid. `layer=-2`
reads the penultimate layer instead of the last, as LLaVA does.

It takes one image or a list: PIL images of any mode (RGBA, L, I;16 ...) or arrays (H, W), (H, W,
3|4) of uint8 or floats in [0, 1]; each is converted to RGB. It works unchanged on a real CLIP
folder such as `openai/clip-vit-base-patch32` (224 px, patch 32, 768 wide: 7x7 patches).
"""

from __future__ import annotations

import functools
from collections.abc import Sequence

import numpy as np
import torch
from PIL import Image

from .utils import get_device

__all__ = [
    "CLIP_MEAN",
    "CLIP_STD",
    "VisionEncoder",
    "default_processor",
    "model_view",
    "normalize_pixels",
    "patch_similarity_map",
    "patchify",
    "pixel_values",
    "rescale",
    "spatial_grid",
    "to_rgb",
]

#: OpenAI CLIP's normalization, used by every CLIP checkpoint and by the shipped `shapes-clip`.
CLIP_MEAN = (0.48145466, 0.4578275, 0.40821073)
CLIP_STD = (0.26862954, 0.26130258, 0.27577711)


def rescale(images: torch.Tensor) -> torch.Tensor:
    """uint8 pixels 0..255 -> floats 0..1. (B, 3, H, W) -> (B, 3, H, W)"""
    return images.float() / 255.0


def normalize_pixels(
    images: torch.Tensor, mean: Sequence[float] = CLIP_MEAN, std: Sequence[float] = CLIP_STD
) -> torch.Tensor:
    """Per-channel (x - mean) / std. (B, 3, H, W) -> (B, 3, H, W)"""
    mean_t = torch.tensor(mean, dtype=images.dtype, device=images.device).view(1, 3, 1, 1)
    std_t = torch.tensor(std, dtype=images.dtype, device=images.device).view(1, 3, 1, 1)
    return (images - mean_t) / std_t


def patchify(pixel_values: torch.Tensor, patch_size: int) -> torch.Tensor:
    """Cut images into flattened patches, row by row. (B, C, H, W) -> (B, N, C * P * P), N = (H/P) *
    (W/P)."""
    b, c, h, w = pixel_values.shape
    if h % patch_size or w % patch_size:
        raise ValueError(f"an image of {h}x{w} px does not split into {patch_size} px patches.")
    # (B, C, H', P, W', P)
    grid = pixel_values.reshape(b, c, h // patch_size, patch_size, w // patch_size, patch_size)
    grid = grid.permute(0, 2, 4, 1, 3, 5)  # (B, H', W', C, P, P)
    # (B, N, C*P*P)
    return grid.reshape(b, (h // patch_size) * (w // patch_size), c * patch_size * patch_size)


def spatial_grid(last_hidden_state: torch.Tensor) -> torch.Tensor:
    """Drop [CLS] and lay the patch tokens out as the image: (B, 1 + N, D) -> (B, H, W, D), H = W =
    sqrt(N)."""
    tokens = last_hidden_state[:, 1:]  # (B, N, D)
    b, n, d = tokens.shape
    side = int(round(n**0.5))
    if side * side != n:
        raise ValueError(
            f"{n} patch tokens do not form a square grid; expected (B, 1 + H*W, D) with [CLS] "
            "first."
        )
    return tokens.reshape(b, side, side, d)  # (B, H, W, D)


def patch_similarity_map(grid: torch.Tensor, row: int, col: int) -> torch.Tensor:
    """Cosine similarity of every patch to patch (row, col): (H, W, D) -> (H, W), 1 at the chosen
    patch."""
    h, w, d = grid.shape
    if not (0 <= row < h and 0 <= col < w):
        raise ValueError(f"patch ({row}, {col}) is outside the {h}x{w} grid.")
    unit = torch.nn.functional.normalize(grid.reshape(h * w, d), dim=-1)  # (H*W, D)
    return (unit @ unit[row * w + col]).reshape(h, w)  # (H, W)


def to_rgb(image) -> Image.Image:
    """A PIL RGB image from a PIL image of any mode or an array/tensor (H, W), (H, W, 3|4) or (3|4,
    H, W)."""
    if isinstance(image, Image.Image):
        # 16-bit (or 32-bit int) grayscale: scale to 8 bits
        if image.mode in ("I;16", "I;16B", "I;16L", "I"):
            array = np.asarray(image, dtype=np.float64)
            top = 65535.0 if image.mode.startswith("I;16") else max(float(array.max()), 1.0)
            return Image.fromarray(
                np.clip(array / top * 255.0 + 0.5, 0, 255).astype(np.uint8)
            ).convert("RGB")
        if image.mode == "F":
            return to_rgb(np.asarray(image))
        if image.mode in ("RGBA", "LA", "PA") or (
            image.mode == "P" and "transparency" in image.info
        ):
            rgba = image.convert("RGBA")
            # transparent -> white, like a browser
            background = Image.new("RGBA", rgba.size, (255, 255, 255, 255))
            return Image.alpha_composite(background, rgba).convert("RGB")
        return image.convert("RGB")
    if isinstance(image, torch.Tensor):
        image = image.detach().cpu().numpy()
    if not isinstance(image, np.ndarray):
        raise ValueError(
            f"cannot read a {type(image).__name__} as an image; pass a PIL image or an array (H, "
            "W, 3)."
        )
    array = image
    if array.ndim == 3 and array.shape[0] in (1, 3, 4) and array.shape[-1] not in (1, 3, 4):
        array = array.transpose(1, 2, 0)  # (C, H, W) -> (H, W, C)
    if array.ndim == 3 and array.shape[-1] == 1:
        array = array[..., 0]
    if (
        array.ndim not in (2, 3)
        or (array.ndim == 3 and array.shape[-1] not in (3, 4))
        or min(array.shape[:2]) < 1
    ):
        raise ValueError(
            "an image array must be (H, W), (H, W, 3) or (H, W, 4); got shape "
            f"{tuple(array.shape)}."
        )
    if array.dtype == np.uint8:
        pass
    elif array.dtype == np.uint16:
        array = (array / 257.0 + 0.5).astype(np.uint8)
    elif np.issubdtype(array.dtype, np.floating):
        if not np.isfinite(array).all():
            raise ValueError("the image array contains NaN or infinity.")
        if array.min() < 0 or array.max() > 1:
            raise ValueError(
                f"a float image must hold values in [0, 1], got {array.min():.3g} .. "
                f"{array.max():.3g}; "
                "divide uint8 pixels by 255 (or pass them as uint8)."
            )
        array = (array * 255.0 + 0.5).astype(np.uint8)
    else:
        raise ValueError(
            f"unsupported image dtype {array.dtype}; use uint8, uint16 or floats in [0, 1]."
        )
    return to_rgb(Image.fromarray(array))


@functools.lru_cache(maxsize=8)
def default_processor(image_size: int):
    """CLIP's own preprocessing at `image_size` px (resize the short side, center-crop, rescale,
    normalize)."""
    from . import checkpoints

    with checkpoints.quiet_transformers():  # the import itself announces the Pillow fallback
        from transformers import CLIPImageProcessor

        return CLIPImageProcessor(
            size={"shortest_edge": image_size},
            crop_size={"height": image_size, "width": image_size},
            image_mean=list(CLIP_MEAN),
            image_std=list(CLIP_STD),
        )


def _statistics(processor) -> tuple[Sequence[float], Sequence[float]]:
    """The processor's normalization (mean, std); CLIP's without a processor."""
    return (
        getattr(processor, "image_mean", None) or CLIP_MEAN,
        getattr(processor, "image_std", None) or CLIP_STD,
    )


def _is_model_sized_uint8(images, image_size: int | None) -> bool:
    return (
        isinstance(images, torch.Tensor)
        and images.dtype == torch.uint8
        and images.dim() == 4
        and images.shape[1] == 3
        and (image_size is None or tuple(images.shape[2:]) == (image_size, image_size))
    )


def pixel_values(images, processor=None, image_size: int | None = None) -> torch.Tensor:
    """The one way an image becomes what a vision tower reads: float pixel values (B, 3, S, S).

    - A float tensor (3, S, S) or (B, 3, S, S) is pixel values already and comes back as (B, 3, S,
      S).
    - A uint8 batch (B, 3, S, S) at the model's size (`data.render_batch`) is rescaled and
      normalized directly: at that size the processor's resize and crop change nothing, and this is
      far faster.
    - Anything else (a PIL image of any mode, an array, or a list of them) goes through `processor`,
      the model's `CLIPImageProcessor` (resize, center-crop, rescale, normalize). Without one, an
      image must already be `image_size` px square, and is rescaled and normalized with CLIP's
      statistics.
    """
    if isinstance(images, torch.Tensor) and images.is_floating_point():
        pixels = images[None] if images.dim() == 3 else images
        if pixels.dim() != 4 or pixels.shape[1] != 3:
            raise ValueError(
                f"pixel values must be (3, H, W) or (B, 3, H, W), got {tuple(images.shape)}; "
                "pass images (PIL or uint8) to have them preprocessed."
            )
        return pixels
    mean, std = _statistics(processor)
    if _is_model_sized_uint8(images, image_size):
        return normalize_pixels(rescale(images), mean, std)  # (B, 3, S, S)
    if isinstance(images, torch.Tensor) and images.dim() == 4:
        batch = list(images)  # a uint8 batch of another size: each image through the processor
    else:
        batch = list(images) if isinstance(images, (list, tuple)) else [images]
    if not batch:
        raise ValueError("no images given: pass one image or a non-empty list.")
    rgb = [to_rgb(image) for image in batch]
    if processor is not None:
        return processor(images=rgb, return_tensors="pt")["pixel_values"]  # (B, 3, S, S)
    for image in rgb:
        if image_size is not None and image.size != (image_size, image_size):
            width, height = image.size
            raise ValueError(
                f"the image is {width}x{height} px but the model reads {image_size}x{image_size}; "
                "pass "
                "processor=CLIPImageProcessor.from_pretrained(...) or the pixel values themselves."
            )
    uint8 = torch.stack(
        [torch.from_numpy(np.asarray(image, dtype=np.uint8).copy()) for image in rgb]
    )
    # (B, H, W, 3) -> (B, 3, H, W)
    return normalize_pixels(rescale(uint8.permute(0, 3, 1, 2)), mean, std)


def model_view(image, processor=None, image_size: int | None = None) -> Image.Image:
    """The image as the vision tower sees it, as a picture: `pixel_values` undone back to an RGB
    image."""
    pixels = pixel_values(image, processor, image_size)[0]  # (3, S, S)
    mean, std = _statistics(processor)
    std_t = torch.tensor(std).view(3, 1, 1)
    mean_t = torch.tensor(mean).view(3, 1, 1)
    rgb = ((pixels.float().cpu() * std_t + mean_t) * 255).round().clamp(0, 255).to(torch.uint8)
    return Image.fromarray(rgb.permute(1, 2, 0).numpy())  # (3, S, S) -> (S, S, 3)


class VisionEncoder:
    """The tutorial's vision encoder on a Hugging Face `CLIPVisionModel`: frozen, batched, no-grad.

    `model_name`: a shipped name ("shapes-clip"), a local CLIP folder, or a hub id (see
    `checkpoints`). `layer`: which hidden state `last_hidden_state` and the spatial features come
    from: -1 the last layer, -2 the penultimate (LLaVA's choice), any index of `hidden_states` (0 =
    the patch embeddings).
    """

    def __init__(
        self,
        model_name: str = "shapes-clip",
        layer: int = -1,
        device: torch.device | str | None = None,
        batch_size: int = 64,
    ) -> None:
        from . import checkpoints

        with checkpoints.quiet_transformers():  # the import itself announces the Pillow fallback
            from transformers import CLIPImageProcessor, CLIPVisionModel
        self.model_name = model_name
        self.device = torch.device(device) if device is not None else get_device()
        self.model = checkpoints.from_pretrained(CLIPVisionModel, model_name).to(self.device).eval()
        self.model.requires_grad_(False)
        self.processor = checkpoints.from_pretrained(CLIPImageProcessor, model_name)
        n_states = self.model.config.num_hidden_layers + 1
        if not isinstance(layer, int) or not -n_states <= layer < n_states:
            raise ValueError(
                f"layer must be an int in [{-n_states}, {n_states - 1}] for this model "
                f"({n_states - 1} layers; -1 last, -2 penultimate), got {layer!r}."
            )
        self.layer = layer
        self.batch_size = batch_size

    @property
    def image_size(self) -> int:
        return self.model.config.image_size

    @property
    def patch_size(self) -> int:
        return self.model.config.patch_size

    @property
    def grid_size(self) -> int:
        """Patches per side: 9 for shapes-clip (72 / 8), 7 for ViT-B/32 (224 / 32)."""
        return self.image_size // self.patch_size

    @property
    def hidden_size(self) -> int:
        return self.model.config.hidden_size

    def _images(self, images) -> list[Image.Image]:
        batch = list(images) if isinstance(images, (list, tuple)) else [images]
        if not batch:
            raise ValueError("no images given: pass one image or a non-empty list.")
        return [to_rgb(image) for image in batch]

    def preprocess(self, images) -> torch.Tensor:
        """Resize, center-crop, rescale, normalize with the model's own processor: (B, 3, H, W) on
        the device."""
        return pixel_values(self._images(images), self.processor).to(self.device)

    @torch.no_grad()
    def extract_features(self, images) -> dict[str, torch.Tensor]:
        """{"pooled_output": (B, D) post-layernorm [CLS], "last_hidden_state": (B, 1 + N, D) of the
        chosen layer}."""
        rgb = self._images(images)
        pooled, hidden = [], []
        for start in range(0, len(rgb), self.batch_size):
            pixels = self.preprocess(rgb[start : start + self.batch_size])
            out = self.model(pixel_values=pixels, output_hidden_states=self.layer != -1)
            pooled.append(out.pooler_output)
            hidden.append(
                out.last_hidden_state if self.layer == -1 else out.hidden_states[self.layer]
            )
        return {"pooled_output": torch.cat(pooled), "last_hidden_state": torch.cat(hidden)}

    def get_spatial_features(self, images, as_grid: bool = False) -> torch.Tensor:
        """The patch tokens without [CLS]: (B, N, D), or with `as_grid` (B, H, W, D) in image
        layout."""
        hidden = self.extract_features(images)["last_hidden_state"]  # (B, 1 + N, D)
        return spatial_grid(hidden) if as_grid else hidden[:, 1:]  # (B, H, W, D) or (B, N, D)
