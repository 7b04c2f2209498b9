"""Command line: ``python -m data_prep <command> ...``, one command per recipe step."""
from __future__ import annotations

import argparse
import os
import signal
import sys
from pathlib import Path
from typing import Callable, Sequence

from . import DataError
from .atomic import all_or_nothing


def _log(message: str) -> None:
    print(message, flush=True)


def _bool(text: str) -> bool:
    if text.lower() in ("true", "1", "yes"):
        return True
    if text.lower() in ("false", "0", "no"):
        return False
    raise argparse.ArgumentTypeError(f"expected true or false, got {text!r}")


def cmd_plan(args: argparse.Namespace) -> None:
    from .corpora import get_corpus
    from .download import read_checksums
    corpus = get_corpus(args.corpus)
    sums = read_checksums(args.checksums) if args.checksums else {}
    print(f"corpus {corpus.name} ({corpus.src}->{corpus.tgt}): {corpus.about}")
    for archive in corpus.archives:
        sha = archive.sha256 or sums.get(archive.name)
        where = "upstream"
        if args.mirror and archive.mirror_path:
            present = (Path(args.mirror) / archive.mirror_path).is_file()
            where = (f"mirror {archive.mirror_path}" if present
                     else f"upstream (no {archive.mirror_path} in the mirror)")
        print(f"  {archive.name}\n    url    {archive.url}\n"
              f"    sha256 {sha or 'NOT RECORDED (needs --checksums FILE or --allow-unverified)'}"
              f"\n    from   {where}")
    for split, langs in corpus.splits.items():
        parts = "; ".join(f"{lang}: " + " + ".join(p.member or p.archive for p in ps)
                          for lang, ps in langs.items())
        print(f"  split {split}: {parts}")


def cmd_download(args: argparse.Namespace) -> None:
    from .corpora import get_corpus
    from .download import fetch_all, read_checksums
    corpus = get_corpus(args.corpus)
    sums = read_checksums(args.checksums) if args.checksums else {}
    fetch_all(corpus.archives, args.dest, args.mirror or None, sums, args.allow_unverified, _log)


def cmd_extract(args: argparse.Namespace) -> None:
    from .corpora import get_corpus
    from .extract import extract_split
    corpus = get_corpus(args.corpus)
    with all_or_nothing():  # every split, or none replaced
        for split in args.splits or list(corpus.splits):
            extract_split(corpus, split, args.downloads, args.out, _log)


def _pairs(args: argparse.Namespace, filter_prefix: bool) -> list[tuple[list[str], bool]]:
    """([src in, tgt in, src out, tgt out], may drop pairs) for each corpus a command reads:
    one ``--input``/``--output`` prefix pair, or ``--splits`` of ``--in-dir``/``--out-dir``."""
    if args.input and args.output:
        prefixes = [(args.input, args.output, filter_prefix)]
    elif args.in_dir and args.out_dir and args.splits:
        prefixes = [(f"{args.in_dir}/{s}", f"{args.out_dir}/{s}", s == args.filter_split)
                    for s in args.splits]
    else:
        raise DataError("give --input and --output prefixes, or --in-dir, --out-dir and --splits")
    jobs = [([f"{prefix}.{lang}" for prefix in (i, o) for lang in (args.src, args.tgt)], drop)
            for i, o, drop in prefixes]
    for files, _ in jobs:  # every input is there before any output is written
        for path in files[:2]:
            if not Path(path).is_file():
                raise DataError(f"{path}: no such file")
    return jobs


def cmd_prepare_text(args: argparse.Namespace) -> None:
    from .moses import process_pair
    with all_or_nothing():  # every split, or none replaced
        for files, drop in _pairs(args, args.drop_empty):
            process_pair(*files, args.src, args.tgt, normalize=args.normalize,
                         tokenize=args.tokenizer == "moses", drop_empty=drop,
                         workers=args.workers, log=_log)


def cmd_spm_train(args: argparse.Namespace) -> None:
    from .spm import train
    train(args.inputs, args.model_prefix, args.vocab_size, args.model_type,
          args.character_coverage, args.input_sentence_size, args.threads, log=_log)


