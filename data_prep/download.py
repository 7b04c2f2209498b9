"""Fetch archives from a read-only mirror folder or their upstream URL, checking sha256."""
from __future__ import annotations

import hashlib
import os
import urllib.request
from pathlib import Path
from typing import BinaryIO, Callable

from . import DataError
from .atomic import atomic_paths
from .corpora import Archive

CHUNK = 1 << 20


def sha256_file(path: str | os.PathLike) -> str:
    """Hex sha256 of a file."""
    digest = hashlib.sha256()
    with open(path, "rb") as handle:
        for block in iter(lambda: handle.read(CHUNK), b""):
            digest.update(block)
    return digest.hexdigest()


def read_checksums(path: str | os.PathLike) -> dict[str, str]:
    """Parse a ``sha256sum``-style file (``<hex>  <name>``) into {base name: hex}."""
    sums: dict[str, str] = {}
    for number, line in enumerate(Path(path).read_text(encoding="utf-8").splitlines(), 1):
        if not line.strip() or line.startswith("#"):
            continue
        parts = line.split()
        if len(parts) != 2 or len(parts[0]) != 64:
            raise DataError(f"{path}:{number}: expected '<sha256>  <file name>'")
        sums[Path(parts[1].lstrip("*")).name] = parts[0].lower()
    return sums


def _copy_hashing(source: BinaryIO, target: Path, size: int | None, label: str,
                  log: Callable[[str], None]) -> str:
    digest = hashlib.sha256()
    done, next_report = 0, 64 * CHUNK
    with open(target, "wb") as out:
        for block in iter(lambda: source.read(CHUNK), b""):
            digest.update(block)
            out.write(block)
            done += len(block)
            if done >= next_report:
                total = f" of {size >> 20} MiB" if size else ""
                log(f"  {label}: {done >> 20} MiB{total}")
                next_report += 64 * CHUNK
    return digest.hexdigest()


def _inside(path: Path, folder: Path) -> bool:
    try:
        path.resolve().relative_to(folder.resolve())
        return True
    except ValueError:
        return False


def fetch(archive: Archive, dest_dir: str | os.PathLike, mirror: str | os.PathLike | None = None,
          expected: str | None = None, allow_unverified: bool = False,
          log: Callable[[str], None] = print) -> Path:
    """Put ``archive`` in ``dest_dir`` and return its path.

    Reads ``mirror/<mirror_path>`` when that file exists (the mirror is only read), else the
    upstream URL. The file's sha256 must equal ``expected`` (default: the recorded one); when no
    checksum is known the call fails before any download unless ``allow_unverified`` is set.
    A file already in place with the right checksum is kept.
    """
    dest_dir = Path(dest_dir)
    expected = (expected or archive.sha256 or "").lower() or None
    if expected is None and not allow_unverified:
        raise DataError(
            f"{archive.name}: no sha256 checksum recorded for {archive.url}. Download it yourself, "
            "check it, and pass its checksum in a file ('<sha256>  <name>' lines, --checksums), "
            "or rerun with --allow-unverified true to accept whatever the URL serves."
        )
    mirror_file = Path(mirror) / archive.mirror_path if mirror and archive.mirror_path else None
    if mirror and _inside(dest_dir, Path(mirror)):
        raise DataError(f"{dest_dir}: inside DATA_MIRROR {mirror}, which is read-only; "
                        "choose another work folder")
    target = dest_dir / archive.name
    if target.is_file() and expected and sha256_file(target) == expected:
        log(f"{archive.name}: present, sha256 ok")
        return target
    with atomic_paths(target) as (temp,):
        if mirror_file is not None and mirror_file.is_file():
            label = str(mirror_file)
            log(f"{archive.name}: copying from mirror {mirror_file}")
            with open(mirror_file, "rb") as source:
                got = _copy_hashing(source, temp, mirror_file.stat().st_size, archive.name, log)
        else:
            if mirror:
                log(f"{archive.name}: not in mirror {mirror}; downloading")
            label = archive.url
            log(f"{archive.name}: downloading {archive.url}")
            try:
                with urllib.request.urlopen(archive.url, timeout=60) as response:
                    size = int(response.headers.get("Content-Length") or 0) or None
                    got = _copy_hashing(response, temp, size, archive.name, log)
            except OSError as err:
                raise DataError(f"{archive.url}: download failed: {err}") from None
        if expected and got != expected:
            raise DataError(f"{label}: sha256 mismatch for {archive.name}: "
                            f"expected {expected}, got {got}")
    if expected:
        log(f"{archive.name}: sha256 ok")
    else:
        log(f"{archive.name}: NOT VERIFIED; its sha256 is {got}. To pin it, keep this line "
            f"in a checksum file:\n{got}  {archive.name}")
    return target


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
            "or rerun with --allow-unverified true to accept whatever the URLs serve."
        )
    return [fetch(a, dest_dir, mirror, checksums.get(a.name), allow_unverified, log)
            for a in archives]
