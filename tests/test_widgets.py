"""Lesson 08's widgets without a browser: set each control, and the map the widget returns (and
draws, and writes in its digest line) equals the one `mmcourse.attention` computes directly; each
model runs once per image (or image and question), whatever the controls do.

In plain Python the observers run synchronously, so `control.value = ...` has updated `last_map`,
`image.value` (a PNG) and `digest.value` when it returns. Clicks are sent as ipyevents would send
them.
"""

import datetime
import io
from unittest import mock

import pytest
import torch
from PIL import Image, ImageDraw
from transformers import CLIPModel

from mmcourse import attention, data, widgets
from mmcourse import clip as clip_library  # `clip` is the fixture: the shipped model

SIZE = widgets.DISPLAY_SIZE
CYAN = (0, 255, 255)  # the outline of the query patch


pytestmark = pytest.mark.usefixtures("one_torch_thread")


@pytest.fixture(scope="module")
def vit_b32(vit_b32_folder):
    """conftest's random-weight CLIP with ViT-B/32's vision layout (224 px, patch 32: a 7 x 7 grid),
    two layers."""
    return CLIPModel.from_pretrained(vit_b32_folder).eval()


def png_bytes(image: Image.Image) -> bytes:
    buffer = io.BytesIO()
    image.save(buffer, format="PNG")
    return buffer.getvalue()


def upload_value(name: str, mime: str, content: bytes) -> tuple[dict, ...]:
    """What an ipywidgets 8 FileUpload holds after the browser sent one file."""
    return (
        {
            "name": name,
            "type": mime,
            "size": len(content),
            "content": memoryview(content),
            "last_modified": datetime.datetime(2024, 1, 1, tzinfo=datetime.timezone.utc),
        },
    )


def shown(widget) -> Image.Image:
    image = Image.open(io.BytesIO(widget.image.value))
    image.load()
    return image


def assert_shows(widget, expected: torch.Tensor, returned: torch.Tensor | None = None) -> None:
    """The widget's map is `expected` (to float rounding), its digest describes it and its PNG is
    drawn."""
    torch.testing.assert_close(widget.last_map, expected, rtol=0, atol=1e-6)
    if returned is not None:
        assert returned is widget.last_map
    assert widgets.digest_matches(widget.digest.value, expected), (
        widget.digest.value,
        widgets.map_digest(expected),
    )
    assert widget.digest.value == widgets.map_digest(widget.last_map)
    picture = shown(widget)
    assert picture.format == "PNG" and picture.size == (SIZE, SIZE) and picture.mode == "RGB"


def query_index(row: int, col: int, side: int = 9) -> int:
    return 1 + row * side + col


def has_cyan(picture: Image.Image) -> bool:
    return CYAN in {color for _, color in picture.getcolors(SIZE * SIZE)}


# --- AttentionExplorer
# ---------------------------------------------------------------------------------------


@pytest.fixture
def explorer(clip):
    return widgets.AttentionExplorer(clip, seed=3)


def expected_map(explorer, attentions: torch.Tensor) -> torch.Tensor:
    """What the explorer's controls select, computed by the library alone."""
    head = explorer.head.value
    head = int(head.removeprefix("head ")) if head.startswith("head ") else head
    layer, query = explorer.layer.value, explorer.query.value
    if explorer.rollout.value:
        fusion = head if isinstance(head, str) else "mean"
        return attention.row_to_grid(
            attention.rollout(attentions[: layer + 1], fusion=fusion), query
        )
    return attention.query_map(attentions, layer, head, query)


def test_explorer_first_render_is_the_last_layers_cls_map(clip, explorer):
    attentions = attention.vision_attentions(clip, data.random_scene(3).render())  # (L, K, T, T)
    assert explorer.source.size == (72, 72)
    assert explorer.layer.value == attentions.shape[0] - 1 and explorer.head.value == "mean"
    assert explorer.query.value == 0 and not explorer.rollout.value
    assert_shows(explorer, attention.cls_map(attentions, -1, "mean"))
    assert explorer.caption.value == "where [CLS] looks: layer 3, mean"
    assert not has_cyan(shown(explorer))  # [CLS] is no patch: nothing outlined


