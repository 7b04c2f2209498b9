"""PNG figures of what the heads learned (Correia, Niculae & Martins 2019, §5):

* :func:`plot_alphas` — learned α of every head, per attention type and layer (cf. Fig. 4);
* :func:`plot_alpha_trajectories` — α of every head over training updates (cf. Fig. 5), one
  panel per attention type and layer, one colour per head, named in the legend;
* :func:`plot_attention` — one sentence's attention maps, one panel per layer and head,
  queries down and keys across, the support (the entries with nonzero weight) outlined
  and the cells outside it shaded (cf. Fig. 8).

Figures are drawn on :class:`matplotlib.figure.Figure` with the Agg canvas, so nothing
touches pyplot's global state or needs a display. The ``*_figure`` functions return the
figure itself; the ``plot_*`` functions save it as PNG and return the path.
"""
from __future__ import annotations

from pathlib import Path
from typing import Dict, List, Sequence, Tuple, Union

import matplotlib
import numpy as np
from matplotlib.backends.backend_agg import FigureCanvasAgg
from matplotlib.collections import LineCollection
from matplotlib.colors import ListedColormap
from matplotlib.figure import Figure
from matplotlib.lines import Line2D
from matplotlib.patches import Patch

from ..registry import ATTENTION_KEYS, attention_type
from .collect import AttentionInfo, SentenceAttention
from .training_log import AlphaTrajectory

__all__ = ["plot_alphas", "plot_alpha_trajectories", "alpha_trajectories_figure", "plot_attention",
           "attention_figure", "support_outline", "head_colours", "AXIS_TITLES", "OUTSIDE_SUPPORT"]

PathLike = Union[str, Path]
# (rows, columns) of each attention type's maps: what a query and a key are
AXIS_TITLES = {"enc": ("query: source token", "key: source token"),
               "dec_self": ("query: decoder input token", "key: decoder input token"),
               "dec_cross": ("query: target token produced", "key: source token")}
OUTSIDE_SUPPORT = "#cfe0f3"  # shading of the cells with zero weight
SUPPORT_BORDER = "tab:red"
_LINE_STYLES = ("-", "--", ":", "-.")


def _save(fig: Figure, path: PathLike) -> Path:
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    FigureCanvasAgg(fig)
    fig.savefig(path, dpi=110)
    return path


def _by_type(infos: Sequence[AttentionInfo]) -> Dict[str, List[AttentionInfo]]:
    grouped: Dict[str, List[AttentionInfo]] = {}
    for info in infos:
        grouped.setdefault(info.kind, []).append(info)
    return {kind: grouped[kind] for kind in ATTENTION_KEYS if kind in grouped}


def head_colours(heads: int) -> List[Tuple[float, float, float, float]]:
    """One distinct colour per head (tab10 up to 10 heads, tab20 up to 20, then a ramp)."""
    if heads <= 10:
        return [matplotlib.colormaps["tab10"](h) for h in range(heads)]
    if heads <= 20:
        return [matplotlib.colormaps["tab20"](h) for h in range(heads)]
    return [matplotlib.colormaps["turbo"](h / (heads - 1)) for h in range(heads)]


