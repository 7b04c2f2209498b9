"""Command line of the post-editing data steps: ``python -m data_prep.ape <command>``.

Real triplets (MLQE-PE, a WMT APE folder), synthetic ones (jackknife folds, assembly of
eSCAPE-style and round-trip triplets), mixing, statistics, WordPiece binarisation for the
fairseq ``ape`` task, detokenisation of ``fairseq-generate`` output and scoring
(Correia & Martins, ACL 2019). Bad input stops with ``error: <file>:<line>: ...``.
"""
from __future__ import annotations

import argparse
import os
from typing import Sequence

from .. import DataError
from ..cli import _bool, _log, command_parser, run_command


def _named(items: Sequence[str], flag: str) -> list[tuple[str, str]]:
    out = []
    for item in items:
        name, sep, prefix = item.partition("=")
        if not sep or not name or not prefix:
            raise DataError(f"{flag} {item!r}: expected NAME=PREFIX")
        out.append((name, prefix))
    return out


def cmd_mlqe_pe(args: argparse.Namespace) -> None:
    from .real_triplets import prepare_mlqe_pe
    prepare_mlqe_pe(args.pair, args.dest, args.out, args.mirror or None, _log)


def cmd_import(args: argparse.Namespace) -> None:
    from .real_triplets import import_folder
    import_folder(args.folder, args.out, tuple(args.splits), _log)


def cmd_stats(args: argparse.Namespace) -> None:
    from .triplets import format_statistics, statistics
    for prefix in args.prefixes:
        print(format_statistics(prefix, statistics(prefix)), flush=True)


def cmd_mix(args: argparse.Namespace) -> None:
    from .triplets import mix
    mix(args.real, args.synthetic, args.oversample, args.out, _log)


def cmd_folds(args: argparse.Namespace) -> None:
    from .synthetic_triplets import make_folds
    make_folds(args.input, args.src, args.tgt, args.k, args.out, args.seed, args.limit, _log)


def cmd_assemble(args: argparse.Namespace) -> None:
    from .synthetic_triplets import assemble
    if not (len(args.src) == len(args.mt) == len(args.pe)):
        raise DataError(f"give one --src, --mt and --pe file per part; got {len(args.src)}, "
                        f"{len(args.mt)}, {len(args.pe)}")
    assemble(list(zip(args.src, args.mt, args.pe)), args.out, args.skip_empty, _log)


def cmd_binarize(args: argparse.Namespace) -> None:
    from .binarize import binarize
    splits = [("train", args.train)] if args.train else []
    splits += [("valid", args.valid)] if args.valid else []
    splits += _named(args.split, "--split")
    if not splits:
        raise DataError("nothing to binarise: give --train, --valid or --split NAME=PREFIX")
    binarize(args.bert, splits, args.destdir, args.skip_invalid_train, args.max_positions, _log)


def cmd_detokenize(args: argparse.Namespace) -> None:
    from .score import detokenize
    detokenize(args.generate_output, args.triplets, args.wordpiece, args.output, _log)


def cmd_score(args: argparse.Namespace) -> None:
    from .score import format_scores, score, write_json
    rows = score(args.hyp, args.triplets)
    print(format_scores(rows), flush=True)
    if args.json:
        write_json(rows, args.json)


def cmd_table(args: argparse.Namespace) -> None:
    from .table import format_table, load_row
    from ..atomic import atomic_paths
    rows = [(name, load_row(folder, args.split)) for name, folder in _named(args.row, "--row")]
    table = format_table(rows)
    print(table, flush=True)
    if args.output:
        with atomic_paths(args.output) as (tmp,), open(tmp, "w", encoding="utf-8") as handle:
            handle.write(table + "\n")


