"""Read plain-text corpora line by line, strictly: UTF-8, parallel, not empty."""
from __future__ import annotations

import gzip
import os
import zlib
from pathlib import Path
from typing import BinaryIO, Iterable, Iterator, Sequence

from . import DataError


def decode_lines(raw: Iterable[bytes], label: str) -> Iterator[str]:
    """Decode byte lines as UTF-8 without their line ending; ``label`` names the source in errors."""
    for number, line in enumerate(raw, start=1):
        try:
            text = line.decode("utf-8")
        except UnicodeDecodeError as err:
            bad = line[err.start:err.start + 1].hex()
            raise DataError(
                f"{label}:{number}: not valid UTF-8 (byte 0x{bad} at column {err.start + 1})"
            ) from None
        yield text.rstrip("\n").rstrip("\r")


def _open_binary(path: Path) -> BinaryIO:
    if not path.is_file():
        raise DataError(f"{path}: no such file")
    if path.suffix == ".gz":
        return gzip.open(path, "rb")  # type: ignore[return-value]
    return open(path, "rb")


def read_lines(path: str | os.PathLike) -> Iterator[str]:
    """Yield the lines of a text file (``.gz`` read transparently), checking UTF-8 per line."""
    path = Path(path)
    try:
        with _open_binary(path) as handle:
            yield from decode_lines(handle, str(path))
    except (OSError, EOFError, zlib.error) as err:
        raise DataError(f"{path}: cannot be read: truncated or corrupt gzip file "
                        f"({err or type(err).__name__})" if path.suffix == ".gz"
                        else f"{path}: cannot be read ({err})") from None


def count_lines(path: str | os.PathLike) -> int:
    """Number of lines in a text file, each checked for UTF-8."""
    return sum(1 for _ in read_lines(path))


def read_aligned(readers: Sequence[Iterable[str]], labels: Sequence[str]) -> Iterator[tuple[str, ...]]:
    """Yield the i-th lines of several line streams read side by side, as one tuple per i.

    The first stream that ends before another stops the reading with an error naming both
    and their line counts; ``labels`` name the streams (file paths) in that message.
    """
    iterators = [iter(reader) for reader in readers]
    number = 0
    while True:
        lines = [next(iterator, None) for iterator in iterators]
        if all(line is None for line in lines):
            return
        number += 1
        if any(line is None for line in lines):
            ended = " and ".join(label for label, line in zip(labels, lines) if line is None)
            longer = next(i for i, line in enumerate(lines) if line is not None)
            total = number + sum(1 for _ in iterators[longer])
            if number == 1:
                raise DataError(f"{ended}: empty corpus (0 lines) but {labels[longer]} has "
                                f"{total} lines")
            raise DataError(f"{labels[longer]}:{number}: line counts differ: {ended} has "
                            f"{number - 1} lines, {labels[longer]} has {total}")
        yield tuple(lines)  # type: ignore[misc]


def read_parallel(src: str | os.PathLike, tgt: str | os.PathLike) -> Iterator[tuple[str, str]]:
    """Yield aligned (source, target) lines; raise on the first sign of a bad corpus.

    Errors name the file and line: a missing file, an empty corpus, a non-UTF-8 line, or one
    side ending before the other.
    """
    src, tgt = Path(src), Path(tgt)
    for path in (src, tgt):
        if not path.is_file():
            raise DataError(f"{path}: no such file")
    number = 0
    for number, pair in enumerate(read_aligned([read_lines(src), read_lines(tgt)],
                                               [str(src), str(tgt)]), start=1):
        yield pair  # type: ignore[misc]
    if number == 0:
        raise DataError(f"{src}: empty corpus (0 lines; {tgt} is empty too)")


def check_parallel(src: str | os.PathLike, tgt: str | os.PathLike) -> int:
    """Validate a parallel corpus (see :func:`read_parallel`) and return its number of lines."""
    return sum(1 for _ in read_parallel(src, tgt))
