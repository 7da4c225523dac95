"""Lesson 08's interactive attention widgets (ipywidgets, with ipyevents for clicks on the image).

- `AttentionExplorer`: a CLIP vision encoder's attention. Pick a scene (by number, a new random one, or an
  uploaded image); layer and head (or a fusion of the heads); rollout on or off; the query token by slider or by
  clicking a patch of the image. The heatmap over the image follows every control.
- `TextPatchMap`: type a phrase ("red circle"); the CLIP similarity of each patch with it, over the image.
- `CrossModalAttention`: a VLM answers a question (or captions, with no question); pick one of its tokens and a
  layer: which image tokens it attended to, over the image.

Computation and drawing are separate. Each widget runs its model once per image (or image and question) on the
model's device and caches the result (`..._cache`); a control then only slices the cached tensors (`current_map`)
and draws (`heatmap_overlay`). `update()` returns the map it drew and writes its `map_digest` into the widget's
digest line, so a test, in Python or in a browser, can check what is shown against `mmcourse.attention`.
"""

from __future__ import annotations

import hashlib
import io
import re
from collections import OrderedDict
from collections.abc import Callable

import ipywidgets as w
import numpy as np
import torch
from PIL import Image, ImageDraw, ImageOps

from . import attention, checkpoints, data, vlm
from .utils import get_device

DISPLAY_SIZE = 288  # pixels on screen: the 72 px scenes at 4x, big enough to click one 8 px patch (32 px)
CACHE_IMAGES = 16  # forwards kept per widget; a learner flips between a few scenes
DIGEST = re.compile(
    r"(?P<h>\d+)x(?P<w>\d+) peak \((?P<r>\d+), (?P<c>\d+)\) max (?P<max>[-\d.e]+) mean (?P<mean>[-\d.e]+) min (?P<min>[-\d.e]+)"
)


# --- data -> text and pictures (no models) ------------------------------------------------------------------


def map_digest(grid_map: torch.Tensor) -> str:
    """A short, exact-enough summary of a (H, W) map: its size, the peak cell (row, col), max, mean and min."""
    grid = grid_map.detach().float().cpu()
    row, col = divmod(int(grid.argmax()), grid.shape[1])
    return (f"{grid.shape[0]}x{grid.shape[1]} peak ({row}, {col}) max {grid.max().item():.4f} "
            f"mean {grid.mean().item():.4f} min {grid.min().item():.4f}")  # fmt: skip


def digest_matches(text: str, grid_map: torch.Tensor, tolerance: float = 2e-3) -> bool:
    """Does a digest (as shown in a widget) describe `grid_map`? Same size and peak, statistics within `tolerance`.

    A tolerance, not string equality: the browser's kernel and a test process may round the last digit apart.
    """
    shown, expected = DIGEST.search(text), DIGEST.search(map_digest(grid_map))
    if shown is None:
        return False
    same = all(shown[k] == expected[k] for k in ("h", "w", "r", "c"))
    return same and all(abs(float(shown[k]) - float(expected[k])) <= tolerance for k in ("max", "mean", "min"))


def _colormap(name: str = "inferno") -> np.ndarray:
    import matplotlib

    return (matplotlib.colormaps[name](np.linspace(0.0, 1.0, 256))[:, :3] * 255).astype(np.uint8)  # (256, 3)


_LUT = _colormap()


def heatmap_overlay(image: Image.Image, grid_map: torch.Tensor, size: int = DISPLAY_SIZE, alpha: float = 0.6,
                    mark: tuple[int, int] | None = None) -> Image.Image:  # fmt: skip
    """The image at `size` x `size` with a (H, W) map over it, one flat square per cell (nearest up-sampling: a
    patch's value is not smeared onto its neighbours). Colors are scaled from the map's min (dark) to its max
    (bright); `mark` outlines one cell (the query patch)."""
    grid = grid_map.detach().float().cpu()
    low, high = grid.min(), grid.max()
    scaled = (grid - low) / (high - low) if high > low else torch.zeros_like(grid)
    pixels = attention.upsample(scaled, size)  # (S, S), nearest
    colors = _LUT[(pixels.numpy() * 255).round().astype(np.uint8)]  # (S, S, 3)
    base = np.asarray(image.convert("RGB").resize((size, size), Image.NEAREST), dtype=np.float32)
    blended = Image.fromarray(((1 - alpha) * base + alpha * colors).round().astype(np.uint8))
    if mark is not None:
        cell_h, cell_w = size / grid.shape[0], size / grid.shape[1]
        row, col = mark
        box = (col * cell_w, row * cell_h, (col + 1) * cell_w - 1, (row + 1) * cell_h - 1)
        ImageDraw.Draw(blended).rectangle(box, outline=(0, 255, 255), width=3)
    return blended


