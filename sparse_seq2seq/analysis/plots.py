"""PNG figures of what the heads learned (Correia, Niculae & Martins 2019, §5):

* :func:`plot_alphas` — learned α of every head, per attention type and layer (cf. Fig. 4);
* :func:`plot_alpha_trajectories` — α of every head over training updates (cf. Fig. 5);
* :func:`plot_attention` — one sentence's attention maps, one panel per layer and head,
  with the support (the entries with nonzero weight) outlined (cf. Fig. 8).

Figures are drawn on :class:`matplotlib.figure.Figure` with the Agg canvas, so nothing
touches pyplot's global state or needs a display.
"""
from __future__ import annotations

from pathlib import Path
from typing import Dict, List, Sequence, Tuple, Union

import numpy as np
from matplotlib.backends.backend_agg import FigureCanvasAgg
from matplotlib.collections import LineCollection
from matplotlib.figure import Figure

from .collect import ATTENTION_TYPES, TYPE_NAMES, AttentionInfo, SentenceAttention
from .training_log import AlphaTrajectory

__all__ = ["plot_alphas", "plot_alpha_trajectories", "plot_attention", "support_outline"]

PathLike = Union[str, Path]


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
    return {kind: grouped[kind] for kind in ATTENTION_TYPES if kind in grouped}


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
        ax.set_title(f"{TYPE_NAMES[kind]}\n({', '.join(normalizers)})", fontsize=9)
    axes[0].set_ylabel("α  (1 = softmax, 2 = sparsemax)")
    axes[-1].legend(fontsize=7, loc="center left", bbox_to_anchor=(1.0, 0.5))
    return _save(fig, path)


def plot_alpha_trajectories(trajectory: AlphaTrajectory, path: PathLike) -> Path:
    """α of every head against training updates, one panel per attention type, one colour
    per layer."""
    grouped: Dict[str, Dict[Tuple[int, int], List[float]]] = {}
    for (kind, layer, head), values in trajectory.alphas.items():
        grouped.setdefault(kind, {})[(layer, head)] = values
    if not grouped:
        raise ValueError("the trajectory holds no α")
    kinds = [kind for kind in ATTENTION_TYPES if kind in grouped]
    fig = Figure(figsize=(4.2 * len(kinds), 3.6), constrained_layout=True)
    axes = fig.subplots(1, len(kinds), squeeze=False)[0]
    steps = np.asarray(trajectory.updates, dtype=float)
    for ax, kind in zip(axes, kinds):
        seen = set()
        for (layer, head), values in sorted(grouped[kind].items()):
            label = None if layer in seen else f"layer {layer}"
            seen.add(layer)
            ax.plot(steps, values, color=f"C{layer % 10}", lw=1.0, alpha=0.8, label=label,
                    marker="o" if len(steps) < 20 else None, ms=3)
        ax.set_title(TYPE_NAMES[kind], fontsize=9)
        ax.set_xlabel("update" if trajectory.source == "interval" else "update (end of epoch)")
        ax.set_ylim(0.95, 2.05)
        ax.grid(alpha=0.3)
        ax.legend(fontsize=7)
    axes[0].set_ylabel("α")
    return _save(fig, path)


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


def plot_attention(sentence: SentenceAttention, kind: str, path: PathLike,
                   alphas: Dict[Tuple[str, int], List[float]]) -> Path:
    """Attention maps of one attention type for one sentence: a row of panels per layer,
    a column per head; darker is more weight, red lines outline the support."""
    layers = sorted(layer for k, layer in sentence.attention if k == kind)
    if not layers:
        raise ValueError(f"no {kind} attention was kept for sentence {sentence.index}")
    heads = sentence.attention[(kind, layers[0])].size(0)
    row_labels, col_labels = sentence.labels(kind)
    cell = 0.22
    panel_w = max(2.2, cell * len(col_labels) + 0.9)
    panel_h = max(2.2, cell * len(row_labels) + 0.9)
    fig = Figure(figsize=(panel_w * heads, panel_h * len(layers) + 0.5), constrained_layout=True)
    axes = fig.subplots(len(layers), heads, squeeze=False)
    image = None
    for r, layer in enumerate(layers):
        probs = sentence.attention[(kind, layer)].float().numpy()
        for h in range(heads):
            ax = axes[r][h]
            image = ax.imshow(probs[h], cmap="Greys", vmin=0.0, vmax=1.0, aspect="equal",
                              interpolation="nearest")
            ax.add_collection(LineCollection(support_outline(probs[h] > 0), colors="tab:red",
                                             linewidths=0.9))
            alpha = alphas.get((kind, layer), [float("nan")] * heads)[h]
            ax.set_title(f"layer {layer} head {h}  α={alpha:.2f}", fontsize=8)
            ax.set_xticks(range(len(col_labels)))
            ax.set_yticks(range(len(row_labels)))
            ax.set_xticklabels(col_labels if r == len(layers) - 1 else [], rotation=90, fontsize=6)
            ax.set_yticklabels(row_labels if h == 0 else [], fontsize=6)
            ax.tick_params(length=0)
    fig.suptitle(f"{TYPE_NAMES[kind]}, sentence {sentence.index} (support outlined)", fontsize=10)
    fig.colorbar(image, ax=axes, shrink=0.6, label="attention weight")
    return _save(fig, path)