def plot_alphas(infos: Sequence[AttentionInfo], path: PathLike) -> Path:
    """α per head: one panel per attention type, layers along x, one marker per head."""
    grouped = _by_type(infos)
    if not grouped:
        raise ValueError("no attention modules to plot")
    fig = Figure(figsize=(4.2 * len(grouped), 3.6), constrained_layout=True)
    axes = fig.subplots(1, len(grouped), squeeze=False)[0]
    for ax, (kind, layers) in zip(axes, grouped.items()):
        heads = max(len(info.alphas) for info in layers)
        width = 0.6 / max(heads - 1, 1)
        for h in range(heads):
            xs = [info.layer - 0.3 + h * width for info in layers if h < len(info.alphas)]
            ys = [info.alphas[h] for info in layers if h < len(info.alphas)]
            ax.scatter(xs, ys, s=36, color=f"C{h % 10}", label=f"head {h}", zorder=3)
        ax.set_xticks([info.layer for info in layers])
        ax.set_xlabel("layer")
        ax.set_ylim(0.95, 2.05)
        ax.axhline(1.0, color="0.7", lw=0.8, ls=":")
        ax.axhline(2.0, color="0.7", lw=0.8, ls=":")
        ax.grid(axis="y", alpha=0.3)
        normalizers = sorted({info.normalizer for info in layers})
        ax.set_title(f"{attention_type(kind).label}\n({', '.join(normalizers)})", fontsize=9)
    axes[0].set_ylabel("α  (1 = softmax, 2 = sparsemax)")
    axes[-1].legend(fontsize=7, loc="center left", bbox_to_anchor=(1.0, 0.5))
    return _save(fig, path)