def test_explorer_every_layer(clip, explorer):
    attentions = attention.vision_attentions(clip, explorer.source)
    n_layers = attentions.shape[0]
    assert (explorer.layer.min, explorer.layer.max) == (0, n_layers - 1)
    maps = []
    for layer in [0, *range(n_layers)]:  # 0 twice: the first is a change from the last layer
        explorer.layer.value = layer
        assert_shows(explorer, attention.query_map(attentions, layer, "mean", 0), explorer.update())
        maps.append(explorer.last_map)
    assert not torch.allclose(maps[0], maps[-1])  # the layers do differ


def test_explorer_every_head_and_fusion(clip, explorer):
    attentions = attention.vision_attentions(clip, explorer.source)
    n_heads = attentions.shape[1]
    assert list(explorer.head.options) == [
        *attention.FUSIONS,
        *(f"head {k}" for k in range(n_heads)),
    ]
    explorer.layer.value = 1
    explorer.query.value = query_index(4, 4)
    for option, head in [
        *((f, f) for f in attention.FUSIONS),
        *((f"head {k}", k) for k in range(n_heads)),
    ]:
        explorer.head.value = option
        assert_shows(explorer, attention.query_map(attentions, 1, head, (4, 4)))
        assert explorer.caption.value.endswith(f"layer 1, {option}")
    by_head = attentions[1, :, query_index(4, 4), 1:].reshape(n_heads, 9, 9)  # (K, H, W)
    explorer.head.value = "max"
    torch.testing.assert_close(explorer.last_map, by_head.amax(dim=0))
    explorer.head.value = "min"
    torch.testing.assert_close(explorer.last_map, by_head.amin(dim=0))


@pytest.mark.parametrize("fusion", ["mean", "max"])
def test_explorer_rollout_on_and_off(clip, explorer, fusion):
    attentions = attention.vision_attentions(clip, explorer.source)
    explorer.head.value = fusion
    explorer.rollout.value = True
    for layer in range(attentions.shape[0]):
        explorer.layer.value = layer
        assert_shows(
            explorer, attention.cls_map(attention.rollout(attentions[: layer + 1], fusion=fusion))
        )
        assert explorer.caption.value == f"where [CLS] looks: rollout of layers 0-{layer}, {fusion}"
    explorer.query.value = query_index(2, 6)
    rolled = attention.rollout(attentions, fusion=fusion)  # (T, T)
    assert_shows(explorer, attention.row_to_grid(rolled, (2, 6)))
    explorer.rollout.value = False
    assert_shows(explorer, attention.query_map(attentions, -1, fusion, (2, 6)))


def test_explorer_rollout_with_one_head_fuses_by_the_mean(clip, explorer):
    attentions = attention.vision_attentions(clip, explorer.source)
    explorer.head.value = "head 2"
    explorer.rollout.value = True
    assert_shows(explorer, attention.cls_map(attention.rollout(attentions, fusion="mean")))
    assert "rollout fuses heads by their mean" in explorer.caption.value


