"""The parts the widgets share: the scene picker (a scene by number, a random one, an upload),
clickable images, the digest line, and the base that draws a map over the source image.
"""

from __future__ import annotations

import io
from collections.abc import Callable

import ipywidgets as w
import numpy as np
import torch
from PIL import Image

from .. import checkpoints, data
from ..utils import get_device
from .display import DISPLAY_SIZE, fit_image, heatmap_overlay, map_digest, png

__all__ = ["ScenePicker"]


class ScenePicker:
    """A scene by number, a new random one, or an uploaded image; calls `on_image(PIL image)` on
    each change."""

    def __init__(
        self,
        on_image: Callable[[Image.Image], None],
        seed: int = 0,
        n_objects: int | None = None,
        size: int = data.DEFAULT_IMAGE_SIZE,
    ):
        self.on_image, self.n_objects, self.size = on_image, n_objects, size
        self.seed = w.IntText(value=seed, description="scene", layout=w.Layout(width="160px"))
        self.random = w.Button(
            description="new random scene", icon="random", layout=w.Layout(width="auto")
        )
        self.upload = w.FileUpload(
            accept="image/*",
            multiple=False,
            description="upload an image",
            layout=w.Layout(width="auto"),
        )
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
        except Exception as error:
            raise ValueError(
                f"{files[0].get('name', 'the upload')} is not an image PIL can read ({error}); "
                "upload a PNG or JPEG."
            ) from error
        self.upload.value = ()  # so that uploading the same file again is a change too
        self.on_image(fit_image(image, self.size))


def _clickable(image_widget: w.Image, on_click: Callable[[float, float], None]):
    """Clicks on an Image widget, as (x, y) pixels of the PNG it shows (ipyevents).

    ipyevents' dataX/dataY are in the PNG's own pixels, corrected for the size the browser draws it
    at (CSS may scale the <img>) and for padding and border; relativeX/Y are CSS pixels from the
    element's box, right only at full size and without padding: the fallback.
    """
    from ipyevents import Event

    events = Event(source=image_widget, watched_events=["click"], prevent_default_action=True)
    events.on_dom_event(
        lambda event: on_click(
            event.get("dataX", event.get("relativeX", 0)),
            event.get("dataY", event.get("relativeY", 0)),
        )
    )
    return events


def _image_widget(css: str) -> w.Image:
    # flex-start, not the HBox's default stretch: in a narrow notebook the image shrinks and keeps
    # its aspect instead of being stretched to the height of the controls beside it (measured: 192 x
    # 552 px in a 560 px wide window)
    image = w.Image(
        format="png",
        width=DISPLAY_SIZE,
        height=DISPLAY_SIZE,
        layout=w.Layout(align_self="flex-start"),
    )
    image.add_class(css)
    return image


def _digest_widget() -> w.HTML:
    digest = w.HTML()
    digest.add_class("mmcourse-digest")
    return digest


def _load_clip(model, tokenizer=None):
    from transformers import AutoTokenizer, CLIPModel

    if isinstance(model, str):
        name = model
        model = checkpoints.from_pretrained(CLIPModel, name).to(get_device()).eval()
        tokenizer = tokenizer or checkpoints.from_pretrained(AutoTokenizer, name)
    return model, tokenizer


class _MapWidget:
    """What the widgets share: a source image, the picture of it with a map over it, and the digest
    line."""

    widget: w.Box
    image_size: int

    def _ipython_display_(self):
        from IPython.display import display

        display(self.widget)

    def set_image(self, image) -> torch.Tensor:
        """Show another image (a scene, an upload: any size, fitted to the model's); returns the new
        map."""
        self.source = fit_image(image, self.image_size)
        return self.refresh()

    def refresh(self) -> torch.Tensor:
        return self.update()

    def _show(self, grid_map: torch.Tensor, mark: tuple[int, int] | None = None) -> torch.Tensor:
        """Draw `grid_map` over the source image, write its digest, and return it (the data of this
        update)."""
        self.image.value = png(heatmap_overlay(self.source, grid_map, mark=mark))
        self.digest.value = map_digest(grid_map)
        self.last_map = grid_map
        return grid_map
