"""Turn downloaded archives into plain ``<split>.<lang>`` files, one sentence per line."""
from __future__ import annotations

import contextlib
import fnmatch
import gzip
import html
import os
import re
import tarfile
import zipfile
import zlib
from pathlib import Path
from typing import BinaryIO, Callable, Iterator

from . import DataError
from .atomic import atomic_paths
from .corpora import Corpus, Part
from .text_lines import decode_lines

_SEG = re.compile(r"<seg[^>]*>(.*)</seg>", re.IGNORECASE)
_META = ("<url", "<keywords", "<speaker", "<talkid", "<reviewer", "<translator", "<doc", "</doc")
_KEPT_TAGS = re.compile(r"</?(title|description)>")


def _pick(names: list[str], pattern: str, archive: Path) -> str:
    found = [n for n in names if fnmatch.fnmatchcase(n, pattern)]
    if len(found) != 1:
        what = "no member" if not found else f"{len(found)} members ({', '.join(found[:5])})"
        raise DataError(f"{archive}: {what} matching {pattern!r}")
    return found[0]


@contextlib.contextmanager
def open_member(archive: Path, member: str | None) -> Iterator[BinaryIO]:
    """Open one member of a ``.tgz``/``.tar.gz``/``.zip`` (a glob), or a lone ``.gz``/plain file."""
    if not archive.is_file():
        raise DataError(f"{archive}: no such file (run the download stage first)")
    name = archive.name
    if member is None:
        opener = gzip.open if name.endswith(".gz") else open
        with opener(archive, "rb") as handle:
            yield handle  # type: ignore[misc]
    elif name.endswith((".tgz", ".tar.gz", ".tar")):
        with tarfile.open(archive) as tar:
            names = [m.name for m in tar.getmembers() if m.isfile()]
            handle = tar.extractfile(_pick(names, member, archive))
            assert handle is not None
            yield handle  # type: ignore[misc]
    elif name.endswith(".zip"):
        with zipfile.ZipFile(archive) as zf:
            with zf.open(_pick(zf.namelist(), member, archive)) as handle:
                yield handle  # type: ignore[misc]
    else:
        raise DataError(f"{archive}: cannot read member {member!r} (not a tar or zip archive)")


def _format_lines(lines: Iterator[str], fmt: str) -> Iterator[str]:
    if fmt == "plain":
        yield from lines
    elif fmt == "seg":
        for line in lines:
            match = _SEG.search(line)
            if match:
                yield html.unescape(match.group(1)).strip()
    elif fmt == "tags":
        for line in lines:
            if not line.lstrip().startswith(_META):
                yield _KEPT_TAGS.sub("", line).strip()
    else:
        raise ValueError(f"unknown format {fmt!r}")


def part_lines(downloads: Path, part: Part) -> Iterator[str]:
    """The text lines of one part of a split; a damaged archive is named in the error."""
    archive = downloads / part.archive
    label = f"{archive}:{part.member}" if part.member else str(archive)
    try:
        with open_member(archive, part.member) as handle:
            yield from _format_lines(decode_lines(handle, label), part.fmt)
    except (OSError, EOFError, zlib.error, tarfile.TarError, zipfile.BadZipFile) as err:
        kind = "gzip file" if archive.name.endswith((".gz", ".tgz")) else "archive"
        raise DataError(f"{archive}: truncated or corrupt {kind} ({err or type(err).__name__}); "
                        "delete it and run the download stage again") from None


def extract_split(corpus: Corpus, split: str, downloads: str | os.PathLike,
                  out_dir: str | os.PathLike, log: Callable[[str], None] = print) -> int:
    """Write ``out_dir/<split>.<src>`` and ``.<tgt>``; return the number of sentence pairs."""
    downloads, out_dir = Path(downloads), Path(out_dir)
    if split not in corpus.splits:
        raise DataError(f"{corpus.name}: no split {split!r}; known: {', '.join(corpus.splits)}")
    langs = (corpus.src, corpus.tgt)
    targets = [out_dir / f"{split}.{lang}" for lang in langs]
    counts = {}
    with atomic_paths(*targets) as temps:
        for lang, temp in zip(langs, temps):
            with open(temp, "w", encoding="utf-8") as out:
                n = 0
                for part in corpus.splits[split][lang]:
                    for line in part_lines(downloads, part):
                        out.write(line + "\n")
                        n += 1
            counts[lang] = n
        sources = {lang: ", ".join(p.member or p.archive for p in corpus.splits[split][lang])
                   for lang in langs}
        if counts[corpus.src] != counts[corpus.tgt]:
            raise DataError(
                f"{corpus.name} {split}: {counts[corpus.src]} {corpus.src} lines "
                f"({sources[corpus.src]}) but {counts[corpus.tgt]} {corpus.tgt} lines "
                f"({sources[corpus.tgt]})")
        if counts[corpus.src] == 0:
            raise DataError(f"{corpus.name} {split}: empty corpus ({sources[corpus.src]})")
    log(f"{split}: {counts[corpus.src]} pairs -> {targets[0]}, {targets[1]}")
    return counts[corpus.src]
