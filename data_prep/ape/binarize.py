"""Binarise post-editing triplets into WordPiece ids for fairseq's ``ape`` task.

For each split ``<name>`` the folder gets ``<name>.{src,mt,pe}.{bin,idx}`` (fairseq mmap
datasets of BERT WordPiece ids, no special tokens), plus ``vocab.txt`` (BERT's vocabulary:
line i = id i = fairseq dictionary index i, so the pre-trained embeddings load as they are,
Correia & Martins, ACL 2019), ``wordpiece/`` (the tokenizer, for detokenising), ``splits.tsv``
and ``meta.json``. A triplet must fit BERT's positions: ``[CLS] src [SEP]`` and ``mt [SEP]``
each, since positions restart where mt begins, and ``pe [SEP]``.

Bad input — unequal line counts, a non-UTF-8 line, an empty line, a line too long — stops
with an error naming file and line, and nothing is written. Only in the training split, and
only when asked (``skip_invalid_train``), empty and too-long triplets are skipped, counted
and reported instead.
"""
from __future__ import annotations

import itertools
import json
import os
from pathlib import Path
from typing import Callable, Sequence

from .. import DataError
from ..atomic import atomic_dir
from ..binarize import SPLITS_FILE
from .triplets import SIDES, empty_side, read_triplets
from .wordpiece import WordPieces

BATCH = 2000
SHOWN = 5
SPECIALS_PER_SIDE = {"src": 2, "mt": 1, "pe": 1}  # [CLS] src [SEP] | mt [SEP] | pe [SEP]


def max_positions_of(bert: str) -> int:
    """``max_position_embeddings`` of a BERT checkpoint's config."""
    from transformers import AutoConfig
    try:
        return int(AutoConfig.from_pretrained(bert).max_position_embeddings)
    except (OSError, ValueError, AttributeError) as err:
        raise DataError(f"cannot read max_position_embeddings of {bert!r} ({err}); "
                        "pass --max-positions") from None


def _binarize_split(pieces: WordPieces, name: str, prefix: str, folder: Path, vocab_size: int,
                    max_positions: int, skip: bool, log: Callable[[str], None]) -> dict:
    from fairseq.data import indexed_dataset
    import torch

    builders = {side: indexed_dataset.make_builder(str(folder / f"{name}.{side}.bin"), impl="mmap",
                                                   vocab_size=vocab_size) for side in SIDES}
    kept = 0
    skipped: list[str] = []
    triplets = read_triplets(prefix)
    while batch := list(itertools.islice(triplets, BATCH)):
        problems: dict[int, str] = {}
        for k, (number, triplet) in enumerate(batch):
            side = empty_side(triplet)
            if side is not None:
                problems[k] = f"{prefix}.{side}:{number}: empty line"
        ids = {side: pieces.encode([t[j] for _, t in batch]) for j, side in enumerate(SIDES)}
        for k, (number, _) in enumerate(batch):
            for side in SIDES:
                limit = max_positions - SPECIALS_PER_SIDE[side]
                if k not in problems and len(ids[side][k]) > limit:
                    problems[k] = (f"{prefix}.{side}:{number}: {len(ids[side][k])} WordPieces, more "
                                   f"than the {limit} that fit in BERT's {max_positions} positions")
        for k in range(len(batch)):
            if k in problems:
                if not skip:
                    raise DataError(problems[k] + ("" if name != "train" else
                                    " (--skip-invalid-train true skips such training triplets)"))
                skipped.append(problems[k])
                continue
            for side in SIDES:
                builders[side].add_item(torch.tensor(ids[side][k], dtype=torch.int64))
            kept += 1
    if kept == 0:
        raise DataError(f"{prefix}: no triplet left to binarise")
    for side in SIDES:
        builders[side].finalize(str(folder / f"{name}.{side}.idx"))
    if skipped:
        shown = "; ".join(skipped[:SHOWN]) + (" ..." if len(skipped) > SHOWN else "")
        log(f"{name}: skipped {len(skipped)} triplets: {shown}")
    log(f"{name}: {kept} triplets from {prefix}.{{src,mt,pe}}")
    return {"prefix": str(prefix), "triplets": kept, "skipped": len(skipped)}


def binarize(bert: str, splits: Sequence[tuple[str, str]], destdir: str | os.PathLike,
             skip_invalid_train: bool = False, max_positions: int | None = None,
             log: Callable[[str], None] = print) -> Path:
    """Binarise ``splits`` — (name, prefix) pairs, e.g. ("train", "text/train") — into ``destdir``.

    Only the split called ``train`` may skip bad triplets (``skip_invalid_train``); the others
    must keep every line so that their outputs align with their references.
    """
    names = [name for name, _ in splits]
    if len(set(names)) != len(names):
        raise DataError(f"split names must differ: {', '.join(names)}")
    for name in names:
        if not name or "/" in name or "." in name:
            raise DataError(f"bad split name {name!r} (no dots or slashes)")
    pieces = WordPieces.load(bert)
    vocabulary = pieces.vocabulary()
    max_positions = max_positions or max_positions_of(bert)
    destdir = Path(destdir)
    report = {}
    with atomic_dir(destdir) as tmp:
        with open(tmp / "vocab.txt", "w", encoding="utf-8") as handle:
            handle.writelines(token + "\n" for token in vocabulary)
        pieces.save(tmp / "wordpiece")
        for name, prefix in splits:
            report[name] = _binarize_split(pieces, name, prefix, tmp, len(vocabulary),
                                           max_positions, skip_invalid_train and name == "train",
                                           log)
        with open(tmp / SPLITS_FILE, "w", encoding="utf-8") as handle:
            handle.writelines(f"{name}\t{name}\t{info['triplets']}\n" for name, info in report.items())
        meta = {"bert": str(bert), "vocab_size": len(vocabulary), "lowercase": pieces.lowercase,
                "max_positions": max_positions, "splits": report}
        (tmp / "meta.json").write_text(json.dumps(meta, indent=2) + "\n", encoding="utf-8")
    done = ', '.join(f"{n} ({i['triplets']})" for n, i in report.items())
    log(f"binarised {done} -> {destdir}")
    return destdir
