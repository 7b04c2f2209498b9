"""``sparse-seq2seq-heads``: what did the attention heads of a trained model learn?

    sparse-seq2seq-heads CHECKPOINT [--data BIN --subset valid --max-sentences N --sentence I
                                     --log TRAIN_LOG --tensorboard-logdir DIR --out DIR --user-dir DIR]

Prints, per attention type, layer and head, the learned α, the mean support size (tokens
with nonzero weight), the mean density and the share of fully dense queries; per layer, the
Jensen–Shannon diversity of its heads; per type, the share of fully dense heads (definitions
in :mod:`sparse_seq2seq.analysis.stats`; Correia, Niculae & Martins 2019, §5). Writes the
numbers to ``DIR/heads.json`` and PNG figures to ``DIR``: α per head, α over training (with
``--tensorboard-logdir`` or ``--log``; the tensorboard events are preferred) and the attention
maps of sentence I with their support outlined (with ``--data``). Without ``--data`` only α
is reported: it is read from the checkpoint itself. A progress bar on stderr follows the
sentences analysed (``--no-progress`` hides it).
"""
from __future__ import annotations

import argparse
import json
import logging
import math
import sys
from pathlib import Path
from typing import Dict, List, Optional, Sequence

from ..registry import ATTENTION_KEYS, attention_type
from .collect import (AttentionInfo, Key, SentenceAttention, attention_infos, checkpoint_infos,
                      collect_statistics, load_model, load_state)
from .stats import HeadStatistics


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="sparse-seq2seq-heads",
        description="Learned α, support size, density and Jensen-Shannon diversity of the attention "
                    "heads of a trained entmax_transformer checkpoint, with figures.")
    parser.add_argument("checkpoint", help="fairseq checkpoint (.pt) of an entmax_transformer model")
    parser.add_argument("--data", help="fairseq-preprocess output (binarised data and dictionaries); "
                                       "without it only α is reported")
    parser.add_argument("--subset", default="valid", help="subset of --data to analyse (default: valid)")
    parser.add_argument("--max-sentences", type=int, metavar="N",
                        help="analyse only the first N sentences of the subset (default: all)")
    parser.add_argument("--sentence", type=int, default=0, metavar="I",
                        help="sentence of the subset whose attention maps are drawn (default: 0)")
    parser.add_argument("--log", metavar="TRAIN_LOG",
                        help="fairseq training log (--log-file or captured output) for α over training")
    parser.add_argument("--tensorboard-logdir", metavar="DIR",
                        help="fairseq's --tensorboard-logdir of the training, for α over training "
                             "(preferred to --log when it holds α)")
    parser.add_argument("--out", metavar="DIR",
                        help="folder for heads.json and the figures (default: <checkpoint dir>/heads)")
    parser.add_argument("--user-dir", help="fairseq --user-dir to import (the plugin is always imported)")
    parser.add_argument("--batch-size", type=int, default=16, help="sentences per forward pass")
    parser.add_argument("--cpu", action="store_true", help="stay on the CPU even if a GPU is present")
    parser.add_argument("--no-progress", action="store_true", help="hide the progress bar")
    return parser


def _number(value: float, digits: int = 4) -> Optional[float]:
    return None if value is None or math.isnan(value) else round(float(value), digits)


def _fmt(value: Optional[float], width: int = 8, digits: int = 3) -> str:
    return f"{'-':>{width}}" if value is None else f"{value:>{width}.{digits}f}"


