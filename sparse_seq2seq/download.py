"""Fetch a data file from a read-only mirror folder or its upstream URL, checking its digest.

The one download-and-checksum implementation of the project: the translation and
post-editing corpora (:mod:`data_prep.download`) and the images of the latent-variable
experiments (:mod:`sparse_seq2seq.lvm.experiments.data`) both go through :func:`fetch`.

Where a file comes from is decided by arguments only: ``mirror/<mirror_path>`` when a mirror
folder is given and holds the file (the mirror is only ever read), else the upstream ``url``.
Callers take the mirror from the environment variable ``DATA_MIRROR`` with
:func:`mirror_from_env`. A file is accepted only when its digest equals the recorded
:class:`Checksum` — the sha256 of its bytes, or, for gzip files a mirror may have
recompressed (MNIST), a digest of the decompressed bytes — unless the caller explicitly
allows an unverified file. Downloads are written beside their target and renamed into place
once verified, so a failed or interrupted fetch leaves nothing half-written.
"""
from __future__ import annotations

import gzip
import hashlib
import logging
import os
import tempfile
import urllib.request
import zlib
from dataclasses import dataclass
from pathlib import Path
from typing import BinaryIO, Callable, Dict, Optional, Union

__all__ = ["Checksum", "DownloadError", "fetch", "file_digest", "mirror_from_env",
           "read_checksums", "sha256_file", "verify"]

PathLike = Union[str, "os.PathLike[str]"]
Log = Callable[[str], None]
CHUNK = 1 << 20
PARTIAL = ".partial"  # the end of every temporary name
_LOG = logging.getLogger(__name__)


class DownloadError(ValueError):
    """A file could not be fetched or does not match its checksum; the message names it."""


@dataclass(frozen=True)
class Checksum:
    """The expected digest of a file: ``algorithm`` (a :mod:`hashlib` name) of its bytes, or of
    its gzip-decompressed bytes when ``decompressed``."""

    hexdigest: str
    algorithm: str = "sha256"
    decompressed: bool = False

    def __post_init__(self) -> None:
        object.__setattr__(self, "hexdigest", self.hexdigest.lower())
        hashlib.new(self.algorithm)  # ValueError for an unknown algorithm

    def describe(self) -> str:
        """``sha256``, or e.g. ``md5 of the decompressed bytes``."""
        return f"{self.algorithm} of the decompressed bytes" if self.decompressed else self.algorithm


def mirror_from_env(variable: str = "DATA_MIRROR") -> Optional[Path]:
    """The mirror folder named by ``$variable`` (a relative path is taken from the current
    folder), or None when the variable is unset or empty."""
    value = os.environ.get(variable)
    return Path(value).resolve() if value else None


def file_digest(path: PathLike, algorithm: str = "sha256", decompressed: bool = False) -> str:
    """Hex digest of a file's bytes, or of its gzip-decompressed bytes when ``decompressed``.

    Raises :class:`DownloadError` naming the file when it is not valid gzip data."""
    digest = hashlib.new(algorithm)
    opener = gzip.open if decompressed else open
    try:
        with opener(path, "rb") as handle:
            for block in iter(lambda: handle.read(CHUNK), b""):
                digest.update(block)
    except (gzip.BadGzipFile, EOFError, zlib.error) as err:
        raise DownloadError(f"{path}: not a complete gzip file ({err})") from None
    return digest.hexdigest()


def sha256_file(path: PathLike) -> str:
    """Hex sha256 of a file."""
    return file_digest(path)


def _compare(got: str, checksum: Checksum, label: str, name: str) -> None:
    if got != checksum.hexdigest:
        raise DownloadError(f"{label}: {checksum.describe()} mismatch for {name}: "
                            f"expected {checksum.hexdigest}, got {got}")


def verify(path: PathLike, checksum: Checksum) -> None:
    """Raise :class:`DownloadError` naming the file when the digest of ``path`` is not
    ``checksum``."""
    _compare(file_digest(path, checksum.algorithm, checksum.decompressed), checksum,
             str(path), Path(path).name)


def read_checksums(path: PathLike) -> Dict[str, str]:
    """Parse a ``sha256sum``-style file (``<hex>  <name>`` lines, ``#`` comments) into
    {base name: hex}. A malformed line raises :class:`DownloadError` naming file and line."""
    sums: Dict[str, str] = {}
    for number, line in enumerate(Path(path).read_text(encoding="utf-8").splitlines(), 1):
        if not line.strip() or line.startswith("#"):
            continue
        parts = line.split()
        if len(parts) != 2 or len(parts[0]) != 64:
            raise DownloadError(f"{path}:{number}: expected '<sha256>  <file name>'")
        sums[Path(parts[1].lstrip("*")).name] = parts[0].lower()
    return sums


