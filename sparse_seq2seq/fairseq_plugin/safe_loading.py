"""Checkpoints that load safely, or fail with one line naming the file.

Safe unpickling: fairseq checkpoints load with torch's safe unpickler (``weights_only=True``,
the default since torch 2.6) once the few plain classes they hold are allowed; nothing sets
``TORCH_FORCE_NO_WEIGHTS_ONLY_LOAD``, so any other global is still refused.

Clear errors: a checkpoint that is empty, truncated (a kill while it was written, a full
disk) or not a checkpoint at all is refused before unpickling with a
:class:`CheckpointError` that names the file and what is wrong, on every path through
fairseq's ``load_checkpoint_to_cpu`` (``fairseq-generate``, ``fairseq-interactive``,
``fairseq-train --restore-file``, ``from_pretrained``) and in
:func:`load_checkpoint_or_explain`; the commands print that line instead of a traceback.
"""
from __future__ import annotations

import argparse
import os
import sys
import zipfile
from typing import Any, Dict, Optional

import torch

SAFE_GLOBALS = [argparse.Namespace]


class CheckpointError(ValueError):
    """A checkpoint file that cannot be loaded; the message names the file."""


def allow_fairseq_checkpoint_globals() -> None:
    torch.serialization.add_safe_globals(SAFE_GLOBALS)


def checkpoint_damage(path: str) -> Optional[str]:
    """Why the file ``path`` is not a complete torch checkpoint, or None if it looks whole.

    ``torch.save`` writes a zip archive whose directory is at its end: an empty or truncated
    file has none, and every member's CRC is checked. Legacy (pre-zip) pickles pass here and
    are checked when unpickled.
    """
    size = os.path.getsize(path)
    if size == 0:
        return "the file is empty (0 bytes)"
    if not zipfile.is_zipfile(path):
        with open(path, "rb") as handle:
            if handle.read(1) == b"\x80":  # a legacy torch pickle
                return None
        return f"truncated or not a torch checkpoint ({size} bytes, no archive directory at its end)"
    try:
        with zipfile.ZipFile(path) as archive:
            bad = archive.testzip()
    except (zipfile.BadZipFile, OSError, EOFError, ValueError) as error:
        return f"a damaged archive ({error})"
    return None if bad is None else f"a damaged archive (member {bad} fails its CRC check)"


def explain_damage(path: str) -> None:
    """Raise :class:`CheckpointError` if the local file ``path`` is empty or damaged."""
    if os.path.isfile(path):
        damage = checkpoint_damage(path)
        if damage is not None:
            raise CheckpointError(f"{path}: not a usable checkpoint: {damage}")


def load_checkpoint_or_explain(path: str, arg_overrides: Optional[Dict[str, Any]] = None,
                               load_on_all_ranks: bool = False) -> dict:
    """fairseq's ``load_checkpoint_to_cpu`` (safe unpickling, same arguments), refusing an
    empty, truncated or damaged file with a one-line :class:`CheckpointError` naming it."""
    install()
    explain_damage(path)
    try:
        return _FAIRSEQ["load_checkpoint_to_cpu"](path, arg_overrides, load_on_all_ranks)
    except EOFError as error:  # a legacy pickle cut short
        raise CheckpointError(f"{path}: not a usable checkpoint: truncated ({error})") from error


_FAIRSEQ: Dict[str, Any] = {}  # fairseq's own functions, replaced by install()


def _print_checkpoint_errors(hook):
    def excepthook(kind, error, traceback):
        if isinstance(error, CheckpointError):
            print(f"{os.path.basename(sys.argv[0]) or 'python'}: error: {error}", file=sys.stderr)
            return
        hook(kind, error, traceback)

    excepthook.checkpoint_errors = True
    return excepthook


def install() -> None:
    """Allow fairseq's classes to the safe unpickler, check every checkpoint fairseq loads
    and print a :class:`CheckpointError` as one line (idempotent)."""
    from fairseq import checkpoint_utils

    allow_fairseq_checkpoint_globals()
    if "load_checkpoint_to_cpu" not in _FAIRSEQ:
        _FAIRSEQ["load_checkpoint_to_cpu"] = checkpoint_utils.load_checkpoint_to_cpu
        checkpoint_utils.load_checkpoint_to_cpu = load_checkpoint_or_explain
    if not getattr(sys.excepthook, "checkpoint_errors", False):
        sys.excepthook = _print_checkpoint_errors(sys.excepthook)
