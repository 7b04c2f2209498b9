"""Native (C++) CPU kernels for sparsemax, 1.5-entmax and α-entmax, one row at a time.

The tensor-op code in :mod:`thresholds` and the compiled kernels in :mod:`fused` pay
per-step overheads (Python/op dispatch, or one loop nest and one horizontal reduction per
Newton step). ``csrc/rowwise.cpp`` runs the same root finders row by row: all Newton steps
while the row is in L1 cache, with a per-row stopping test, rows spread over threads with
``at::parallel_for``; forward and backward passes, float32 and float64.

The extension is built with ``torch.utils.cpp_extension.load`` (JIT, cached in the torch
extensions directory) on first use, not on import. If the build fails (no compiler, no
ninja) a warning is given once and every function here returns None, so the callers fall
back to the fused/eager code. ``SPARSE_SEQ2SEQ_NATIVE=0`` (or :func:`configure`) turns the
native kernels off.
"""
from __future__ import annotations

import hashlib
import os
import shutil
import sys
import threading
import warnings
from typing import Optional, Tuple

import torch

from .layout import Alpha, alpha_rows, from_rows, to_rows

_STATE = {"enabled": os.environ.get("SPARSE_SEQ2SEQ_NATIVE", "1") != "0", "module": None,
          "failed": False}
_LOCK = threading.Lock()
_DTYPES = (torch.float32, torch.float64)
_CSRC = os.path.join(os.path.dirname(__file__), "csrc")
CFLAGS = ["-O3", "-march=native", "-fopenmp", "-ffast-math", "-fno-finite-math-only", "-fno-math-errno"]


def configure(enabled: Optional[bool] = None) -> None:
    """Turn the native kernels on/off (a failed build stays failed)."""
    if enabled is not None:
        _STATE["enabled"] = bool(enabled)


def _source_digest() -> str:
    """Hash of every file in csrc/ and the flags: the build cache only watches rowwise.cpp,
    so a changed header or flag gets its own extension name (and a fresh build)."""
    digest = hashlib.sha256(" ".join(CFLAGS).encode())
    for name in sorted(os.listdir(_CSRC)):
        with open(os.path.join(_CSRC, name), "rb") as fh:
            digest.update(name.encode() + fh.read())
    return digest.hexdigest()[:12]


def _find_ninja() -> None:
    """torch's builder runs ``ninja`` from PATH; a ninja pip-installed into this interpreter's
    environment (``make setup`` does) is found even when that environment is not activated."""
    here = os.path.dirname(sys.executable)
    if shutil.which("ninja") is None and shutil.which("ninja", path=here):
        os.environ["PATH"] = here + os.pathsep + os.environ.get("PATH", "")


def _load():
    """Build (or load the cached build of) the extension once; None after a failure."""
    if _STATE["module"] is not None or _STATE["failed"]:
        return _STATE["module"]
    with _LOCK:
        if _STATE["module"] is None and not _STATE["failed"]:
            try:
                from torch.utils.cpp_extension import load

                _find_ninja()
                _STATE["module"] = load(name=f"sparse_seq2seq_rowwise_{_source_digest()}",
                                        sources=[os.path.join(_CSRC, "rowwise.cpp")],
                                        extra_cflags=CFLAGS, extra_ldflags=["-fopenmp"],
                                        verbose=False)
            except Exception as err:  # no compiler, no ninja, unsupported platform
                _STATE["failed"] = True
                warnings.warn(f"sparse_seq2seq: native CPU kernels unavailable ({type(err).__name__}: "
                              f"{err}); using the fused/eager implementation")
    return _STATE["module"]


def available() -> bool:
    """Whether the native kernels are enabled and built (builds them on the first call)."""
    return _STATE["enabled"] and _load() is not None


def applies(X: torch.Tensor) -> bool:
    """Native kernels run CPU float32/float64 tensors (of any size) when available."""
    return (_STATE["enabled"] and X.device.type == "cpu" and X.dtype in _DTYPES
            and not _STATE["failed"] and _load() is not None)


