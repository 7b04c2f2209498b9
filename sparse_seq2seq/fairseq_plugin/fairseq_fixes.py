"""The fairseq behaviours the plugin corrects when it is loaded (``--user-dir user_dir``);
each module says what fairseq does and what changes:

- :mod:`.batching`: every sentence gets a batch, whatever ``--required-batch-size-multiple``;
- :mod:`.checkpointing`: all-or-nothing checkpoint files, resume past a damaged last one;
- :mod:`.logging_fix`: each line written once to ``--log-file``;
- :mod:`.safe_loading`: safe unpickling, one-line errors for empty or truncated checkpoints.
"""
from __future__ import annotations

from . import batching, checkpointing, logging_fix, safe_loading


def install() -> None:
    """Apply every correction (idempotent)."""
    batching.install()
    checkpointing.install()
    logging_fix.install()
    safe_loading.install()