def alpha_trajectories_figure(trajectory: AlphaTrajectory) -> Figure:
    """α of every head against training updates: a row of panels per attention type, a
    panel per layer, a line per head in that head's colour, with a legend naming the heads
    (a line style per head as well beyond 10 heads)."""
    grouped: Dict[str, Dict[int, Dict[int, List[float]]]] = {}
    for (kind, layer, head), values in trajectory.alphas.items():
        grouped.setdefault(kind, {}).setdefault(layer, {})[head] = values
    if not grouped:
        raise ValueError("the trajectory holds no α")
    kinds = [kind for kind in ATTENTION_KEYS if kind in grouped]
    columns = max(len(layers) for layers in grouped.values())
    fig = Figure(figsize=(3.3 * columns + 1.4, 2.7 * len(kinds)), constrained_layout=True)
    axes = fig.subplots(len(kinds), columns, squeeze=False, sharex=True, sharey=True)
    steps = np.asarray(trajectory.updates, dtype=float)
    marker = "o" if len(steps) < 20 else None
    xlabel = "update" if trajectory.source == "interval" else "update (end of epoch)"
    for row, kind in zip(axes, kinds):
        layers = sorted(grouped[kind])
        heads = 1 + max(h for layer in layers for h in grouped[kind][layer])
        colours = head_colours(heads)
        for ax in row[len(layers):]:
            ax.set_visible(False)
        for ax, layer in zip(row, layers):
            for head, values in sorted(grouped[kind][layer].items()):
                ax.plot(steps, values, color=colours[head], lw=1.1, marker=marker, ms=3,
                        ls=_LINE_STYLES[(head // 10) % len(_LINE_STYLES)], label=f"head {head}")
            ax.set_title(f"{attention_type(kind).label}, layer {layer}", fontsize=8)
            ax.set_ylim(0.95, 2.05)
            ax.grid(alpha=0.3)
            ax.set_xlabel(xlabel, fontsize=8)
        row[0].set_ylabel("α  (1 softmax, 2 sparsemax)", fontsize=8)
        last = row[len(layers) - 1]
        last.legend(fontsize=7, loc="center left", bbox_to_anchor=(1.02, 0.5), title=f"{kind} heads",
                    title_fontsize=7, ncol=1 + heads // 17)
    return fig


def plot_alpha_trajectories(trajectory: AlphaTrajectory, path: PathLike) -> Path:
    """Save :func:`alpha_trajectories_figure` as PNG at ``path``."""
    return _save(alpha_trajectories_figure(trajectory), path)


def support_outline(support: np.ndarray) -> np.ndarray:
    """Segments ((x0, y0), (x1, y1)) tracing the border of the True cells of a 2-D mask in
    image coordinates (cell (i, j) spans x ∈ [j−½, j+½], y ∈ [i−½, i+½]): every cell edge
    with the support on one side only. Shape (segments, 2, 2)."""
    mask = np.pad(np.asarray(support, dtype=bool), 1)
    rows, cols = np.nonzero(mask[1:, 1:-1] != mask[:-1, 1:-1])  # horizontal edges
    horizontal = [((c - 0.5, r - 0.5), (c + 0.5, r - 0.5)) for r, c in zip(rows, cols)]
    rows, cols = np.nonzero(mask[1:-1, 1:] != mask[1:-1, :-1])  # vertical edges
    vertical = [((c - 0.5, r - 0.5), (c - 0.5, r + 0.5)) for r, c in zip(rows, cols)]
    return np.asarray(horizontal + vertical, dtype=float).reshape(-1, 2, 2)


def attention_figure(sentence: SentenceAttention, kind: str,
                     alphas: Dict[Tuple[str, int], List[float]]) -> Figure:
    """Attention maps of one attention type for one sentence: a row of panels per layer, a
    column per head; queries down (rows), keys across (columns). In the support (weight > 0)
    darker is more weight; the cells outside it (weight 0) are shaded, and a red line runs
    along the border between the two."""
    layers = sorted(layer for k, layer in sentence.attention if k == kind)
    if not layers:
        raise ValueError(f"no {kind} attention was kept for sentence {sentence.index}")
    heads = sentence.attention[(kind, layers[0])].size(0)
    row_labels, col_labels = sentence.labels(kind)
    query_title, key_title = AXIS_TITLES.get(kind, ("query", "key"))
    cell = 0.22
    panel_w = max(2.2, cell * len(col_labels) + 0.9)
    panel_h = max(2.2, cell * len(row_labels) + 0.9)
    fig = Figure(figsize=(panel_w * heads, panel_h * len(layers) + 1.0), constrained_layout=True)
    axes = fig.subplots(len(layers), heads, squeeze=False)
    image = None
    shade = ListedColormap([OUTSIDE_SUPPORT])
    for r, layer in enumerate(layers):
        probs = sentence.attention[(kind, layer)].float().numpy()
        for h in range(heads):
            ax = axes[r][h]
            support = probs[h] > 0
            image = ax.imshow(probs[h], cmap="Greys", vmin=0.0, vmax=1.0, aspect="equal",
                              interpolation="nearest")
            ax.imshow(np.ma.masked_array(np.zeros(support.shape), mask=support), cmap=shade,
                      vmin=0.0, vmax=1.0, aspect="equal", interpolation="nearest")
            ax.add_collection(LineCollection(support_outline(support), colors=SUPPORT_BORDER,
                                             linewidths=0.9))
            alpha = alphas.get((kind, layer), [float("nan")] * heads)[h]
            ax.set_title(f"layer {layer} head {h}  α={alpha:.2f}", fontsize=8)
            ax.set_xticks(range(len(col_labels)))
            ax.set_yticks(range(len(row_labels)))
            bottom, left = r == len(layers) - 1, h == 0
            ax.set_xticklabels(col_labels if bottom else [], rotation=90, fontsize=6)
            ax.set_yticklabels(row_labels if left else [], fontsize=6)
            ax.tick_params(length=0)
            if bottom:
                ax.set_xlabel(key_title, fontsize=8)
            if left:
                ax.set_ylabel(query_title, fontsize=8)
    fig.suptitle(f"{attention_type(kind).label}, sentence {sentence.index}", fontsize=10)
    fig.legend(handles=[Patch(facecolor="white", edgecolor="0.6", label="support: weight > 0 (grey scale)"),
                        Patch(facecolor=OUTSIDE_SUPPORT, edgecolor="0.6", label="outside the support: weight 0 (shaded)"),
                        Line2D([], [], color=SUPPORT_BORDER, lw=1.2, label="border between the two")],
               loc="outside lower center", ncol=3, fontsize=8, frameon=False)
    fig.colorbar(image, ax=axes, shrink=0.6, label="attention weight")
    return fig


def plot_attention(sentence: SentenceAttention, kind: str, path: PathLike,
                   alphas: Dict[Tuple[str, int], List[float]]) -> Path:
    """Save :func:`attention_figure` as PNG at ``path``."""
    return _save(attention_figure(sentence, kind, alphas), path)
