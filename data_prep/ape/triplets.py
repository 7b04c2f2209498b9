"""Post-editing triplets on disk: ``<prefix>.src``, ``<prefix>.mt``, ``<prefix>.pe``.

One sentence per line, line i of the three files one triplet (source, machine translation,
human post-edit), the format of the WMT APE tasks and of MLQE-PE, and the format every APE
command here reads and writes (Correia & Martins, ACL 2019, train on such triplets, real
and synthetic). Reading is strict: UTF-8, equal line counts; errors name file and line.
Writing is atomic: all three files appear, or none.
"""
from __future__ import annotations

import os
from pathlib import Path
from typing import Callable, Iterable, Iterator, Sequence

from .. import DataError
from ..atomic import atomic_paths
from ..text_lines import read_aligned, read_lines

SIDES = ("src", "mt", "pe")
Triplet = tuple[str, str, str]


def paths(prefix: str | os.PathLike) -> tuple[Path, Path, Path]:
    """The three files of a triplet set."""
    return tuple(Path(f"{prefix}.{side}") for side in SIDES)  # type: ignore[return-value]


def read_triplets(prefix: str | os.PathLike) -> Iterator[tuple[int, Triplet]]:
    """Yield (line number, (src, mt, pe)), checking UTF-8 and equal line counts.

    Empty lines are yielded as they are (see :func:`empty_side`); the caller decides whether
    they are an error or a counted skip.
    """
    files = paths(prefix)
    for path in files:
        if not path.is_file():
            raise DataError(f"{path}: no such file (a triplet set needs "
                            f"{', '.join(str(p) for p in files)})")
    number = 0
    for number, lines in enumerate(read_aligned([read_lines(path) for path in files],
                                                [str(path) for path in files]), start=1):
        yield number, (lines[0], lines[1], lines[2])
    if number == 0:
        raise DataError(f"{files[0]}: empty triplet set (0 lines)")


def empty_side(triplet: Triplet) -> str | None:
    """The first side ("src", "mt" or "pe") whose line is blank, else None."""
    for side, text in zip(SIDES, triplet):
        if not text.strip():
            return side
    return None


def check_triplets(prefix: str | os.PathLike) -> int:
    """Validate a triplet set (UTF-8, aligned, no empty line); return its size."""
    count = 0
    for number, triplet in read_triplets(prefix):
        side = empty_side(triplet)
        if side is not None:
            raise DataError(f"{prefix}.{side}:{number}: empty line")
        count += 1
    return count


def write_triplets(prefix: str | os.PathLike, triplets: Iterable[Triplet]) -> int:
    """Write triplets atomically; return how many. A line break inside a field is an error."""
    count = 0
    with atomic_paths(*paths(prefix)) as temps:
        handles = [open(t, "w", encoding="utf-8") for t in temps]
        try:
            for triplet in triplets:
                count += 1
                for side, text, handle in zip(SIDES, triplet, handles):
                    if "\n" in text or "\r" in text:
                        raise DataError(f"{prefix}.{side}:{count}: line break inside a sentence")
                    handle.write(text + "\n")
        finally:
            for handle in handles:
                handle.close()
        if count == 0:
            raise DataError(f"{prefix}: no triplet to write")
    return count


def copy_checked(source: str | os.PathLike, target: str | os.PathLike) -> int:
    """Validate ``source`` (as :func:`check_triplets`) and copy it to ``target``."""
    check_triplets(source)
    return write_triplets(target, (t for _, t in read_triplets(source)))


def statistics(prefix: str | os.PathLike) -> dict:
    """Size, mean lengths and how far mt is from pe (TER and BLEU, sacrebleu 2.x).

    TER(mt, pe) is the human-targeted TER of the translations: the "do nothing" baseline of
    an APE system and a measure of how much post-editing a synthetic set asks for.
    """
    from sacrebleu.metrics import BLEU, TER

    src, mt, pe = [], [], []
    for _, (s, m, p) in read_triplets(prefix):
        src.append(s)
        mt.append(m)
        pe.append(p)
    n = len(pe)
    out: dict = {"triplets": n,
                 "mean_tokens": {side: round(sum(len(x.split()) for x in lines) / n, 2)
                                 for side, lines in zip(SIDES, (src, mt, pe))},
                 "mt_equals_pe": round(100.0 * sum(a == b for a, b in zip(mt, pe)) / n, 2)}
    for key, metric in (("ter", TER()), ("ter_cased", TER(case_sensitive=True)),
                        ("bleu", BLEU(tokenize="none", force=True))):
        score = metric.corpus_score(mt, [pe])
        out[key] = round(score.score, 2)
        out[f"{key}_signature"] = str(metric.get_signature())
    return out


def format_statistics(prefix: str | os.PathLike, stats: dict) -> str:
    """One readable block for :func:`statistics`."""
    lengths = ", ".join(f"{k} {v}" for k, v in stats["mean_tokens"].items())
    return (f"{prefix}: {stats['triplets']} triplets; mean tokens {lengths}; "
            f"mt == pe for {stats['mt_equals_pe']}%\n"
            f"  TER(mt, pe) = {stats['ter']:.2f} ({stats['ter_signature']})\n"
            f"  TER(mt, pe) = {stats['ter_cased']:.2f} ({stats['ter_cased_signature']})\n"
            f"  BLEU(mt, pe) = {stats['bleu']:.2f} ({stats['bleu_signature']})")


def mix(real: str | os.PathLike, synthetic: Sequence[str | os.PathLike], oversample: int,
        out: str | os.PathLike, log: Callable[[str], None] = print) -> dict:
    """Synthetic triplets plus ``oversample`` copies of the real ones, written to ``out``.

    Correia & Martins (ACL 2019, §4) train on eSCAPE plus the real triplets repeated 35
    times, so that real data are about a tenth of the mix. Every input is validated first.
    """
    if oversample < 1:
        raise DataError(f"--oversample must be at least 1, got {oversample}")
    real_n = check_triplets(real)
    synthetic_n = sum(check_triplets(s) for s in synthetic)

    def stream() -> Iterator[Triplet]:
        for prefix in synthetic:
            yield from (t for _, t in read_triplets(prefix))
        for _ in range(oversample):
            yield from (t for _, t in read_triplets(real))

    total = write_triplets(out, stream())
    share = 100.0 * real_n * oversample / total
    log(f"{out}: {synthetic_n} synthetic + {oversample} x {real_n} real = {total} triplets "
        f"(real {share:.1f}%)")
    return {"synthetic": synthetic_n, "real": real_n, "oversample": oversample,
            "total": total, "real_share": round(share, 2)}
