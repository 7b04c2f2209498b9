"""The figures of sparse-seq2seq-heads: every head named in α over training; attention maps
that shade what lies outside the support and title their query and key axes."""
from __future__ import annotations

import numpy as np
import pytest
import torch


def test_alpha_over_training_names_every_head_in_a_legend():
    from sparse_seq2seq.analysis.plots import alpha_trajectories_figure
    from sparse_seq2seq.analysis.training_log import AlphaTrajectory

    heads = {"enc": 3, "dec_cross": 12}  # beyond ten heads the line style tells them apart too
    alphas = {(kind, layer, h): [1.5 + 0.01 * h, 1.5 - 0.01 * layer]
              for kind, count in heads.items() for layer in (0, 1) for h in range(count)}
    fig = alpha_trajectories_figure(AlphaTrajectory(updates=[1.0, 2.0], alphas=alphas))
    panels = [ax for ax in fig.axes if ax.get_visible()]
    assert len(panels) == 4
    for ax in panels:
        kind = "enc" if ax.get_title().startswith("encoder") else "dec_cross"
        lines = ax.get_lines()
        assert [line.get_label() for line in lines] == [f"head {h}" for h in range(heads[kind])]
        looks = {(tuple(line.get_color()), line.get_linestyle()) for line in lines}
        assert len(looks) == heads[kind]  # no two heads of a panel drawn alike
        assert "layer" in ax.get_title() and ax.get_xlabel() == "update"
    legends = [ax.get_legend() for ax in panels if ax.get_legend() is not None]
    assert sorted(len(legend.get_texts()) for legend in legends) == [3, 12]
    with pytest.raises(ValueError, match="no α"):
        alpha_trajectories_figure(AlphaTrajectory())


def test_attention_maps_shade_the_cells_outside_the_support_and_name_their_axes():
    from matplotlib.collections import LineCollection

    from sparse_seq2seq.analysis.collect import SentenceAttention
    from sparse_seq2seq.analysis.plots import AXIS_TITLES, attention_figure

    probs = torch.tensor([[[0.7, 0.3, 0.0], [0.0, 0.0, 1.0]],
                          [[1 / 3, 1 / 3, 1 / 3], [0.5, 0.0, 0.5]]])  # (heads, target, source)
    sentence = SentenceAttention(index=4, source=["a", "b", "</s>"], decoder_input=["</s>", "x"],
                                 target=["x", "</s>"], attention={("dec_cross", 0): probs})
    fig = attention_figure(sentence, "dec_cross", {("dec_cross", 0): [1.2, 1.9]})
    panels = [ax for ax in fig.axes if ax.get_title().startswith("layer")]
    assert [ax.get_title() for ax in panels] == ["layer 0 head 0  α=1.20", "layer 0 head 1  α=1.90"]
    query, key = AXIS_TITLES["dec_cross"]
    assert (panels[0].get_ylabel(), panels[0].get_xlabel()) == (query, key)
    assert "query" in query and "key" in key and panels[1].get_ylabel() == ""
    assert [t.get_text() for t in panels[0].get_yticklabels()] == ["x", "</s>"]
    for h, ax in enumerate(panels):
        weights, shading = ax.get_images()
        assert np.array_equal(weights.get_array(), probs[h].numpy())
        # the shading covers exactly the zero-weight cells, i.e. everything but the support
        assert np.array_equal(~np.ma.getmaskarray(shading.get_array()), probs[h].numpy() == 0)
        outline = [c for c in ax.collections if isinstance(c, LineCollection)]
        assert len(outline) == 1 and len(outline[0].get_segments()) > 0
    texts = [t.get_text() for legend in fig.legends for t in legend.get_texts()]
    assert any("support" in t and "> 0" in t for t in texts)
    assert any("outside the support" in t and "weight 0" in t for t in texts)
