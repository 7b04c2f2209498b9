"""All-or-nothing checkpoints for ``fairseq-train`` with the plugin loaded.

fairseq writes the first checkpoint file of a save to ``NAME.tmp`` and renames it (without
flushing it to disk), then makes ``checkpoint_last.pt`` / ``checkpoint_best.pt`` with a
plain copy: a kill during the copy leaves a truncated ``checkpoint_last.pt`` where the
previous good one was, and the next run cannot resume. Here every checkpoint file is written
aside (``NAME.partial-*``), flushed (``fsync``) and renamed over the old one, and the folder
entry is flushed too, so a file called ``checkpoint*.pt`` always holds either the old or the
new complete checkpoint.

A resume that finds ``checkpoint_last.pt`` damaged all the same (written by a run without
the plugin, a failing disk) falls back to the newest intact ``checkpoint*.pt`` of the save
folder and says so in the log; with none intact it stops with an error naming the file.
"""
from __future__ import annotations

import glob
import logging
import os
import shutil
import tempfile
import time
from typing import BinaryIO, Callable, List, Optional

import torch
from fairseq import checkpoint_utils
from fairseq.file_io import PathManager

from .safe_loading import CheckpointError, checkpoint_damage

logger = logging.getLogger(__name__)

PARTIAL = ".partial-"
# Fault injection for tests only: seconds to pause half-way through writing each checkpoint
# file, so that a test can kill the process inside the save window.
WRITE_DELAY_ENV = "SPARSE_SEQ2SEQ_TEST_CHECKPOINT_WRITE_DELAY"
_CHUNK = 1 << 20
_UMASK = os.umask(0o022)
os.umask(_UMASK)

_fairseq_torch_persistent_save = checkpoint_utils.torch_persistent_save
_fairseq_load_checkpoint = checkpoint_utils.load_checkpoint


def _pause_for_tests() -> None:
    delay = float(os.environ.get(WRITE_DELAY_ENV) or 0)
    if delay > 0:
        time.sleep(delay)


def _fsync_folder(folder: str) -> None:
    try:
        fd = os.open(folder, os.O_RDONLY)
    except OSError:  # a folder cannot be opened on some systems; the rename is still atomic
        return
    try:
        os.fsync(fd)
    except OSError:
        pass
    finally:
        os.close(fd)


def atomic_write(path: str, write: Callable[[BinaryIO], None]) -> None:
    """Write ``path`` all-or-nothing: ``write`` fills a file beside it, which is flushed to
    disk and renamed over ``path``. If anything fails, ``path`` is left as it was."""
    folder = os.path.dirname(os.path.abspath(path))
    fd, partial = tempfile.mkstemp(dir=folder, prefix=os.path.basename(path) + PARTIAL)
    try:
        os.chmod(partial, 0o666 & ~_UMASK)  # as open() would make it (mkstemp makes 0600)
        with os.fdopen(fd, "wb") as handle:
            write(handle)
            handle.flush()
            os.fsync(handle.fileno())
        os.replace(partial, path)
    except BaseException:
        if os.path.exists(partial):
            os.remove(partial)
        raise
    _fsync_folder(folder)


def atomic_copy(src: str, dst: str) -> None:
    """Copy ``src`` to ``dst`` all-or-nothing (see :func:`atomic_write`)."""

    def write(out: BinaryIO) -> None:
        with open(src, "rb") as source:
            half = os.path.getsize(src) // 2
            while half > 0:
                chunk = source.read(min(_CHUNK, half))
                if not chunk:
                    break
                out.write(chunk)
                half -= len(chunk)
            out.flush()
            _pause_for_tests()
            shutil.copyfileobj(source, out, length=_CHUNK)

    atomic_write(dst, write)


def torch_persistent_save(obj, filename: str, async_write: bool = False) -> None:
    """fairseq's ``torch_persistent_save`` with an all-or-nothing, flushed write."""
    if async_write or PathManager.path_requires_pathmanager(filename):
        return _fairseq_torch_persistent_save(obj, filename, async_write=async_write)

    def write(out: BinaryIO) -> None:
        torch.save(obj, out)
        _pause_for_tests()

    atomic_write(filename, write)


class AtomicCopyPathManager(PathManager):
    """fairseq's ``PathManager`` whose ``copy`` of a local file is all-or-nothing."""

    @staticmethod
    def copy(src_path: str, dst_path: str, overwrite: bool = False) -> bool:
        if PathManager.path_requires_pathmanager(src_path) or PathManager.path_requires_pathmanager(dst_path):
            return PathManager.copy(src_path, dst_path, overwrite=overwrite)
        if not overwrite and os.path.exists(dst_path):
            return False
        atomic_copy(src_path, dst_path)
        return True


def newest_intact_checkpoint(folder: str, suffix: str = "", exclude: Optional[str] = None) -> Optional[str]:
    """The most recently written ``checkpoint*{suffix}.pt`` of ``folder`` that is intact."""
    candidates: List[str] = [p for p in glob.glob(os.path.join(folder, f"checkpoint*{suffix}.pt"))
                             if exclude is None or os.path.abspath(p) != os.path.abspath(exclude)]
    for path in sorted(candidates, key=os.path.getmtime, reverse=True):
        if checkpoint_damage(path) is None:
            return path
    return None


def _remove_partial_files(folder: str) -> None:
    for partial in glob.glob(os.path.join(folder, f"checkpoint*.pt{PARTIAL}*")):
        logger.info(f"removing {partial}, left by a save that did not finish")
        os.remove(partial)


def load_checkpoint(cfg, trainer, **passthrough_args):
    """fairseq's ``load_checkpoint`` (resume of ``fairseq-train``), falling back to the
    newest intact checkpoint when ``checkpoint_last.pt`` is damaged."""
    if cfg.restore_file != "checkpoint_last.pt" or PathManager.path_requires_pathmanager(cfg.save_dir):
        return _fairseq_load_checkpoint(cfg, trainer, **passthrough_args)
    suffix = trainer.checkpoint_suffix
    last = os.path.join(cfg.save_dir, f"checkpoint_last{suffix}.pt")
    if trainer.data_parallel_rank == 0 and os.path.isdir(cfg.save_dir):
        _remove_partial_files(cfg.save_dir)
    if not os.path.isfile(last):
        return _fairseq_load_checkpoint(cfg, trainer, **passthrough_args)
    damage = checkpoint_damage(last)
    if damage is None:
        return _fairseq_load_checkpoint(cfg, trainer, **passthrough_args)
    fallback = newest_intact_checkpoint(cfg.save_dir, suffix, exclude=last)
    if fallback is None:
        raise CheckpointError(f"{last}: not a usable checkpoint: {damage}; no other intact "
                              f"checkpoint in {cfg.save_dir} to resume from (remove it to train "
                              "from scratch)")
    logger.warning(f"{last} is damaged ({damage}); resuming from {fallback}, the newest intact "
                   "checkpoint")
    restore_file = cfg.restore_file
    cfg.restore_file = os.path.abspath(fallback)
    try:
        return _fairseq_load_checkpoint(cfg, trainer, **passthrough_args)
    finally:
        cfg.restore_file = restore_file


def install() -> None:
    """Make fairseq's checkpoint saves all-or-nothing and its resume fall back (idempotent)."""
    checkpoint_utils.torch_persistent_save = torch_persistent_save
    checkpoint_utils.PathManager = AtomicCopyPathManager
    checkpoint_utils.load_checkpoint = load_checkpoint