def build_report(infos: Sequence[AttentionInfo], stats: Optional[Dict[Key, HeadStatistics]]) -> dict:
    """All numbers: per attention module (with its heads), and a summary per type."""
    modules, summary = [], {}
    for info in infos:
        stat = stats.get((info.kind, info.layer)) if stats else None
        heads = []
        for h, alpha in enumerate(info.alphas):
            head = {"head": h, "alpha": _number(alpha, 6)}
            if stat is not None:
                head.update(mean_support=_number(float(stat.mean_support[h])),
                            density=_number(float(stat.density[h])),
                            dense_fraction=_number(float(stat.dense_fraction[h])),
                            fully_dense=bool(stat.fully_dense_heads[h]))
            heads.append(head)
        entry = {"type": info.kind, "layer": info.layer, "normalizer": info.normalizer, "heads": heads}
        if stat is not None:
            entry.update(js_divergence=_number(stat.js), queries=stat.queries, js_queries=stat.js_queries)
        modules.append(entry)
    for kind in ATTENTION_KEYS:
        mine = [m for m in modules if m["type"] == kind]
        if not mine:
            continue
        heads = [h for m in mine for h in m["heads"]]
        alphas = [h["alpha"] for h in heads if h["alpha"] is not None]
        summary[kind] = {"normalizers": sorted({m["normalizer"] for m in mine}), "heads": len(heads),
                         "mean_alpha": _number(sum(alphas) / len(alphas)) if alphas else None}
        if stats:
            dense = sum(h["fully_dense"] for h in heads)
            js = [m["js_divergence"] for m in mine if m.get("js_divergence") is not None]
            summary[kind].update(fully_dense_heads=dense / len(heads),
                                 mean_support=_number(sum(h["mean_support"] or 0 for h in heads) / len(heads)),
                                 mean_js_divergence=_number(sum(js) / len(js)) if js else None)
    return {"attention": modules, "summary": summary}


def format_tables(report: dict) -> str:
    """The per-head table and the per-layer JS table of each attention type."""
    lines: List[str] = []
    for kind, summary in report["summary"].items():
        modules = [m for m in report["attention"] if m["type"] == kind]
        with_data = "js_divergence" in modules[0]
        lines.append(f"== {attention_type(kind).label} [{kind}] ({', '.join(summary['normalizers'])}) ==")
        header = f"{'layer':>5} {'head':>4} {'alpha':>8}"
        if with_data:
            header += f" {'support':>8} {'density':>8} {'dense':>8}"
        lines.append(header)
        for module in modules:
            for head in module["heads"]:
                row = f"{module['layer']:>5} {head['head']:>4} {_fmt(head['alpha'])}"
                if with_data:
                    row += (f" {_fmt(head['mean_support'], digits=2)} {_fmt(head['density'])}"
                            f" {_fmt(head['dense_fraction'])}")
                lines.append(row)
        if with_data:
            lines.append(f"{'layer':>5} {'JS diversity':>13}")
            for module in modules:
                lines.append(f"{module['layer']:>5} {_fmt(module['js_divergence'], width=13)}")
            lines.append(f"fully dense heads: {summary['fully_dense_heads']:.3f} "
                         f"({round(summary['fully_dense_heads'] * summary['heads'])}/{summary['heads']})")
        lines.append("")
    return "\n".join(lines)


LEGEND = ("support = mean number of tokens with nonzero weight per query; density = support / tokens "
          "available; dense = share of queries giving weight to every token; a head is fully dense "
          "when all its queries are; JS diversity = base-n Jensen-Shannon divergence among the "
          "heads of a layer, averaged over queries (Correia et al. 2019, §5).")


def _figures(args, infos, sentence: Optional[SentenceAttention], out: Path, notes: List[str]) -> List[Path]:
    from . import plots  # matplotlib only when drawing
    from .training_log import read_alpha_trajectory

    figures = [plots.plot_alphas(infos, out / "alpha_per_head.png")]
    if args.log or args.tensorboard_logdir:
        try:
            trajectory = read_alpha_trajectory(args.log, args.tensorboard_logdir)
        except (OSError, ValueError) as error:
            notes.append(f"α over training not drawn: {error}")
        else:
            figures.append(plots.plot_alpha_trajectories(trajectory, out / "alpha_over_training.png"))
    if sentence is not None:
        alphas = {(info.kind, info.layer): info.alphas for info in infos}
        for kind in ATTENTION_KEYS:
            if any(k == kind for k, _ in sentence.attention):
                figures.append(plots.plot_attention(
                    sentence, kind, out / f"attention_{kind}_sentence{sentence.index}.png", alphas))
    return figures