def png(image: Image.Image) -> bytes:
    buffer = io.BytesIO()
    image.save(buffer, format="PNG", compress_level=1)  # speed over size: it only travels to the browser
    return buffer.getvalue()


def fit_image(image, size: int) -> Image.Image:
    """Any image (PIL, array; any mode or size) as a `size` x `size` RGB image: center-cropped to a square and
    resized, as CLIP's processor does. A scene at the model's size comes back unchanged."""
    from .vision import to_rgb

    rgb = to_rgb(image)
    if rgb.size == (size, size):
        return rgb
    return ImageOps.fit(rgb, (size, size), Image.BICUBIC)


def image_key(image: Image.Image) -> str:
    return hashlib.sha256(image.tobytes() + repr(image.size).encode()).hexdigest()[:16]


def cell_of_click(x: float, y: float, grid: int, size: int = DISPLAY_SIZE) -> tuple[int, int]:
    """The (row, col) of the grid cell under a click at pixel (x, y) of the displayed image."""
    clamp = lambda v: min(max(int(v * grid // size), 0), grid - 1)  # noqa: E731
    return clamp(y), clamp(x)


class _LRU(OrderedDict):
    def get_or(self, key, compute: Callable):
        if key in self:
            self.move_to_end(key)
            return self[key]
        value = self[key] = compute()
        if len(self) > CACHE_IMAGES:
            self.popitem(last=False)
        return value


# --- the scene picker shared by the widgets -----------------------------------------------------------------


class ScenePicker:
    """A scene by number, a new random one, or an uploaded image; calls `on_image(PIL image)` on each change."""

    def __init__(self, on_image: Callable[[Image.Image], None], seed: int = 0, n_objects: int | None = None,
                 size: int = data.DEFAULT_IMAGE_SIZE):  # fmt: skip
        self.on_image, self.n_objects, self.size = on_image, n_objects, size
        self.seed = w.IntText(value=seed, description="scene", layout=w.Layout(width="160px"))
        self.random = w.Button(description="new random scene", icon="random", layout=w.Layout(width="auto"))
        self.upload = w.FileUpload(accept="image/*", multiple=False, description="upload an image",
                                   layout=w.Layout(width="auto"))  # fmt: skip
        self.seed.add_class("mmcourse-seed")
        self.seed.observe(lambda change: self.show_scene(change["new"]), names="value")
        self.random.on_click(lambda _: self._new_random())
        self.upload.observe(self._uploaded, names="value")
        self.box = w.HBox([self.seed, self.random, self.upload])
        self._draws = np.random.default_rng(seed + 1)

    def scene_image(self, seed: int) -> Image.Image:
        return data.random_scene(seed, n_objects=self.n_objects).render(self.size)

    def show_scene(self, seed: int) -> None:
        self.on_image(self.scene_image(seed))

    def _new_random(self) -> None:
        self.seed.value = int(self._draws.integers(1_000, 1_000_000))  # observe() shows it

    def _uploaded(self, change) -> None:
        files = change["new"]
        if not files:
            return
        try:
            image = Image.open(io.BytesIO(bytes(files[0]["content"])))
            image.load()
        except Exception as error:  # noqa: BLE001 - any unreadable upload gets one clear message
            raise ValueError(f"{files[0].get('name', 'the upload')} is not an image PIL can read ({error}); "
                             "upload a PNG or JPEG.") from error  # fmt: skip
        self.upload.value = ()  # so that uploading the same file again is a change too
        self.on_image(fit_image(image, self.size))


def _clickable(image_widget: w.Image, on_click: Callable[[float, float], None]):
    """Clicks on an Image widget, as (x, y) pixels of the PNG it shows (ipyevents).

    ipyevents' dataX/dataY are in the PNG's own pixels, corrected for the size the browser draws it at (CSS may
    scale the <img>) and for padding and border; relativeX/Y are CSS pixels from the element's box, right only
    at full size and without padding: the fallback.
    """
    from ipyevents import Event

    events = Event(source=image_widget, watched_events=["click"], prevent_default_action=True)
    events.on_dom_event(lambda event: on_click(event.get("dataX", event.get("relativeX", 0)),
                                               event.get("dataY", event.get("relativeY", 0))))  # fmt: skip
    return events


def _image_widget(css: str) -> w.Image:
    # flex-start, not the HBox's default stretch: in a narrow notebook the image shrinks and keeps its aspect instead of
    # being stretched to the height of the controls beside it (measured: 192 x 552 px in a 560 px wide window)
    image = w.Image(format="png", width=DISPLAY_SIZE, height=DISPLAY_SIZE, layout=w.Layout(align_self="flex-start"))
    image.add_class(css)
    return image


def _digest_widget() -> w.HTML:
    digest = w.HTML()
    digest.add_class("mmcourse-digest")
    return digest


# --- the widgets ---------------------------------------------------------------------------------------------


def _load_clip(model, tokenizer=None):
    from transformers import AutoTokenizer, CLIPModel

    if isinstance(model, str):
        name = model
        model = checkpoints.from_pretrained(CLIPModel, name).to(get_device()).eval()
        tokenizer = tokenizer or checkpoints.from_pretrained(AutoTokenizer, name)
    return model, tokenizer


class _MapWidget:
    """What the widgets share: a source image, the picture of it with a map over it, and the digest line."""

    widget: w.Box
    image_size: int

    def _ipython_display_(self):
        from IPython.display import display

        display(self.widget)

    def set_image(self, image) -> torch.Tensor:
        """Show another image (a scene, an upload: any size, fitted to the model's); returns the new map."""
        self.source = fit_image(image, self.image_size)
        return self.refresh()

    def refresh(self) -> torch.Tensor:
        return self.update()

    def _show(self, grid_map: torch.Tensor, mark: tuple[int, int] | None = None) -> torch.Tensor:
        """Draw `grid_map` over the source image, write its digest, and return it (the data of this update)."""
        self.image.value = png(heatmap_overlay(self.source, grid_map, mark=mark))
        self.digest.value = map_digest(grid_map)
        self.last_map = grid_map
        return grid_map


class AttentionExplorer(_MapWidget):
    """A vision encoder's attention over an image: layer, head or head fusion, rollout, query token.

    `model`: a shipped name or folder of a `CLIPModel` ("shapes-clip"), or a CLIPModel / CLIPVisionModel /
    VisionEncoder / MultimodalModel already loaded (it is switched to eager attention; see `mmcourse.attention`).
    Query 0 is [CLS]; query 1 + r * W + c is the patch at (r, c), also chosen by clicking it.
    """

    def __init__(self, model="shapes-clip", seed: int = 0, n_objects: int | None = None):
        model, _ = _load_clip(model)
        self.tower = attention.vision_tower(model)
        config = self.tower.config
        self.image_size = config.image_size
        self.side = config.image_size // config.patch_size
        self.attentions_cache = _LRU()  # image key -> (L, K, T, T), one forward per image
        self.rollout_cache = _LRU()  # (image key, layer, fusion) -> (T, T)
        heads = [f"head {k}" for k in range(config.num_attention_heads)]
        self.layer = w.IntSlider(value=config.num_hidden_layers - 1, min=0, max=config.num_hidden_layers - 1,
                                 description="layer", continuous_update=True)  # fmt: skip
        self.head = w.Dropdown(options=[*attention.FUSIONS, *heads], value="mean", description="heads")
        self.rollout = w.Checkbox(value=False, description="rollout (layers 0..layer)")
        self.query = w.IntSlider(value=0, min=0, max=self.side * self.side, description="query",
                                 continuous_update=True)  # fmt: skip
        self.image = _image_widget("mmcourse-attention-image")
        self.digest = _digest_widget()
        self.caption = w.HTML()
        for control, css in ((self.layer, "mmcourse-layer"), (self.query, "mmcourse-query"),
                             (self.head, "mmcourse-head"), (self.rollout, "mmcourse-rollout")):  # fmt: skip
            control.add_class(css)
            control.observe(lambda _: self.update(), names="value")
        self.events = _clickable(self.image, self.click)
        self.picker = ScenePicker(self.set_image, seed, n_objects, self.image_size)
        self.widget = w.VBox([self.picker.box, w.HBox([self.image, w.VBox([self.layer, self.head, self.rollout,
                              self.query, self.caption, self.digest])])])  # fmt: skip
        self.widget.add_class("mmcourse-explorer")
        self.source = self.picker.scene_image(seed)
        self.last_map = self.update()

    def click(self, x: float, y: float) -> None:
        row, col = cell_of_click(x, y, self.side)
        self.query.value = 1 + row * self.side + col  # observe() updates

    def attentions(self) -> torch.Tensor:
        key = image_key(self.source)
        return self.attentions_cache.get_or(key, lambda: attention.vision_attentions(self.tower, self.source))

    def current_map(self) -> torch.Tensor:
        """The (H, W) map the controls select, from the cache: a slice, or one rollout per (image, layer, fusion)."""
        attentions = self.attentions()  # (L, K, T, T)
        head = self.head.value
        head = int(head.split()[1]) if head.startswith("head ") else head
        if self.rollout.value:
            fusion = head if isinstance(head, str) else "mean"
            key = (image_key(self.source), self.layer.value, fusion)
            matrix = self.rollout_cache.get_or(key, lambda: attention.rollout(attentions[: self.layer.value + 1],
                                                                              fusion=fusion))  # fmt: skip
            return attention.row_to_grid(matrix, self.query.value)
        return attention.query_map(attentions, self.layer.value, head, self.query.value)

    def describe(self) -> str:
        query = "[CLS]" if self.query.value == 0 else "patch ({}, {})".format(*divmod(self.query.value - 1, self.side))
        what = f"rollout of layers 0-{self.layer.value}" if self.rollout.value else f"layer {self.layer.value}"
        if self.rollout.value and self.head.value.startswith("head "):
            what += " (rollout fuses heads by their mean)"
        return f"where {query} looks: {what}, {self.head.value}"

    def update(self) -> torch.Tensor:
        grid_map = self.current_map()
        self.caption.value = self.describe()
        return self._show(grid_map, mark=None if self.query.value == 0 else divmod(self.query.value - 1, self.side))


class TextPatchMap(_MapWidget):
    """Type a phrase: CLIP's similarity of each patch with it, over the image (see attention.text_patch_similarity)."""

    def __init__(self, model="shapes-clip", tokenizer=None, seed: int = 0, phrase: str = "red circle",
                 n_objects: int | None = 1):  # fmt: skip
        self.model, self.tokenizer = _load_clip(model, tokenizer)
        if self.tokenizer is None:
            raise ValueError("TextPatchMap needs the CLIP's tokenizer: pass tokenizer=, or a model name or folder.")
        self.image_size = self.model.config.vision_config.image_size
        self.patch_cache = _LRU()  # image key -> (N, E) unit patch embeddings
        self.text_cache = _LRU()  # phrase -> (E,) unit text embedding
        self.phrase = w.Text(value=phrase, description="phrase", continuous_update=False)
        self.phrase.add_class("mmcourse-phrase")
        self.phrase.observe(lambda _: self.update(), names="value")
        self.image = _image_widget("mmcourse-text-image")
        self.digest = _digest_widget()
        self.caption = w.HTML()
        self.picker = ScenePicker(self.set_image, seed, n_objects, self.image_size)
        self.widget = w.VBox([self.picker.box, self.phrase, w.HBox([self.image, w.VBox([self.caption, self.digest])])])
        self.widget.add_class("mmcourse-textmap")
        self.source = self.picker.scene_image(seed)
        self.last_map = self.update()

    def current_map(self) -> torch.Tensor:
        import torch.nn.functional as F

        from . import contrastive

        patches = self.patch_cache.get_or(image_key(self.source), lambda: F.normalize(attention.patch_embeddings(
            self.model, attention.as_pixel_values(self.source, self.image_size)), dim=-1))  # (N, E)  # fmt: skip
        phrase = self.phrase.value.strip()
        text = self.text_cache.get_or(phrase, lambda: F.normalize(
            contrastive.embed_texts(self.model, self.tokenizer, [phrase]), dim=-1)[0])  # (E,)  # fmt: skip
        side = attention.grid_side(patches.shape[0])
        return (patches @ text).reshape(side, side).float().cpu()  # (H, W)

    def update(self) -> torch.Tensor:
        grid_map = self.current_map()
        row, col = divmod(int(grid_map.argmax()), grid_map.shape[1])
        self.caption.value = f"“{self.phrase.value.strip()}”: most similar patch at ({row}, {col})"
        return self._show(grid_map)


class CrossModalAttention(_MapWidget):
    """A VLM answers (or captions); pick a token it wrote and a layer: the image tokens that token attended to.

    `model`: a shipped name or folder of a `MultimodalModel` ("shapes-vlm-patches"), or one already loaded. Each
    (image, question) costs one `attention.cross_modal_attention` (generate + one forward); the rest is slicing.
    """

    MEAN = "mean of layers"

    def __init__(self, model="shapes-vlm-patches", seed: int = 0, question: str = "Where is the red circle?",
                 n_objects: int | None = None):  # fmt: skip
        self.model = vlm.load(model, get_device()) if isinstance(model, str) else model
        self.image_size = self.model.vision_model.config.image_size
        self.results = _LRU()  # (image key, question) -> attention.CrossModalAttention
        n_layers = self.model.language_model.config.num_hidden_layers
        self.question = w.Text(value=question, description="question", placeholder="empty: caption the image",
                               continuous_update=False)  # fmt: skip
        self.ask = w.Button(description="answer", icon="play")
        self.token = w.ToggleButtons(options=[], description="token")
        self.layer = w.Dropdown(options=[self.MEAN, *range(n_layers)], value=self.MEAN, description="LM layer")
        self.image = _image_widget("mmcourse-vlm-image")
        self.answer = w.HTML()
        self.digest = _digest_widget()
        self.question.add_class("mmcourse-question")
        self.token.add_class("mmcourse-token")
        self.layer.add_class("mmcourse-lm-layer")
        self.question.observe(lambda _: self.run(), names="value")
        self.ask.on_click(lambda _: self.run())
        self._relabelling = False
        self.token.observe(lambda _: None if self._relabelling else self.update(), names="value")
        self.layer.observe(lambda _: self.update(), names="value")
        self.picker = ScenePicker(self.set_image, seed, n_objects, self.image_size)
        self.widget = w.VBox([self.picker.box, w.HBox([self.question, self.ask]), self.answer, self.token,
                              w.HBox([self.image, w.VBox([self.layer, self.digest])])])  # fmt: skip
        self.widget.add_class("mmcourse-crossmodal")
        self.source = self.picker.scene_image(seed)
        self.last_map = self.run()

    def refresh(self) -> torch.Tensor:
        return self.run()  # a new image needs a new answer

    def result(self) -> attention.CrossModalAttention:
        key = (image_key(self.source), self.question.value.strip())
        return self.results.get_or(key, lambda: attention.cross_modal_attention(self.model, self.source, key[1]))

    def run(self) -> torch.Tensor:
        """Answer (cached), then show the map of the first token of the answer."""
        result = self.result()
        labels = [f"{i}: {token}" for i, token in enumerate(result.tokens)]
        self.answer.value = "answer: <b>{}</b>".format(
            self.model.tokenizer.decode(self.model.tokenizer.convert_tokens_to_ids(result.tokens), skip_special_tokens=True)
            or "(nothing)")  # fmt: skip
        self._relabelling = True  # new options reset the value; draw once, below
        try:
            self.token.options = labels
            self.token.value = labels[0]
        finally:
            self._relabelling = False
        return self.update()

    def current_map(self) -> torch.Tensor:
        result = self.result()
        index = int(str(self.token.value).split(":")[0]) if self.token.value else 0
        maps = result.maps[index]  # (L, H, W)
        return maps.mean(dim=0) if self.layer.value == self.MEAN else maps[self.layer.value]

    def update(self) -> torch.Tensor:
        return self._show(self.current_map())