def test_explorer_query_cls_and_patches(clip, explorer):
    attentions = attention.vision_attentions(clip, explorer.source)
    assert (explorer.query.min, explorer.query.max) == (0, 81)
    explorer.head.value = "head 1"
    for row, col in [(0, 0), (0, 8), (4, 4), (8, 0), (8, 8), (2, 7)]:
        explorer.query.value = query_index(row, col)
        assert_shows(explorer, attention.query_map(attentions, 3, 1, (row, col)))
        assert f"patch ({row}, {col})" in explorer.caption.value
        picture = shown(explorer)
        cell = SIZE // 9
        assert picture.getpixel((col * cell, row * cell)) == CYAN  # the query patch is outlined
        assert picture.getpixel((col * cell + cell // 2, row * cell + cell // 2)) != CYAN
    explorer.query.value = 0
    assert_shows(explorer, attention.cls_map(attentions, 3, 1))
    assert not has_cyan(shown(explorer))


CLICKS = [  # pixel (x, y) on the 288 px image -> patch (row, col) of the 9 x 9 grid (32 px each)
    ((0, 0), (0, 0)),
    ((31.9, 0), (0, 0)),
    ((32, 0), (0, 1)),
    ((0, 32), (1, 0)),
    ((100, 40), (1, 3)),
    ((144, 144), (4, 4)),
    ((287, 287), (8, 8)),
    ((287.9, 10), (0, 8)),
    ((-3, 5), (0, 0)),
    ((300, 400), (8, 8)),
]


@pytest.mark.parametrize(("xy", "cell"), CLICKS)
def test_cell_of_click(xy, cell):
    assert widgets.cell_of_click(*xy, grid=9) == cell


def test_explorer_click_picks_the_patch(clip, explorer):
    attentions = attention.vision_attentions(clip, explorer.source)
    explorer.layer.value = 2
    for (x, y), (row, col) in CLICKS:
        explorer.click(x, y)
        assert (
            explorer.query.value
            == query_index(row, col)
            == query_index(*widgets.cell_of_click(x, y, 9))
        )
        assert_shows(explorer, attention.query_map(attentions, 2, "mean", (row, col)))


def test_explorer_click_event_from_the_browser(clip, explorer):
    """ipyevents' message: relativeX/Y are CSS pixels from the element's box; dataX/Y are pixels of
    the PNG itself, corrected for the displayed size, padding and border. Here the image is shown at
    half size (144
    px)."""
    attentions = attention.vision_attentions(clip, explorer.source)
    for (x, y), (row, col) in [((10, 10), (0, 0)), ((150, 40), (1, 4)), ((287, 200), (6, 8))]:
        event = {
            "type": "click",
            "relativeX": x // 2,
            "relativeY": y // 2,
            "dataX": x,
            "dataY": y,
            "boundingRectWidth": SIZE // 2,
            "boundingRectHeight": SIZE // 2,
        }
        explorer.events._handle_mouse_msg(None, event, [])
        assert explorer.query.value == query_index(row, col)
        assert_shows(explorer, attention.query_map(attentions, -1, "mean", (row, col)))
    # no dataX
    explorer.events._handle_mouse_msg(None, {"type": "click", "relativeX": 40, "relativeY": 70}, [])
    assert explorer.query.value == query_index(2, 1)
    # a shrunk image keeps its aspect (not stretched to the controls' height), so dataX/dataY stay
    # true to the grid
    assert explorer.image.layout.align_self == "flex-start"


def test_explorer_scene_number_keeps_the_controls(clip, explorer):
    explorer.layer.value, explorer.head.value, explorer.query.value = 1, "head 0", query_index(3, 5)
    explorer.picker.seed.value = 7
    assert explorer.source.tobytes() == data.random_scene(7).render(72).tobytes()
    attentions = attention.vision_attentions(clip, explorer.source)
    assert (explorer.layer.value, explorer.head.value, explorer.query.value) == (
        1,
        "head 0",
        query_index(3, 5),
    )
    assert_shows(explorer, attention.query_map(attentions, 1, 0, (3, 5)))


def test_explorer_new_random_scene_button(clip, explorer):
    seeds = set()
    for _ in range(3):
        before = explorer.picker.seed.value
        explorer.picker.random.click()
        assert explorer.picker.seed.value != before
        seeds.add(explorer.picker.seed.value)
        assert (
            explorer.source.tobytes()
            == explorer.picker.scene_image(explorer.picker.seed.value).tobytes()
        )
        assert_shows(
            explorer, expected_map(explorer, attention.vision_attentions(clip, explorer.source))
        )
    assert len(seeds) == 3


def test_explorer_n_objects(clip):
    explorer = widgets.AttentionExplorer(clip, seed=4, n_objects=1)
    assert explorer.source.tobytes() == data.random_scene(4, n_objects=1).render().tobytes()
    assert_shows(explorer, attention.cls_map(attention.vision_attentions(clip, explorer.source)))


def rgba_photo() -> Image.Image:
    """A non-square RGBA image (120 x 80): transparent background, an opaque red disk right of
    centre."""
    image = Image.new("RGBA", (120, 80), (0, 0, 0, 0))
    ImageDraw.Draw(image).ellipse((60, 20, 100, 60), fill=(213, 94, 0, 255))
    return image


def grayscale_photo() -> Image.Image:
    image = Image.new("L", (50, 90), 30)  # tall
    ImageDraw.Draw(image).rectangle((10, 30, 40, 60), fill=220)
    return image


@pytest.mark.parametrize("make", [rgba_photo, grayscale_photo])
def test_explorer_upload(clip, explorer, make):
    original = make()
    explorer.layer.value, explorer.query.value = 2, query_index(4, 5)
    explorer.picker.upload.value = upload_value("photo.png", "image/png", png_bytes(original))
    # center crop to a square, resize, as CLIP's processor
    expected_source = widgets.fit_image(original, 72)
    assert explorer.source.mode == "RGB" and explorer.source.size == (72, 72)
    assert explorer.source.tobytes() == expected_source.tobytes()
    assert_shows(
        explorer,
        attention.query_map(attention.vision_attentions(clip, expected_source), 2, "mean", (4, 5)),
    )


def test_rgba_upload_is_on_white_like_a_browser_shows_it():
    corner = widgets.fit_image(rgba_photo(), 72).getpixel((0, 0))  # a transparent pixel
    assert corner == (255, 255, 255)


def test_explorer_upload_that_is_no_image(explorer):
    before = explorer.digest.value
    with pytest.raises(ValueError, match=r"notes\.txt is not an image.*upload a PNG or JPEG"):
        explorer.picker.upload.value = upload_value("notes.txt", "text/plain", b"not a picture")
    assert explorer.digest.value == before  # the last image stays
    explorer.picker.upload.value = ()  # cleared: nothing happens
    assert explorer.digest.value == before


def test_explorer_one_forward_per_image(clip):
    tower = clip.vision_model
    forwards = []
    hook = tower.register_forward_hook(lambda *_: forwards.append(1))
    try:
        with (
            mock.patch.object(
                attention, "vision_attentions", wraps=attention.vision_attentions
            ) as spy,
            mock.patch.object(attention, "rollout", wraps=attention.rollout) as rollouts,
        ):
            explorer = widgets.AttentionExplorer(clip, seed=0)
            assert spy.call_count == len(forwards) == 1
            for layer in range(4):
                explorer.layer.value = layer
            for head in explorer.head.options:
                explorer.head.value = head
            for query in (0, 5, 40, 81):
                explorer.query.value = query
            explorer.click(100, 100)
            explorer.head.value = "mean"
            for _ in range(2):  # rollout on and off twice: one rollout per (image, layer, fusion)
                explorer.rollout.value = True
                explorer.rollout.value = False
            assert spy.call_count == len(forwards) == 1 and rollouts.call_count == 1
            explorer.picker.seed.value = 1
            explorer.picker.seed.value = 2
            assert spy.call_count == len(forwards) == 3
            explorer.picker.seed.value = 0  # back to an earlier scene: from the cache
            assert spy.call_count == len(forwards) == 3
            scene_2 = png_bytes(data.random_scene(2).render())
            explorer.picker.upload.value = upload_value("scene.png", "image/png", scene_2)
            # the same pixels as scene 2: the same cache entry
            assert spy.call_count == len(forwards) == 3
            assert len(explorer.attentions_cache) == 3
    finally:
        hook.remove()


def test_explorer_cache_is_bounded(clip):
    explorer = widgets.AttentionExplorer(clip, seed=0)
    for seed in range(1, widgets.CACHE_IMAGES + 5):
        explorer.picker.seed.value = seed
    assert len(explorer.attentions_cache) == widgets.CACHE_IMAGES


def test_explorer_on_a_vit_b32_grid(vit_b32):
    """7 x 7 patches of 32 px at 224 px: the query slider, clicks and the uploaded image follow the
    model."""
    explorer = widgets.AttentionExplorer(vit_b32, seed=1)
    assert explorer.side == 7 and explorer.query.max == 49 and explorer.layer.max == 1
    assert explorer.source.size == (224, 224)
    explorer.click(287, 0)  # top right: 288 px / 7 cells
    assert explorer.query.value == query_index(0, 6, side=7)
    explorer.picker.upload.value = upload_value(
        "wide.png", "image/png", png_bytes(rgba_photo().resize((400, 300)))
    )
    attentions = attention.vision_attentions(vit_b32, explorer.source)
    assert attentions.shape == (2, 12, 50, 50)
    assert_shows(explorer, attention.query_map(attentions, 1, "mean", (0, 6)))
    explorer.rollout.value = True
    assert_shows(explorer, attention.row_to_grid(attention.rollout(attentions), (0, 6)))


# --- TextPatchMap
# --------------------------------------------------------------------------------------------


def test_text_patch_map_follows_the_phrase(clip, clip_tokenizer):
    text_map = widgets.TextPatchMap(clip, clip_tokenizer, seed=11)
    assert text_map.source.tobytes() == data.random_scene(11, n_objects=1).render().tobytes()
    assert_shows(
        text_map,
        attention.text_patch_similarity(clip, clip_tokenizer, text_map.source, "red circle"),
    )
    for phrase in [
        "blue square",
        "a green triangle at the top",
        "  yellow diamond ",
        "",
        "red circle",
    ]:
        text_map.phrase.value = phrase
        expected = attention.text_patch_similarity(
            clip, clip_tokenizer, text_map.source, phrase.strip()
        )
        assert_shows(text_map, expected, text_map.update())
        row, col = divmod(int(expected.argmax()), 9)
        assert text_map.caption.value == f"“{phrase.strip()}”: most similar patch at ({row}, {col})"
    text_map.picker.seed.value = 12
    assert_shows(
        text_map,
        attention.text_patch_similarity(clip, clip_tokenizer, text_map.source, "red circle"),
    )


def test_text_patch_map_upload(clip, clip_tokenizer):
    text_map = widgets.TextPatchMap(clip, clip_tokenizer, seed=0, phrase="orange circle")
    text_map.picker.upload.value = upload_value("disk.png", "image/png", png_bytes(rgba_photo()))
    source = widgets.fit_image(rgba_photo(), 72)
    assert text_map.source.tobytes() == source.tobytes()
    assert_shows(
        text_map, attention.text_patch_similarity(clip, clip_tokenizer, source, "orange circle")
    )


def test_text_patch_map_caches_patches_and_texts(clip, clip_tokenizer):
    with (
        mock.patch.object(clip_library, "embed_texts", wraps=clip_library.embed_texts) as texts,
        mock.patch.object(
            attention, "patch_embeddings", wraps=attention.patch_embeddings
        ) as patches,
    ):
        text_map = widgets.TextPatchMap(clip, clip_tokenizer, seed=0)
        assert (texts.call_count, patches.call_count) == (1, 1)
        text_map.phrase.value = "blue square"
        text_map.phrase.value = "red circle "  # the same phrase once stripped
        text_map.phrase.value = "blue square"
        assert (texts.call_count, patches.call_count) == (2, 1)
        text_map.picker.seed.value = 1
        assert (texts.call_count, patches.call_count) == (2, 2)
        text_map.phrase.value = "green triangle"
        text_map.picker.seed.value = 0
        assert (texts.call_count, patches.call_count) == (3, 2)
        assert set(text_map.text_cache) == {"red circle", "blue square", "green triangle"}


def test_text_patch_map_needs_a_tokenizer(clip):
    with pytest.raises(ValueError, match="tokenizer="):
        widgets.TextPatchMap(clip)


# --- CrossModalAttention
# -------------------------------------------------------------------------------------


def decoded(model, tokens: list[str]) -> str:
    return model.tokenizer.decode(
        model.tokenizer.convert_tokens_to_ids(tokens), skip_special_tokens=True
    )


def test_cross_modal_every_token_and_layer(vlm_patches):
    looking = widgets.CrossModalAttention(vlm_patches, seed=5, question="Where is the red circle?")
    result = attention.cross_modal_attention(
        vlm_patches, looking.source, "Where is the red circle?"
    )
    labels = [f"{i}: {token}" for i, token in enumerate(result.tokens)]
    assert list(looking.token.options) == labels and looking.token.value == labels[0]
    assert looking.answer.value == f"answer: <b>{decoded(vlm_patches, result.tokens)}</b>"
    assert result.tokens[-1] == vlm_patches.tokenizer.eos_token
    n_layers = vlm_patches.language_model.config.num_hidden_layers
    assert (
        list(looking.layer.options) == [looking.MEAN, *range(n_layers)]
        and looking.layer.value == looking.MEAN
    )
    assert_shows(looking, result.maps[0].mean(dim=0))  # (H, W): 3 x 3 image tokens
    assert looking.last_map.shape == (3, 3)
    for index, label in enumerate(labels):
        looking.token.value = label
        for layer in [*range(n_layers), looking.MEAN]:
            looking.layer.value = layer
            expected = (
                result.maps[index].mean(dim=0)
                if layer == looking.MEAN
                else result.maps[index][layer]
            )
            assert_shows(looking, expected, looking.update())


def test_cross_modal_empty_question_captions(vlm_patches):
    looking = widgets.CrossModalAttention(vlm_patches, seed=5, question="")
    result = attention.cross_modal_attention(vlm_patches, looking.source, "")
    assert len(result.tokens) > 5  # a caption: several objects with positions
    assert [label.split(": ", 1)[1] for label in looking.token.options] == result.tokens
    assert looking.answer.value == f"answer: <b>{decoded(vlm_patches, result.tokens)}</b>"
    looking.layer.value = 2
    looking.token.value = looking.token.options[3]
    assert_shows(looking, result.maps[3][2])


def test_cross_modal_new_question_keeps_the_layer(vlm_patches):
    looking = widgets.CrossModalAttention(vlm_patches, seed=5)
    looking.layer.value = 1
    looking.token.value = looking.token.options[1]
    looking.question.value = "What color is the triangle?"
    result = attention.cross_modal_attention(
        vlm_patches, looking.source, "What color is the triangle?"
    )
    # back to the first token
    assert looking.token.value == looking.token.options[0] == f"0: {result.tokens[0]}"
    assert looking.layer.value == 1
    assert_shows(looking, result.maps[0][1])
    looking.picker.seed.value = 6
    result = attention.cross_modal_attention(
        vlm_patches, looking.source, "What color is the triangle?"
    )
    assert_shows(looking, result.maps[0][1])


def test_cross_modal_one_run_per_image_and_question(vlm_patches):
    with mock.patch.object(
        attention, "cross_modal_attention", wraps=attention.cross_modal_attention
    ) as spy:
        looking = widgets.CrossModalAttention(vlm_patches, seed=5)
        assert spy.call_count == 1
        for label in looking.token.options:
            looking.token.value = label
        for layer in looking.layer.options:
            looking.layer.value = layer
        looking.ask.click()  # the same question again: from the cache, redrawn
        assert spy.call_count == 1
        looking.question.value = ""
        looking.question.value = "Where is the red circle?  "  # the first question, once stripped
        assert spy.call_count == 2
        looking.picker.seed.value = 6
        looking.picker.seed.value = 5
        assert spy.call_count == 3 and len(looking.results) == 3


# --- the digest line
# -----------------------------------------------------------------------------------------


def test_map_digest_and_matching():
    grid = torch.arange(81, dtype=torch.float32).reshape(9, 9) / 100
    assert widgets.map_digest(grid) == "9x9 peak (8, 8) max 0.8000 mean 0.4000 min 0.0000"
    assert widgets.digest_matches(widgets.map_digest(grid), grid)
    assert widgets.digest_matches(f"<b>{widgets.map_digest(grid)}</b>", grid)  # found inside HTML
    assert widgets.digest_matches(widgets.map_digest(grid + 1e-3), grid)  # within the default 2e-3
    assert not widgets.digest_matches(widgets.map_digest(grid + 1e-2), grid)
    assert not widgets.digest_matches(widgets.map_digest(grid + 1e-3), grid, tolerance=0)
    assert widgets.digest_matches(widgets.map_digest(grid + 1e-2), grid, tolerance=0.02)
    moved = grid.clone()
    moved[0, 0] = 0.81  # a new peak, statistics within tolerance
    assert not widgets.digest_matches(widgets.map_digest(moved), grid)
    assert not widgets.digest_matches(widgets.map_digest(grid[:7, :7]), grid)  # another size
    assert not widgets.digest_matches("", grid) and not widgets.digest_matches(
        "no digest here", grid
    )


def test_digest_tells_layers_apart(clip):
    attentions = attention.vision_attentions(clip, data.random_scene(3).render())
    last, other = attention.cls_map(attentions, 3), attention.cls_map(attentions, 2)
    assert widgets.digest_matches(widgets.map_digest(last), last)
    assert not widgets.digest_matches(widgets.map_digest(last), other)
    assert not widgets.digest_matches(widgets.map_digest(other), last)