def cmd_spm_encode(args: argparse.Namespace) -> None:
    from .spm import encode_pair
    with all_or_nothing():  # every split, or none replaced
        for files, limited in _pairs(args, True):
            encode_pair(args.model, *files, args.max_len if limited else None, _log)


def cmd_binarize(args: argparse.Namespace) -> None:
    from .binarize import binarize
    tests = []
    for item in args.test:
        name, sep, prefix = item.partition("=")
        if not sep:
            raise DataError(f"--test {item!r}: expected NAME=PREFIX")
        tests.append((name, prefix))
    binarize(args.src, args.tgt, args.train, args.valid, tests, args.destdir, args.workers,
             args.extra, _log)


def cmd_subset(args: argparse.Namespace) -> None:
    from .binarize import read_splits
    table = read_splits(args.destdir)
    if args.name not in table:
        raise DataError(f"{args.destdir}: no binarised split {args.name!r}; has {', '.join(table)}")
    print(table[args.name][0])


def cmd_hypotheses(args: argparse.Namespace) -> None:
    from .text_lines import count_lines
    from .hypotheses import write_hypotheses
    expected = count_lines(args.reference)
    write_hypotheses(args.generate_output, args.output, expected)
    _log(f"{args.output}: {expected} hypotheses, one per line of {args.reference}")


def cmd_score(args: argparse.Namespace) -> None:
    from .mt_scores import score_translation, write_scores
    scores, text = score_translation(args.hypotheses, args.reference, args.test_set,
                                     args.ter_case_sensitive)
    print(text, flush=True)
    if args.json:
        write_scores(scores, args.json)


def cmd_detokenize(args: argparse.Namespace) -> None:
    from .moses import detokenize_file
    detokenize_file(args.input, args.output, args.lang)


def cmd_check(args: argparse.Namespace) -> None:
    from .text_lines import check_parallel
    n = check_parallel(args.src, args.tgt)
    print(f"{args.src}, {args.tgt}: {n} pairs, UTF-8, aligned")


def command_parser(prog: str, description: str | None
                   ) -> tuple[argparse.ArgumentParser, Callable[..., argparse.ArgumentParser]]:
    """A parser of sub-commands, and ``add(name, func, help)`` that declares one running ``func``."""
    parser = argparse.ArgumentParser(prog=prog, description=description)
    sub = parser.add_subparsers(dest="command", required=True)

    def add(name: str, func: Callable[[argparse.Namespace], None],
            help_: str) -> argparse.ArgumentParser:
        p = sub.add_parser(name, help=help_, description=help_)
        p.set_defaults(func=func)
        return p

    return parser, add


