"""Lesson 06's decoding by hand: `step_times` (greedy, with and without the KV cache) and
`beam_tree` (beam search) give what `generate` gives, and the decoding figures draw their data."""

from __future__ import annotations

import matplotlib
import pytest
import torch

from mmcourse import data, plotting, vlm

matplotlib.use("Agg")


@pytest.fixture(scope="module")
def prompts(vlm_patches):
    images = [data.random_scene(9_000 + i).render() for i in range(3)]
    # prompts of unequal lengths, so generation_inputs pads them on the left
    questions = ["", "where is the circle?", "how many shapes are there?"]
    return vlm_patches.generation_inputs(vlm_patches.pixel_values(images), questions)


@pytest.mark.parametrize("use_cache", [True, False])
def test_step_times_decodes_as_generate_does(vlm_patches, prompts, use_cache):
    timed = vlm.step_times(vlm_patches, prompts, 6, use_cache=use_cache)
    expected = vlm.generate_tokens(vlm_patches, prompts, 6, min_new_tokens=6)  # (B, 6)
    assert timed.ids.shape == (3, 6) and torch.equal(timed.ids, expected)
    assert len(timed.seconds) == 6 and all(s > 0 for s in timed.seconds)


def test_beam_tree_ends_where_generate_with_beams_ends(vlm_patches, prompts):
    one = {k: v[:1] for k, v in prompts.items()}
    tree = vlm.beam_tree(vlm_patches, one, num_beams=3, steps=5)
    assert [len(step) for step in tree] == [3] * 5
    assert all(len(b.ids) == t + 1 for t, step in enumerate(tree) for b in step)
    for t in range(1, 5):  # each kept beam extends a beam of the step before
        assert all(b.ids[:-1] == tree[t - 1][b.parent].ids for b in tree[t])
    assert all(a.logprob >= b.logprob for step in tree for a, b in zip(step, step[1:]))
    expected = vlm.generate_tokens(vlm_patches, one, 5, num_beams=3, min_new_tokens=5)
    assert list(tree[-1][0].ids) == expected[0].tolist()


@pytest.mark.parametrize(
    "probs, top_p, kept",
    [
        ([0.5, 0.3, 0.2], 0.8, 2),
        ([0.5, 0.3, 0.2], 0.81, 3),
        ([0.2, 0.7, 0.1], 0.6, 1),
        ([1.0], 0.9, 1),
    ],
)
def test_top_p_keeps_the_fewest_tokens_that_reach_p(probs, top_p, kept):
    assert plotting.top_p_count(probs, top_p) == kept


def test_decoding_figures_draw_their_data():
    fig = plotting.step_times_plot({"cached": [0.001, 0.002], "uncached": [0.001, 0.004, 0.009]})
    lines = fig.axes[0].get_lines()
    assert [len(line.get_xdata()) for line in lines] == [2, 3]
    assert lines[1].get_ydata()[-1] == pytest.approx(9.0)  # milliseconds

    fig = plotting.next_token_cutoffs([0.1, 0.6, 0.3], ["a", "b", "c"], top_k=2, top_p=0.85)
    ticks = [t.get_text() for t in fig.axes[0].get_xticklabels()]
    assert ticks == ["b", "c", "a"]
    legend = [t.get_text() for t in fig.axes[0].get_legend().get_texts()]
    assert "top_k=2: keeps 2" in legend and "top_p=0.85: keeps 2" in legend

    steps = [[("a", -0.1, -1), ("b", -0.5, -1)], [("c", -0.3, 1), ("d", -0.4, 0)]]
    fig = plotting.beam_search_tree(steps)
    texts = [t.get_text() for t in fig.axes[0].texts]
    assert "c\n-0.30" in texts and "d\n-0.40" in texts
    bold = [line for line in fig.axes[0].get_lines() if line.get_linewidth() > 2]
    # the best path: start -> "b" (row 1) -> "c" (row 0)
    assert [(tuple(line.get_xdata()), tuple(line.get_ydata())) for line in bold] == [
        ((0, 1), (0, -1)),
        ((1, 2), (-1, 0)),
    ]
