"""Fetch a corpus's archives from a read-only mirror folder or their upstream URL, checking sha256.

The fetching and checking are :mod:`sparse_seq2seq.download`'s; this module gives them the
corpus registry's :class:`~data_prep.corpora.Archive` records, the command line's checksum
files and ``--allow-unverified`` flag, and reports every failure as a :class:`DataError`.
"""
from __future__ import annotations

import os
from pathlib import Path
from typing import Callable

from sparse_seq2seq import download as _download
from sparse_seq2seq.download import sha256_file

from . import DataError
from .corpora import Archive

__all__ = ["fetch", "fetch_all", "read_checksums", "sha256_file"]

def read_checksums(path: str | os.PathLike) -> dict[str, str]:
    """Parse a ``sha256sum``-style file (``<hex>  <name>``) into {base name: hex}."""
    try:
        return _download.read_checksums(path)
    except _download.DownloadError as err:
        raise DataError(str(err)) from None


def fetch(archive: Archive, dest_dir: str | os.PathLike, mirror: str | os.PathLike | None = None,
          expected: str | None = None, allow_unverified: bool = False,
          log: Callable[[str], None] = print) -> Path:
    """Put ``archive`` in ``dest_dir`` and return its path.

    Reads ``mirror/<mirror_path>`` when that file exists (the mirror is only read), else the
    upstream URL. The file's sha256 must equal ``expected`` (default: the recorded one); when no
    checksum is known the call fails before any download unless ``allow_unverified`` is set.
    A file already in place with the right checksum is kept.
    """
    expected = (expected or archive.sha256 or "").lower() or None
    if expected is None and not allow_unverified:
        raise DataError(
            f"{archive.name}: no sha256 checksum recorded for {archive.url}. Download it yourself, "
            "check it, and pass its checksum in a file ('<sha256>  <name>' lines, --checksums), "
            "or rerun with --allow-unverified true to accept whatever the URL serves.")
    try:
        return _download.fetch(archive.name, archive.url, dest_dir, mirror=mirror,
                               mirror_path=archive.mirror_path,
                               checksum=_download.Checksum(expected) if expected else None,
                               allow_unverified=allow_unverified, log=log)
    except _download.DownloadError as err:
        raise DataError(str(err)) from None


def fetch_all(archives: list[Archive] | tuple[Archive, ...], dest_dir: str | os.PathLike,
              mirror: str | os.PathLike | None = None, checksums: dict[str, str] | None = None,
              allow_unverified: bool = False, log: Callable[[str], None] = print) -> list[Path]:
    """Fetch several archives; checks every checksum is known before downloading any."""
    checksums = checksums or {}
    missing = [a for a in archives if not (a.sha256 or checksums.get(a.name))]
    if missing and not allow_unverified:
        names = ", ".join(a.name for a in missing)
        raise DataError(
            f"no sha256 checksum recorded for: {names}. Download and check these files yourself, "
            "then list them in a checksum file ('<sha256>  <name>' lines, --checksums), "
            "or rerun with --allow-unverified true to accept whatever the URLs serve.")
    return [fetch(a, dest_dir, mirror, checksums.get(a.name), allow_unverified, log)
            for a in archives]
