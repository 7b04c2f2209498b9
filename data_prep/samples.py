"""Small real-data samples for tests and benchmarks: the first lines of each Multi30k split.

A sample is lowercased and split into words and punctuation marks by a regular expression (no
subword model), so that ``fairseq-preprocess`` can binarise it at once. The callers say where
the Multi30k files are (``$DATA_MIRROR/multi30k`` in this checkout's tests and benchmarks).
"""
from __future__ import annotations

import itertools
import os
import re
from pathlib import Path
from typing import Dict, List, Sequence

from . import DataError
from .text_lines import read_lines

TOKEN = re.compile(r"\w+|[^\w\s]")
# fairseq split name -> Multi30k file stem
MULTI30K_SPLITS = {"train": "train", "valid": "val", "test": "test_2016_flickr"}


def word_tokens(line: str) -> str:
    """Lowercase, then words and punctuation marks as separate tokens."""
    return " ".join(TOKEN.findall(line.lower()))


def head(path: str | os.PathLike, count: int, skip: int = 0) -> List[str]:
    """Lines ``skip + 1`` to ``skip + count`` of a text file (``.gz`` read transparently),
    without their line endings; a file with fewer lines is a :class:`DataError`."""
    lines = list(itertools.islice(read_lines(path), skip, skip + count))
    if len(lines) < count:
        raise DataError(f"{path}: {skip + len(lines)} lines, {skip + count} wanted")
    return lines


def write_multi30k_sample(multi30k: str | os.PathLike, dest: str | os.PathLike,
                          counts: Dict[str, int], langs: Sequence[str] = ("de", "en")) -> Path:
    """Write ``dest/{split}.{lang}``: the first ``counts[split]`` lines of each Multi30k split
    (``train``, ``valid``, ``test``: see ``MULTI30K_SPLITS``), tokenised by :func:`word_tokens`.

    Returns ``dest``. Every source file is read before anything is written, so a missing or
    short file leaves ``dest`` as it was.
    """
    multi30k, dest = Path(multi30k), Path(dest)
    unknown = sorted(set(counts) - set(MULTI30K_SPLITS))
    if unknown:
        raise ValueError(f"unknown Multi30k split(s) {unknown}; known: {sorted(MULTI30K_SPLITS)}")
    texts = {f"{split}.{lang}": "".join(word_tokens(line) + "\n" for line in
                                        head(multi30k / f"{MULTI30K_SPLITS[split]}.{lang}.gz", n))
             for split, n in counts.items() for lang in langs}
    dest.mkdir(parents=True, exist_ok=True)
    for name, text in texts.items():
        (dest / name).write_text(text, encoding="utf-8")
    return dest
