"""Moses-style punctuation normalisation, tokenisation and detokenisation (sacremoses)."""
from __future__ import annotations

import functools
import itertools
import multiprocessing
import os
from pathlib import Path
from typing import Callable, Iterable, Iterator

from sacremoses import MosesDetokenizer, MosesPunctNormalizer, MosesTokenizer

from . import DataError
from .atomic import atomic_paths
from .text_lines import read_lines, read_parallel

CHUNK_LINES = 2000


@functools.lru_cache(maxsize=None)
def _tools(lang: str) -> tuple[MosesPunctNormalizer, MosesTokenizer]:
    return MosesPunctNormalizer(lang=lang), MosesTokenizer(lang=lang)


def process_line(line: str, lang: str, normalize: bool = True, tokenize: bool = True) -> str:
    """Normalise punctuation and/or tokenise one line; no HTML escaping, spaces collapsed."""
    normalizer, tokenizer = _tools(lang)
    if normalize:
        line = normalizer.normalize(line)
    if tokenize:
        line = tokenizer.tokenize(line, escape=False, return_str=True)
    return " ".join(line.split())


def _process_chunk(job: tuple[list[tuple[str, str]], str, str, bool, bool]) -> list[tuple[str, str]]:
    pairs, src_lang, tgt_lang, normalize, tokenize = job
    return [(process_line(s, src_lang, normalize, tokenize),
             process_line(t, tgt_lang, normalize, tokenize)) for s, t in pairs]


def _chunks(pairs: Iterable[tuple[str, str]]) -> Iterator[list[tuple[str, str]]]:
    iterator = iter(pairs)
    while chunk := list(itertools.islice(iterator, CHUNK_LINES)):
        yield chunk


def process_pair(src_in: str | os.PathLike, tgt_in: str | os.PathLike,
                 src_out: str | os.PathLike, tgt_out: str | os.PathLike,
                 src_lang: str, tgt_lang: str, normalize: bool = True, tokenize: bool = True,
                 drop_empty: bool = False, workers: int = 1,
                 log: Callable[[str], None] = print) -> tuple[int, int]:
    """Normalise/tokenise a parallel corpus; return (pairs read, pairs written).

    The input is validated as it is read (UTF-8, equal line counts, not empty). With
    ``drop_empty`` a pair whose either side ends up empty is dropped (for training data;
    test sets must keep every line).
    """
    jobs = ((chunk, src_lang, tgt_lang, normalize, tokenize)
            for chunk in _chunks(read_parallel(src_in, tgt_in)))
    read = written = 0
    with atomic_paths(src_out, tgt_out) as (src_tmp, tgt_tmp), \
            open(src_tmp, "w", encoding="utf-8") as src_f, \
            open(tgt_tmp, "w", encoding="utf-8") as tgt_f:
        pool = multiprocessing.get_context("fork").Pool(workers) if workers > 1 else None
        try:
            results = pool.imap(_process_chunk, jobs) if pool else map(_process_chunk, jobs)
            for chunk in results:
                for s, t in chunk:
                    read += 1
                    if drop_empty and (not s or not t):
                        continue
                    src_f.write(s + "\n")
                    tgt_f.write(t + "\n")
                    written += 1
        finally:
            if pool:
                pool.terminate()
        if written == 0:
            raise DataError(f"{src_in}: no sentence pair left after processing")
    dropped = f" ({read - written} empty dropped)" if read != written else ""
    log(f"{Path(src_in).name}, {Path(tgt_in).name}: {written} pairs{dropped} -> {src_out}, {tgt_out}")
    return read, written


def detokenize_file(src: str | os.PathLike, out: str | os.PathLike, lang: str) -> int:
    """Moses-detokenise each line of ``src`` into ``out``; return the number of lines."""
    detok = MosesDetokenizer(lang=lang)
    n = 0
    with atomic_paths(out) as (tmp,), open(tmp, "w", encoding="utf-8") as handle:
        for line in read_lines(src):
            handle.write(detok.detokenize(line.split(), return_str=True, unescape=True) + "\n")
            n += 1
    return n
