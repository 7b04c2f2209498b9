"""Synthetic post-editing triplets from parallel text, the two ways the field makes them.

(a) eSCAPE style (Negri et al. 2018): translate the source side of a parallel corpus with an
    MT system and take the reference as the post-edit: (src, MT(src), ref). The MT models are
    trained by the project's own MT pipeline in k folds — :func:`make_folds` — so that each
    sentence is translated by a model that never saw it (jackknifing); a model translating
    its own training data would produce unrealistically good "MT".
(b) Round-trip (Junczys-Dowmunt & Grundkiewicz 2016): back-translate target-language text,
    translate the back-translation forward again, and keep the original text as the
    post-edit: (BT(tgt), MT(BT(tgt)), tgt).

Either way the translations come back as files and :func:`assemble` writes ordinary triplet
files; Correia & Martins (ACL 2019) pre-train their APE model on such data.
"""
from __future__ import annotations

import os
import random
from pathlib import Path
from typing import Callable, Sequence

from .. import DataError
from ..atomic import atomic_dir
from ..text_lines import read_aligned, read_lines, read_parallel
from .triplets import Triplet, empty_side, format_statistics, statistics, write_triplets

SHOWN = 5


def make_folds(prefix: str | os.PathLike, src: str, tgt: str, k: int, out_dir: str | os.PathLike,
               seed: int = 1, limit: int | None = None,
               log: Callable[[str], None] = print) -> list[int]:
    """Split ``<prefix>.{src,tgt}`` into k folds for jackknifed translation.

    Writes ``out_dir/fold<i>/train.{src,tgt}`` (every pair outside fold i, to train the MT
    model of fold i) and ``out_dir/fold<i>/heldout.{src,tgt}`` (the pairs of fold i, to be
    translated by it). ``limit`` first draws that many pairs at random. Returns fold sizes.
    """
    if k < 2:
        raise DataError(f"jackknifing needs at least 2 folds, got {k}")
    pairs = []
    for number, (s, t) in enumerate(read_parallel(f"{prefix}.{src}", f"{prefix}.{tgt}"), 1):
        if not s.strip() or not t.strip():
            raise DataError(f"{prefix}.{src if not s.strip() else tgt}:{number}: empty line")
        pairs.append((s, t))
    rng = random.Random(seed)
    order = list(range(len(pairs)))
    rng.shuffle(order)
    if limit is not None:
        order = order[:limit]
    if len(order) < k:
        raise DataError(f"{prefix}: {len(order)} pairs cannot make {k} folds")
    fold_of = {index: position % k for position, index in enumerate(order)}
    sizes = []
    with atomic_dir(out_dir) as tmp:
        for fold in range(k):
            folder = tmp / f"fold{fold}"
            folder.mkdir()
            held = sorted(i for i, f in fold_of.items() if f == fold)
            train = sorted(i for i, f in fold_of.items() if f != fold)
            for name, indices in (("heldout", held), ("train", train)):
                for side, lang in enumerate((src, tgt)):
                    with open(folder / f"{name}.{lang}", "w", encoding="utf-8") as handle:
                        handle.writelines(pairs[i][side] + "\n" for i in indices)
            sizes.append(len(held))
    log(f"{len(order)} pairs of {prefix}.{{{src},{tgt}}} in {k} folds of {', '.join(map(str, sizes))} "
        f"-> {out_dir}/fold*/{{train,heldout}}.{{{src},{tgt}}}")
    return sizes


def assemble(parts: Sequence[tuple[str, str, str]], out: str | os.PathLike,
             skip_empty: bool = False, log: Callable[[str], None] = print) -> dict:
    """Write the triplets of several (src file, mt file, pe file) parts to ``out.{src,mt,pe}``.

    The three files of a part must have equal line counts (errors name file and line). An
    empty line — e.g. a translation that came back empty — is an error, or with
    ``skip_empty`` a counted, reported skip. Prints the statistics of the result.
    """
    skipped: list[str] = []

    def stream():
        for files in parts:
            lines_of = read_aligned([read_lines(path) for path in files], list(files))
            for number, lines in enumerate(lines_of, start=1):
                triplet: Triplet = (lines[0], lines[1], lines[2])  # type: ignore[assignment]
                side = empty_side(triplet)
                if side is not None:
                    where = f"{files[('src', 'mt', 'pe').index(side)]}:{number}: empty line"
                    if not skip_empty:
                        raise DataError(where + " (--skip-empty true skips such triplets)")
                    skipped.append(where)
                    continue
                yield triplet

    for files in parts:
        for path in files:
            if not Path(path).is_file():
                raise DataError(f"{path}: no such file")
    count = write_triplets(out, stream())
    if skipped:
        shown = "; ".join(skipped[:SHOWN]) + (" ..." if len(skipped) > SHOWN else "")
        log(f"{out}: skipped {len(skipped)} triplets: {shown}")
    stats = statistics(out)
    log(format_statistics(out, stats))
    stats["skipped"] = len(skipped)
    return {"triplets": count, **stats}
