"""Results tables (mean ± std over seeds) and training-curve plots from run records.

    python -m sparse_seq2seq.lvm.experiments.reporting exp/lvm_ssvae --metrics test_accuracy decoder_calls \
        --curve val_accuracy --table exp/lvm_ssvae/results.md --plot exp/lvm_ssvae/curves.png
"""
from __future__ import annotations

import argparse
import statistics
from collections import defaultdict
from pathlib import Path
from typing import Dict, List, Optional, Sequence

from .common import load_records

__all__ = ["results_table", "plot_curves", "main"]

ORDER = ("dense", "sparsemax", "topk_sparsemax", "sparsemap", "sparsemap_budget",
         "sfe", "sfe_plus", "nvil", "gumbel", "st_gumbel", "sum_and_sample")


def _fmt(values: List[float], digits: int) -> str:
    mean = statistics.fmean(values)
    if len(values) == 1:
        return f"{mean:.{digits}f}"
    return f"{mean:.{digits}f} ± {statistics.stdev(values):.{digits}f}"


def results_table(records: Sequence[dict], metrics: Sequence[str], digits: int = 2) -> str:
    """Markdown table: one row per method, mean ± sample std over seeds for each metric."""
    by_method: Dict[str, List[dict]] = defaultdict(list)
    for rec in records:
        by_method[rec["method"]].append(rec)
    methods = sorted(by_method, key=lambda m: ORDER.index(m) if m in ORDER else len(ORDER))
    lines = ["| method | seeds | " + " | ".join(metrics) + " |", "|---" * (len(metrics) + 2) + "|"]
    for method in methods:
        recs = by_method[method]
        cells = []
        for metric in metrics:
            vals = [float(r["final"][metric]) for r in recs if metric in r["final"]]
            cells.append(_fmt(vals, digits) if vals else "—")
        seeds = ",".join(str(r["seed"]) for r in recs)
        lines.append(f"| {method} | {seeds} | " + " | ".join(cells) + " |")
    return "\n".join(lines) + "\n"


def plot_curves(records: Sequence[dict], key: str, path: Path, title: Optional[str] = None,
                x_key: str = "step") -> None:
    """One line per (method, seed) of ``key`` against ``x_key``; saved as PNG."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, ax = plt.subplots(figsize=(7, 4.5))
    colours: Dict[str, str] = {}
    labelled = set()
    cycle = plt.rcParams["axes.prop_cycle"].by_key()["color"]
    for rec in records:
        points = [(p[x_key], p[key]) for p in rec["curve"] if key in p and x_key in p]
        if not points:
            continue
        method = rec["method"]
        colour = colours.setdefault(method, cycle[len(colours) % len(cycle)])
        xs, ys = zip(*points)
        label = None if method in labelled else method
        labelled.add(method)
        ax.plot(xs, ys, color=colour, label=label, alpha=0.85)
    ax.set_xlabel(x_key)
    ax.set_ylabel(key)
    ax.set_title(title or key)
    ax.legend(fontsize=8)
    ax.grid(alpha=0.3)
    fig.tight_layout()
    Path(path).parent.mkdir(parents=True, exist_ok=True)
    fig.savefig(path, dpi=110)
    plt.close(fig)


def main(argv: Optional[Sequence[str]] = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("folder", type=Path)
    parser.add_argument("--experiment", default=None)
    parser.add_argument("--metrics", nargs="+", required=True)
    parser.add_argument("--digits", type=int, default=2)
    parser.add_argument("--curve", nargs="*", default=[])
    parser.add_argument("--table", type=Path, required=True)
    parser.add_argument("--plot", type=Path, default=None, help="PNG path; one file per curve key (suffixed)")
    args = parser.parse_args(argv)
    records = load_records(args.folder, args.experiment)
    if not records:
        raise SystemExit(f"no run records in {args.folder}")
    table = results_table(records, args.metrics, args.digits)
    args.table.write_text(table)
    print(table)
    for i, key in enumerate(args.curve):
        if args.plot is None:
            break
        path = args.plot if i == 0 else args.plot.with_name(f"{args.plot.stem}_{key}{args.plot.suffix}")
        plot_curves(records, key, path)
        print(f"wrote {path}")


if __name__ == "__main__":
    main()