def build_parser() -> argparse.ArgumentParser:
    parser, add = command_parser("python -m data_prep.ape", __doc__)
    p = add("mlqe-pe", cmd_mlqe_pe, "fetch MLQE-PE post-editing tarballs (sha256-checked) and "
            "write {train,dev,test20}.{src,mt,pe}")
    p.add_argument("--pair", default="en-de", choices=("en-de", "en-zh"))
    p.add_argument("--dest", required=True, help="folder for the tarballs")
    p.add_argument("--out", required=True, help="folder for the triplet files")
    p.add_argument("--mirror", default=os.environ.get("DATA_MIRROR") or None,
                   help="read-only mirror (default: $DATA_MIRROR)")
    p = add("import", cmd_import, "validate and copy a folder of <split>.{src,mt,pe} (WMT APE)")
    p.add_argument("folder")
    p.add_argument("--out", required=True)
    p.add_argument("--splits", nargs="+", default=["train", "dev", "test"])
    p = add("stats", cmd_stats, "size, lengths and TER/BLEU of mt against pe")
    p.add_argument("prefixes", nargs="+", metavar="PREFIX")
    p = add("mix", cmd_mix, "synthetic triplets plus oversampled real ones")
    p.add_argument("--real", required=True, metavar="PREFIX")
    p.add_argument("--synthetic", required=True, nargs="+", metavar="PREFIX")
    p.add_argument("--oversample", type=int, default=35, help="copies of the real data")
    p.add_argument("--out", required=True, metavar="PREFIX")
    p = add("folds", cmd_folds, "k jackknife folds of a parallel corpus for synthetic MT")
    p.add_argument("--input", required=True, metavar="PREFIX")
    p.add_argument("--src", required=True)
    p.add_argument("--tgt", required=True)
    p.add_argument("--k", type=int, default=2)
    p.add_argument("--seed", type=int, default=1)
    p.add_argument("--limit", type=int, help="use this many pairs, drawn at random")
    p.add_argument("--out", required=True)
    p = add("assemble", cmd_assemble, "write synthetic triplets from per-fold files "
            "(eSCAPE: src, MT(src), ref; round-trip: BT(tgt), MT(BT(tgt)), tgt)")
    for name in ("--src", "--mt", "--pe"):
        p.add_argument(name, action="append", required=True, metavar="FILE")
    p.add_argument("--skip-empty", type=_bool, default=False, metavar="BOOL")
    p.add_argument("--out", required=True, metavar="PREFIX")
    p = add("binarize", cmd_binarize, "WordPiece ids for fairseq's ape task")
    p.add_argument("--bert", required=True, help="BERT folder or hub name (its tokenizer)")
    p.add_argument("--train", metavar="PREFIX")
    p.add_argument("--valid", metavar="PREFIX")
    p.add_argument("--split", action="append", default=[], metavar="NAME=PREFIX")
    p.add_argument("--destdir", required=True)
    p.add_argument("--skip-invalid-train", type=_bool, default=False, metavar="BOOL",
                   help="skip (and count) empty or too long training triplets")
    p.add_argument("--max-positions", type=int, help="default: the BERT config's")
    p = add("detokenize", cmd_detokenize, "fairseq-generate output -> post-edits in the "
            "triplets' tokenisation, one per triplet (count checked)")
    p.add_argument("--generate-output", required=True)
    p.add_argument("--triplets", required=True, metavar="PREFIX", help="the test triplets")
    p.add_argument("--wordpiece", required=True, help="<binarised folder>/wordpiece")
    p.add_argument("--output", required=True)
    p = add("score", cmd_score, "TER and BLEU (sacrebleu, signatures) against pe")
    p.add_argument("--triplets", required=True, metavar="PREFIX")
    p.add_argument("--hyp", help="post-edits, one per line (omit: do-nothing baseline only)")
    p.add_argument("--json", help="also write the scores here")
    p = add("table", cmd_table, "markdown table of trained rows (run folders with "
            "decode/<split>.json and recipe.log) next to the do-nothing baseline")
    p.add_argument("--row", action="append", required=True, metavar="NAME=RUN_DIR")
    p.add_argument("--split", default="test20")
    p.add_argument("--output", help="also write the table here")
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    """Run one command; a data error prints ``error: ...`` and returns 1."""
    return run_command(build_parser(), argv)
