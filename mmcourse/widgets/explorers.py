"""Lesson 08's three widgets: a CLIP's attention, CLIP's text-to-patch similarity, a VLM's attention
on the image while it answers. Each runs its model once per image (cached) and then only slices and
draws.
"""

from __future__ import annotations

import ipywidgets as w
import torch

from .. import attention, clip, vision, vlm
from ..utils import get_device
from .controls import ScenePicker, _clickable, _digest_widget, _image_widget, _load_clip, _MapWidget
from .display import _LRU, cell_of_click, image_key

__all__ = ["AttentionExplorer", "CrossModalAttention", "TextPatchMap"]


class AttentionExplorer(_MapWidget):
    """A vision encoder's attention over an image: layer, head or head fusion, rollout, query token.

    `model`: a shipped name or folder of a `CLIPModel` ("shapes-clip"), or a CLIPModel /
    CLIPVisionModel / VisionEncoder / MultimodalModel already loaded (it is switched to eager
    attention; see `mmcourse.attention`).
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
        self.layer = w.IntSlider(
            value=config.num_hidden_layers - 1,
            min=0,
            max=config.num_hidden_layers - 1,
            description="layer",
            continuous_update=True,
        )
        self.head = w.Dropdown(
            options=[*attention.FUSIONS, *heads], value="mean", description="heads"
        )
        self.rollout = w.Checkbox(value=False, description="rollout (layers 0..layer)")
        self.query = w.IntSlider(
            value=0, min=0, max=self.side * self.side, description="query", continuous_update=True
        )
        self.image = _image_widget("mmcourse-attention-image")
        self.digest = _digest_widget()
        self.caption = w.HTML()
        for control, css in (
            (self.layer, "mmcourse-layer"),
            (self.query, "mmcourse-query"),
            (self.head, "mmcourse-head"),
            (self.rollout, "mmcourse-rollout"),
        ):
            control.add_class(css)
            control.observe(lambda _: self.update(), names="value")
        self.events = _clickable(self.image, self.click)
        self.picker = ScenePicker(self.set_image, seed, n_objects, self.image_size)
        self.widget = w.VBox(
            [
                self.picker.box,
                w.HBox(
                    [
                        self.image,
                        w.VBox(
                            [
                                self.layer,
                                self.head,
                                self.rollout,
                                self.query,
                                self.caption,
                                self.digest,
                            ]
                        ),
                    ]
                ),
            ]
        )
        self.widget.add_class("mmcourse-explorer")
        self.source = self.picker.scene_image(seed)
        self.last_map = self.update()

    def click(self, x: float, y: float) -> None:
        row, col = cell_of_click(x, y, self.side)
        self.query.value = 1 + row * self.side + col  # observe() updates

    def attentions(self) -> torch.Tensor:
        key = image_key(self.source)
        return self.attentions_cache.get_or(
            key, lambda: attention.vision_attentions(self.tower, self.source)
        )

    def current_map(self) -> torch.Tensor:
        """The (H, W) map the controls select, from the cache: a slice, or one rollout per (image,
        layer, fusion)."""
        attentions = self.attentions()  # (L, K, T, T)
        head = self.head.value
        head = int(head.split()[1]) if head.startswith("head ") else head
        if self.rollout.value:
            fusion = head if isinstance(head, str) else "mean"
            key = (image_key(self.source), self.layer.value, fusion)
            matrix = self.rollout_cache.get_or(
                key, lambda: attention.rollout(attentions[: self.layer.value + 1], fusion=fusion)
            )
            return attention.row_to_grid(matrix, self.query.value)
        return attention.query_map(attentions, self.layer.value, head, self.query.value)

    def describe(self) -> str:
        query = (
            "[CLS]"
            if self.query.value == 0
            else "patch ({}, {})".format(*divmod(self.query.value - 1, self.side))
        )
        what = (
            f"rollout of layers 0-{self.layer.value}"
            if self.rollout.value
            else f"layer {self.layer.value}"
        )
        if self.rollout.value and self.head.value.startswith("head "):
            what += " (rollout fuses heads by their mean)"
        return f"where {query} looks: {what}, {self.head.value}"

    def update(self) -> torch.Tensor:
        grid_map = self.current_map()
        self.caption.value = self.describe()
        return self._show(
            grid_map,
            mark=None if self.query.value == 0 else divmod(self.query.value - 1, self.side),
        )


class TextPatchMap(_MapWidget):
    """Type a phrase: CLIP's similarity of each patch with it, over the image (see
    attention.text_patch_similarity)."""

    def __init__(
        self,
        model="shapes-clip",
        tokenizer=None,
        seed: int = 0,
        phrase: str = "red circle",
        n_objects: int | None = 1,
    ):
        self.model, self.tokenizer = _load_clip(model, tokenizer)
        if self.tokenizer is None:
            raise ValueError(
                "TextPatchMap needs the CLIP's tokenizer: pass tokenizer=, or a model name or "
                "folder."
            )
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
        self.widget = w.VBox(
            [
                self.picker.box,
                self.phrase,
                w.HBox([self.image, w.VBox([self.caption, self.digest])]),
            ]
        )
        self.widget.add_class("mmcourse-textmap")
        self.source = self.picker.scene_image(seed)
        self.last_map = self.update()

    def current_map(self) -> torch.Tensor:
        import torch.nn.functional as F

        # (N, E)
        patches = self.patch_cache.get_or(
            image_key(self.source),
            lambda: F.normalize(
                attention.patch_embeddings(
                    self.model, vision.pixel_values(self.source, None, self.image_size)
                ),
                dim=-1,
            ),
        )
        phrase = self.phrase.value.strip()
        # (E,)
        text = self.text_cache.get_or(
            phrase,
            lambda: F.normalize(clip.embed_texts(self.model, self.tokenizer, [phrase]), dim=-1)[0],
        )
        side = attention.grid_side(patches.shape[0])
        return (patches @ text).reshape(side, side).float().cpu()  # (H, W)

    def update(self) -> torch.Tensor:
        grid_map = self.current_map()
        row, col = divmod(int(grid_map.argmax()), grid_map.shape[1])
        self.caption.value = f"“{self.phrase.value.strip()}”: most similar patch at ({row}, {col})"
        return self._show(grid_map)


class CrossModalAttention(_MapWidget):
    """A VLM answers (or captions); pick a token it wrote and a layer: the image tokens that token
    attended to.

    `model`: a shipped name or folder of a `MultimodalModel` ("shapes-vlm-patches"), or one already
    loaded. Each (image, question) costs one `attention.cross_modal_attention` (generate + one
    forward); the rest is slicing.
    """

    MEAN = "mean of layers"

    def __init__(
        self,
        model="shapes-vlm-patches",
        seed: int = 0,
        question: str = "Where is the red circle?",
        n_objects: int | None = None,
    ):
        self.model = vlm.load(model, get_device()) if isinstance(model, str) else model
        self.image_size = self.model.vision_model.config.image_size
        self.results = _LRU()  # (image key, question) -> attention.CrossModalAttention
        n_layers = self.model.language_model.config.num_hidden_layers
        self.question = w.Text(
            value=question,
            description="question",
            placeholder="empty: caption the image",
            continuous_update=False,
        )
        self.ask = w.Button(description="answer", icon="play")
        self.token = w.ToggleButtons(options=[], description="token")
        self.layer = w.Dropdown(
            options=[self.MEAN, *range(n_layers)], value=self.MEAN, description="LM layer"
        )
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
        self.widget = w.VBox(
            [
                self.picker.box,
                w.HBox([self.question, self.ask]),
                self.answer,
                self.token,
                w.HBox([self.image, w.VBox([self.layer, self.digest])]),
            ]
        )
        self.widget.add_class("mmcourse-crossmodal")
        self.source = self.picker.scene_image(seed)
        self.last_map = self.run()

    def refresh(self) -> torch.Tensor:
        return self.run()  # a new image needs a new answer

    def result(self) -> attention.CrossModalAttention:
        key = (image_key(self.source), self.question.value.strip())
        return self.results.get_or(
            key, lambda: attention.cross_modal_attention(self.model, self.source, key[1])
        )

    def run(self) -> torch.Tensor:
        """Answer (cached), then show the map of the first token of the answer."""
        result = self.result()
        labels = [f"{i}: {token}" for i, token in enumerate(result.tokens)]
        self.answer.value = "answer: <b>{}</b>".format(
            self.model.tokenizer.decode(
                self.model.tokenizer.convert_tokens_to_ids(result.tokens), skip_special_tokens=True
            )
            or "(nothing)"
        )
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