def _copy_hashing(source: BinaryIO, target: Path, size: Optional[int], name: str, log: Log) -> str:
    """Copy ``source`` into ``target`` (fsynced), logging progress every 64 MiB; sha256 of the bytes."""
    digest = hashlib.sha256()
    done, next_report = 0, 64 * CHUNK
    with open(target, "wb") as out:
        for block in iter(lambda: source.read(CHUNK), b""):
            digest.update(block)
            out.write(block)
            done += len(block)
            if done >= next_report:
                total = f" of {size >> 20} MiB" if size else ""
                log(f"  {name}: {done >> 20} MiB{total}")
                next_report += 64 * CHUNK
        out.flush()
        os.fsync(out.fileno())
    return digest.hexdigest()


def _inside(path: Path, folder: Path) -> bool:
    try:
        path.resolve().relative_to(folder.resolve())
        return True
    except ValueError:
        return False


def _temp_prefix(target: Path) -> str:
    """``.NAME.``, the start of the temporary name beside ``target`` (a random part and
    :data:`PARTIAL` follow). A target that is itself a temporary name (``NAME.partial``,
    ``.NAME.partial``) gives the prefix of NAME, so that ``.partial`` ends every temporary name
    once: the rule of :mod:`data_prep.atomic`."""
    name = target.name
    if name.endswith(PARTIAL) and name != PARTIAL:
        stem = name[:-len(PARTIAL)]
        name = stem[1:] if stem.startswith(".") and stem != "." else stem
    return f".{name}."


def _temp_beside(target: Path) -> Path:
    """An empty file in the target's folder, with the permissions a new file gets."""
    target.parent.mkdir(parents=True, exist_ok=True)
    fd, name = tempfile.mkstemp(prefix=_temp_prefix(target), suffix=PARTIAL, dir=target.parent)
    os.close(fd)
    umask = os.umask(0)
    os.umask(umask)
    os.chmod(name, 0o666 & ~umask)
    return Path(name)


def fetch(name: str, url: str, dest_dir: PathLike, *, mirror: Optional[PathLike] = None,
          mirror_path: Optional[str] = None, checksum: Optional[Checksum] = None,
          allow_unverified: bool = False, in_place: bool = False, log: Log = _LOG.info) -> Path:
    """Return the path of a verified copy of the file ``name``.

    Source: ``mirror/mirror_path`` when both are given and that file exists, else ``url``
    (any scheme :func:`urllib.request.urlopen` reads, ``file://`` included); which one was
    used, and the URL of a download, is logged. With ``in_place`` a mirror file is verified
    and its own path returned (nothing is copied); otherwise the file is copied into
    ``dest_dir/name``, where a copy already present with the right checksum is kept.

    ``checksum`` must be given unless ``allow_unverified``; an unverified file's sha256 is
    logged so it can be pinned. Errors (:class:`DownloadError`) name the file: a checksum
    mismatch (nothing is left behind), a failed download, a ``dest_dir`` inside the mirror.
    """
    if checksum is None and not allow_unverified:
        raise DownloadError(f"{name}: no checksum recorded for {url}; give one, or allow an "
                            "unverified file explicitly")
    mirror_file = Path(mirror) / mirror_path if mirror is not None and mirror_path else None
    if in_place and mirror_file is not None and mirror_file.is_file():
        if checksum is not None:
            verify(mirror_file, checksum)
        return mirror_file
    dest_dir = Path(dest_dir)
    if mirror is not None and _inside(dest_dir, Path(mirror)):
        raise DownloadError(f"{dest_dir}: inside DATA_MIRROR {mirror}, which is read-only; "
                            "choose another work folder")
    target = dest_dir / name
    what = checksum.describe() if checksum is not None else ""
    if target.is_file() and checksum is not None:
        try:
            verify(target, checksum)
            log(f"{name}: present, {what} ok")
            return target
        except DownloadError:
            pass  # replaced below
    temp = _temp_beside(target)
    try:
        if mirror_file is not None and mirror_file.is_file():
            label = str(mirror_file)
            log(f"{name}: copying from mirror {mirror_file}")
            with open(mirror_file, "rb") as source:
                sha256 = _copy_hashing(source, temp, mirror_file.stat().st_size, name, log)
        else:
            if mirror is not None:
                log(f"{name}: not in mirror {mirror}; downloading")
            label = url
            log(f"{name}: downloading {url}")
            try:
                with urllib.request.urlopen(url, timeout=60) as response:
                    size = int(response.headers.get("Content-Length") or 0) or None
                    sha256 = _copy_hashing(response, temp, size, name, log)
            except OSError as err:
                raise DownloadError(f"{url}: download failed: {err}") from None
        if checksum is not None:
            plain = checksum.algorithm == "sha256" and not checksum.decompressed
            try:
                got = sha256 if plain else file_digest(temp, checksum.algorithm, checksum.decompressed)
            except DownloadError as err:
                raise DownloadError(f"{label}: {name}: {str(err).split(': ', 1)[1]}") from None
            _compare(got, checksum, label, name)
    except BaseException:
        temp.unlink(missing_ok=True)
        raise
    os.replace(temp, target)
    if checksum is not None:
        log(f"{name}: {what} ok")
    else:
        log(f"{name}: NOT VERIFIED; its sha256 is {sha256}. To pin it, keep this line "
            f"in a checksum file:\n{sha256}  {name}")
    return target