def _analyse(args, notes: List[str]):
    """α per head, and with --data the statistics and the chosen sentence's attention."""
    stats, sentence, count = None, None, None
    if args.data:
        import torch

        model, task = load_model(args.checkpoint, args.data, args.user_dir)
        if torch.cuda.is_available() and not args.cpu:
            model = model.cuda()
        infos = attention_infos(model)
        stats, sentence, count = collect_statistics(model, task, args.subset, args.max_sentences,
                                                    args.sentence, args.batch_size,
                                                    progress=not args.no_progress)
        if sentence is None:
            notes.append(f"sentence {args.sentence} is not among the {count} sentences analysed: "
                         "no attention maps drawn")
    else:
        if args.user_dir:
            from fairseq import utils

            utils.import_user_module(argparse.Namespace(user_dir=args.user_dir))
        infos = checkpoint_infos(load_state(args.checkpoint))
        notes.append("no --data: support size, density, dense fraction, Jensen-Shannon diversity "
                     "and attention maps need data and were skipped; α is read from the checkpoint")
    return infos, stats, sentence, count


def main(argv: Optional[Sequence[str]] = None) -> int:
    args = build_parser().parse_args(argv)
    # before fairseq is imported: one of its task modules sets the root logger to DEBUG
    logging.basicConfig(format="%(asctime)s | %(levelname)s | %(name)s | %(message)s",
                        level=logging.INFO, stream=sys.stderr)
    logging.getLogger("matplotlib").setLevel(logging.WARNING)
    if not Path(args.checkpoint).is_file():
        raise SystemExit(f"sparse-seq2seq-heads: error: no checkpoint at {args.checkpoint}")
    if args.log and not Path(args.log).is_file():
        raise SystemExit(f"sparse-seq2seq-heads: error: no training log at {args.log}")
    if args.tensorboard_logdir and not Path(args.tensorboard_logdir).is_dir():
        raise SystemExit(f"sparse-seq2seq-heads: error: no tensorboard log folder at {args.tensorboard_logdir}")
    if args.max_sentences is not None and args.max_sentences < 1:
        raise SystemExit("sparse-seq2seq-heads: error: --max-sentences must be at least 1")
    if args.batch_size < 1:
        raise SystemExit("sparse-seq2seq-heads: error: --batch-size must be at least 1")
    if args.data and not Path(args.data).is_dir():
        raise SystemExit(f"sparse-seq2seq-heads: error: no data folder at {args.data}")
    out = Path(args.out) if args.out else Path(args.checkpoint).resolve().parent / "heads"
    notes: List[str] = []
    try:
        infos, stats, sentence, count = _analyse(args, notes)
    except (ValueError, FileNotFoundError) as error:
        raise SystemExit(f"sparse-seq2seq-heads: error: {error}") from None
    if not infos:
        raise SystemExit("sparse-seq2seq-heads: error: the model has no sparse_seq2seq attention module")

    report = build_report(infos, stats)
    print(f"checkpoint: {args.checkpoint}")
    if args.data:
        print(f"data: {args.data}  subset: {args.subset}  sentences: {count} (teacher forcing)")
    print()
    print(format_tables(report))
    if stats:
        print(LEGEND)
    figures = _figures(args, infos, sentence, out, notes)
    report.update(checkpoint=str(args.checkpoint), data=args.data, subset=args.subset if args.data else None,
                  sentences=count, sentence=sentence.index if sentence is not None else None,
                  figures=[str(f) for f in figures], notes=notes)
    out.mkdir(parents=True, exist_ok=True)
    numbers = out / "heads.json"
    numbers.write_text(json.dumps(report, indent=2) + "\n", encoding="utf-8")
    for note in notes:
        print(f"note: {note}")
    print("figures:")
    for figure in figures:
        print(f"  {figure}")
    print(f"numbers: {numbers}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