def build_parser() -> argparse.ArgumentParser:
    """The argument parser for every command."""
    parser, add = command_parser("python -m data_prep", __doc__)
    mirror = os.environ.get("DATA_MIRROR") or None
    p = add("plan", cmd_plan, "show a corpus's archives, checksums and splits")
    p.add_argument("corpus")
    p.add_argument("--mirror", default=mirror, help="mirror folder (default: $DATA_MIRROR)")
    p.add_argument("--checksums", help="extra '<sha256>  <name>' lines")
    p = add("download", cmd_download, "fetch a corpus's archives, sha256-checked")
    p.add_argument("corpus")
    p.add_argument("--dest", required=True)
    p.add_argument("--mirror", default=mirror, help="read-only mirror (default: $DATA_MIRROR)")
    p.add_argument("--checksums", help="file of '<sha256>  <name>' lines for unrecorded archives")
    p.add_argument("--allow-unverified", type=_bool, default=False, metavar="BOOL")
    p = add("extract", cmd_extract, "write plain <split>.<lang> files from the archives")
    p.add_argument("corpus")
    p.add_argument("--downloads", required=True)
    p.add_argument("--out", required=True)
    p.add_argument("--splits", nargs="*", help="default: every split of the corpus")
    def corpora(p: argparse.ArgumentParser, dropped: str) -> None:
        p.add_argument("--src", required=True)
        p.add_argument("--tgt", required=True)
        p.add_argument("--input", metavar="PREFIX", help="read PREFIX.<src> and PREFIX.<tgt>")
        p.add_argument("--output", metavar="PREFIX", help="write PREFIX.<src> and PREFIX.<tgt>")
        p.add_argument("--in-dir", help="instead of --input: read <in-dir>/<split>.<lang>")
        p.add_argument("--out-dir", help="instead of --output: write <out-dir>/<split>.<lang>")
        p.add_argument("--splits", nargs="+", help="the splits read from --in-dir")
        p.add_argument("--filter-split", default="train",
                       help=f"the one split of --splits whose {dropped} pairs are dropped")

    p = add("prepare-text", cmd_prepare_text, "Moses-normalise and tokenise parallel corpora")
    corpora(p, "empty")
    p.add_argument("--drop-empty", type=_bool, default=False, metavar="BOOL",
                   help="with --input: drop pairs with an empty side")
    p.add_argument("--normalize", type=_bool, default=True, metavar="BOOL")
    p.add_argument("--tokenizer", choices=("moses", "none"), default="moses")
    p.add_argument("--workers", type=int, default=1)
    p = add("spm-train", cmd_spm_train, "train a joint sentencepiece model")
    p.add_argument("--inputs", nargs=2, required=True, metavar=("SRC_FILE", "TGT_FILE"))
    p.add_argument("--model-prefix", required=True)
    p.add_argument("--vocab-size", type=int, required=True)
    p.add_argument("--model-type", default="unigram", choices=("unigram", "bpe", "char", "word"))
    p.add_argument("--character-coverage", type=float, default=1.0)
    p.add_argument("--input-sentence-size", type=int, default=2_000_000)
    p.add_argument("--threads", type=int, default=1)
    p = add("spm-encode", cmd_spm_encode, "encode parallel corpora into sentencepiece pieces")
    p.add_argument("--model", required=True)
    corpora(p, "too long")
    p.add_argument("--max-len", type=int, default=None,
                   help="drop pairs with more pieces on a side (--input, or --filter-split)")
    p = add("binarize", cmd_binarize, "run fairseq-preprocess --joined-dictionary")
    for name in ("--src", "--tgt", "--train", "--valid", "--destdir"):
        p.add_argument(name, required=True)
    p.add_argument("--test", action="append", default=[], metavar="NAME=PREFIX")
    p.add_argument("--workers", type=int, default=1)
    p.add_argument("extra", nargs="*", help="more fairseq-preprocess options, after --")
    p = add("subset", cmd_subset, "print fairseq's subset name for one of our splits")
    p.add_argument("--destdir", required=True)
    p.add_argument("--name", required=True)
    p = add("hypotheses", cmd_hypotheses, "extract hypotheses from fairseq-generate output")
    p.add_argument("--generate-output", required=True)
    p.add_argument("--reference", required=True, help="file whose line count must match")
    p.add_argument("--output", required=True)
    p = add("score", cmd_score, "BLEU, TER and chrF (sacrebleu, with signatures) of a "
            "translation; optionally scores.json")
    p.add_argument("--hypotheses", required=True, help="detokenised output, one line per reference")
    p.add_argument("--reference", required=True)
    p.add_argument("--test-set", required=True, help="name of the test set, for scores.json")
    p.add_argument("--ter-case-sensitive", type=_bool, default=False, metavar="BOOL")
    p.add_argument("--json", help="also write the scores here (scores.json schema)")
    p = add("detokenize", cmd_detokenize, "Moses-detokenise a file")
    for name in ("--lang", "--input", "--output"):
        p.add_argument(name, required=True)
    p = add("check", cmd_check, "validate a parallel corpus")
    p.add_argument("src")
    p.add_argument("tgt")
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    return run_command(build_parser(), argv)


def _stop(signum: int, frame: object) -> None:
    raise SystemExit(128 + signum)


def run_command(parser: argparse.ArgumentParser, argv: Sequence[str] | None = None) -> int:
    """Run one command of ``parser``; a data error prints ``error: ...`` and returns 1.

    SIGTERM ends the command as an exception would (exit status 143): its temporary files
    are removed and nothing half-written replaces an output.
    """
    args = parser.parse_args(argv)
    previous = signal.signal(signal.SIGTERM, _stop)
    try:
        args.func(args)
    except DataError as err:
        print(f"error: {err}", file=sys.stderr, flush=True)
        return 1
    finally:
        signal.signal(signal.SIGTERM, previous)
    return 0
