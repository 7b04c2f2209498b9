"""Write files and folders so that readers see all of the output or none of it."""
from __future__ import annotations

import contextlib
import os
import shutil
import tempfile
from pathlib import Path
from typing import Iterator

_UMASK = os.umask(0)
os.umask(_UMASK)
PARTIAL = ".partial"  # the end of every temporary name


def _temp_prefix(path: Path) -> str:
    """The start of a temporary name for ``path``: ``.NAME.``, then a random part and ``.partial``.

    A target that is itself a temporary name (``.NAME.partial``, ``NAME.partial``: a recipe
    stage's output folder written aside) gives the prefix of ``NAME``, so that every temporary
    name carries ``.partial`` once.
    """
    name = path.name
    if name.endswith(PARTIAL) and len(name) > len(PARTIAL):
        name = name[:-len(PARTIAL)]
        name = name[1:] if name.startswith(".") and len(name) > 1 else name
    return f".{name}."


def _temp_beside(path: Path, directory: bool = False) -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    prefix, suffix = _temp_prefix(path), PARTIAL
    if directory:
        temp = Path(tempfile.mkdtemp(prefix=prefix, suffix=suffix, dir=path.parent))
        os.chmod(temp, 0o777 & ~_UMASK)
        return temp
    fd, name = tempfile.mkstemp(prefix=prefix, suffix=suffix, dir=path.parent)
    os.close(fd)
    os.chmod(name, 0o666 & ~_UMASK)
    return Path(name)


_groups: list[list[tuple[Path, Path]]] = []  # renames deferred by all_or_nothing blocks


@contextlib.contextmanager
def all_or_nothing() -> Iterator[None]:
    """Within the block, :func:`atomic_paths` defers its renames to the block's end.

    A command that writes several outputs (every split of a corpus) thus replaces all of its
    earlier outputs or, when anything in the block raises, none of them.
    """
    pending: list[tuple[Path, Path]] = []
    _groups.append(pending)
    try:
        yield
    except BaseException:
        for temp, _ in pending:
            temp.unlink(missing_ok=True)
        raise
    finally:
        _groups.remove(pending)
    outer = _groups[-1] if _groups else None
    for temp, final in pending:
        if outer is not None:
            outer.append((temp, final))
        else:
            os.replace(temp, final)


@contextlib.contextmanager
def atomic_paths(*targets: str | os.PathLike) -> Iterator[list[Path]]:
    """Yield one temporary path per target, in the target's folder.

    When the block ends normally each temporary file is renamed onto its target (at the end of
    the enclosing :func:`all_or_nothing` block, if any); when it raises, every temporary file
    is deleted and the targets are left as they were.
    """
    finals = [Path(t) for t in targets]
    temps = [_temp_beside(t) for t in finals]
    try:
        yield temps
    except BaseException:
        for temp in temps:
            temp.unlink(missing_ok=True)
        raise
    for temp, final in zip(temps, finals):
        if _groups:
            _groups[-1].append((temp, final))
        else:
            os.replace(temp, final)


@contextlib.contextmanager
def atomic_dir(target: str | os.PathLike) -> Iterator[Path]:
    """Yield a temporary folder that replaces ``target`` when the block succeeds."""
    final = Path(target)
    temp = _temp_beside(final, directory=True)
    try:
        yield temp
    except BaseException:
        shutil.rmtree(temp, ignore_errors=True)
        raise
    if final.exists():
        old = _temp_beside(final, directory=True)
        os.rmdir(old)
        os.replace(final, old)
        os.replace(temp, final)
        shutil.rmtree(old, ignore_errors=True)
    else:
        os.replace(temp, final)