def rows_forward(kind: str, rows: torch.Tensor, alpha: Optional[Alpha], n_iter: int = 50,
                 ensure_sum_one: bool = True) -> Optional[torch.Tensor]:
    """The mapping ``kind`` ("sparsemax", "entmax15", "entmax") of (n, d) rows; for "entmax"
    α is a float or an (n, 1) column and α − 1 must lie in (0, 1] (every row), else None."""
    if kind != "entmax":
        return getattr(_STATE["module"], f"{kind}_forward")(rows)
    am1 = _am1_rows(rows, alpha)
    if am1 is None:
        return None
    return _STATE["module"].entmax_forward(rows, am1, int(n_iter), bool(ensure_sum_one))


def rows_backward(kind: str, p: torch.Tensor, grad: torch.Tensor, alpha: Optional[Alpha],
                  want_alpha: bool = False) -> Optional[Tuple[torch.Tensor, Optional[torch.Tensor]]]:
    """(Jacobian-vector product, gᵀ∂p/∂α per row as an (n, 1) column or None) at output rows
    p; None where the kernels do not apply."""
    if grad.dtype != p.dtype or grad.device != p.device:
        return None
    if kind != "entmax":
        return getattr(_STATE["module"], f"{kind}_backward")(p, grad), None
    am1 = _am1_rows(p, alpha)
    out = None if am1 is None else _STATE["module"].entmax_backward(p, grad, am1, bool(want_alpha))
    if not out:  # α − 1 outside (0, 1] in some row
        return None
    return out[0], (out[1] if want_alpha else None)


def _am1_rows(like: torch.Tensor, alpha: Alpha) -> Optional[torch.Tensor]:
    """α − 1 as an (n, 1) column of like's dtype, or (1, 1) for a single α; None for an α
    that is not on the CPU."""
    if not isinstance(alpha, torch.Tensor) or alpha.numel() == 1:
        if isinstance(alpha, torch.Tensor) and alpha.device.type != "cpu":
            return None
        return torch.full((1, 1), float(alpha) - 1.0, dtype=like.dtype)
    if alpha.device.type != "cpu":
        return None
    return (alpha.to(like.dtype) - 1).contiguous()


# -- the same along any dim of any shape (what the tests of this module call) -------------
def forward(name: str, X: torch.Tensor, dim: int) -> Optional[torch.Tensor]:
    """sparsemax (``name="sparsemax"``) or 1.5-entmax (``"entmax15"``) of X along dim."""
    if not applies(X):
        return None
    return from_rows(rows_forward(name, to_rows(X, dim), None), X, dim)


def backward(name: str, p: torch.Tensor, grad: torch.Tensor, dim: int) -> Optional[torch.Tensor]:
    """Jacobian-vector product of sparsemax / 1.5-entmax at output p."""
    if not applies(p):
        return None
    out = rows_backward(name, to_rows(p, dim), to_rows(grad, dim), None)
    return None if out is None else from_rows(out[0], p, dim)


def entmax_forward(X: torch.Tensor, alpha: Alpha, dim: int, n_iter: int,
                   ensure_sum_one: bool) -> Optional[torch.Tensor]:
    """α-entmax of X along dim for α − 1 ∈ (0, 1] (every row); None otherwise."""
    if not applies(X):
        return None
    out = rows_forward("entmax", to_rows(X, dim), alpha_rows(alpha, X, dim), n_iter, ensure_sum_one)
    return None if out is None else from_rows(out, X, dim)


def entmax_backward(p: torch.Tensor, grad: torch.Tensor, alpha: Alpha, dim: int,
                    want_alpha: bool) -> Optional[Tuple[torch.Tensor, Optional[torch.Tensor]]]:
    """(grad_x, grad_alpha per row shaped like p with size 1 along dim, or None) for
    α − 1 ∈ (0, 1]; None where the native kernel does not apply."""
    if not applies(p):
        return None
    out = rows_backward("entmax", to_rows(p, dim), to_rows(grad, dim), alpha_rows(alpha, p, dim),
                        want_alpha)
    if out is None:
        return None
    grad_a = from_rows(out[1], p.narrow(dim, 0, 1), dim) if want_alpha else None
    return from_rows(out[0], p, dim), grad_a
