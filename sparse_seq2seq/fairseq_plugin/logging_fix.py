"""One file handler per ``--log-file``: each line written once.

fairseq's ``progress_bar.progress_bar`` adds a new ``logging.FileHandler`` for ``--log-file``
to its logger every time a progress bar is built, that is once per epoch in
``fairseq-train``, so the lines of epoch N appear N times in the file (and anything reading
the log, such as α over training, sees duplicates). With the plugin loaded the handler is
added the first time a progress bar names that file and reused afterwards.
"""
from __future__ import annotations

import functools
import inspect
import logging
import os

from fairseq.logging import progress_bar as _progress_bar_module

_fairseq_progress_bar = _progress_bar_module.progress_bar
_SIGNATURE = inspect.signature(_fairseq_progress_bar)


def attach_file_handler_once(logger: logging.Logger, log_file: str) -> logging.FileHandler:
    """The ``FileHandler`` of ``logger`` writing to ``log_file``; added only if there is none."""
    path = os.path.abspath(log_file)
    for handler in logger.handlers:
        if isinstance(handler, logging.FileHandler) and handler.baseFilename == path:
            return handler
    handler = logging.FileHandler(filename=log_file)
    logger.addHandler(handler)
    return handler


@functools.wraps(_fairseq_progress_bar)
def progress_bar(*args, **kwargs):
    """fairseq's ``progress_bar`` with its ``--log-file`` handler attached once."""
    bound = _SIGNATURE.bind(*args, **kwargs)
    log_file = bound.arguments.pop("log_file", None)
    if log_file is not None:
        attach_file_handler_once(_progress_bar_module.logger, log_file)
    return _fairseq_progress_bar(*bound.args, **bound.kwargs)


def install() -> None:
    """Route every caller of ``fairseq.logging.progress_bar.progress_bar`` here (idempotent)."""
    _progress_bar_module.progress_bar = progress_bar
