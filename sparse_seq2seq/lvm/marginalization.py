"""Exact expectations: dense (softmax) and sparse (sparsemax, top-k sparsemax, SparseMAP).

All compute E_π[ℓ] = Σ_z π(z|x) ℓ(x, z) (Correia et al., NeurIPS 2020, eq. 1) exactly for
their π and back-propagate through both π and ℓ; no sampling, no relaxation. The sparse
mappings make π(z|x) = 0 for most z, so ℓ is evaluated only on the support (eq. 4):
sparsemax (§3.1), top-k sparsemax (§3.2, sparsemax over the k best values or structures),
and SparseMAP over bit vectors (§4, eq. 6).
"""
from __future__ import annotations

from typing import Optional

import torch
import torch.nn.functional as F
from torch import Tensor

from ..mappings import sparsemax, topk_sparsemax
from ..sparsemap import sparsemap_bitvector
from .base import Estimate, Estimator, LossFn, expect_over_support, sparse_entropy
from .spaces import Categorical, kbest_bitvectors, make_space

__all__ = ["Dense", "Sparsemax", "TopKSparsemax", "SparseMAP"]


def _finish(probs: Tensor, values: Tensor, loss_fn: LossFn) -> Estimate:
    expected, calls = expect_over_support(probs, values, loss_fn)
    return Estimate(expected, expected.detach(), sparse_entropy(probs), calls, probs)


class Dense(Estimator):
    """Full softmax expectation: every latent value is decoded (|Z| calls per example)."""

    name = "dense"

    def __init__(self, latent: str = "categorical"):
        self.latent = latent

    def __call__(self, scores: Tensor, loss_fn: LossFn, **context: Tensor) -> Estimate:
        space = make_space(self.latent, scores)
        values = space.enumerate()
        if isinstance(space, Categorical):
            log_probs = space.log_probs
        else:  # log π(z) = ηᵀz − Σ softplus(η), over all 2^D structures
            log_probs = scores @ values.T - F.softplus(scores).sum(-1, keepdim=True)
        probs = log_probs.exp()
        rows = torch.arange(scores.shape[0], device=scores.device).repeat_interleave(values.shape[0])
        losses = loss_fn(rows, values.repeat(scores.shape[0], 1)).view_as(probs)
        expected = (probs * losses).sum(-1)
        return Estimate(expected, expected.detach(), space.entropy(), int(rows.numel()), probs)


class Sparsemax(Estimator):
    """π = sparsemax(s) over |Z| categories (paper §3.1): decode the support only."""

    name = "sparsemax"
    sparse = True

    def __init__(self, latent: str = "categorical"):
        if latent != "categorical":
            raise ValueError("sparsemax is over categories; for bit vectors use sparsemap or topk_sparsemax")
        self.latent = latent

    def __call__(self, scores: Tensor, loss_fn: LossFn, **context: Tensor) -> Estimate:
        probs = sparsemax(scores, dim=-1)
        return _finish(probs, torch.eye(scores.shape[-1], dtype=scores.dtype, device=scores.device), loss_fn)


class TopKSparsemax(Estimator):
    """Sparsemax over the k highest scores (paper §3.2): at most k decoder calls per example.

    Categorical: ``topk_sparsemax(s, k)``. Bit vectors: the k best structures under ηᵀz
    (exact k-best search), then sparsemax over their scores θ_z = ηᵀz.
    """

    name = "topk_sparsemax"
    sparse = True

    def __init__(self, latent: str = "categorical", k: int = 10):
        self.latent, self.k = latent, k

    def __call__(self, scores: Tensor, loss_fn: LossFn, **context: Tensor) -> Estimate:
        if self.latent == "categorical":
            probs = topk_sparsemax(scores, self.k, dim=-1)
            return _finish(probs, torch.eye(scores.shape[-1], dtype=scores.dtype, device=scores.device), loss_fn)
        if self.latent != "bitvector":
            raise ValueError(f"unknown latent space {self.latent!r}")
        structures = kbest_bitvectors(scores.detach(), self.k)  # (B, k, D)
        theta = (structures * scores.unsqueeze(1)).sum(-1)
        probs = sparsemax(theta, dim=-1)
        return _finish(probs, structures, loss_fn)


class SparseMAP(Estimator):
    """SparseMAP over bit vectors (paper §4, eq. 6), optionally with a budget ‖z‖₁ ≤ B.

    ``encoding="states"`` (default) scores each bit as a two-state variable, as the paper's
    factor graphs do: μ = clip((η + 1)/2, 0, 1), so scores near 0 keep bits uncertain;
    ``"bits"`` projects η itself (μ = clip(η, 0, 1)); see :mod:`sparse_seq2seq.sparsemap`.
    """

    name = "sparsemap"
    sparse = True

    def __init__(self, latent: str = "bitvector", budget: Optional[int] = None, encoding: str = "states"):
        if latent != "bitvector":
            raise ValueError("SparseMAP here is over bit vectors (over categories it equals sparsemax)")
        self.latent, self.budget, self.encoding = latent, budget, encoding

    def __call__(self, scores: Tensor, loss_fn: LossFn, **context: Tensor) -> Estimate:
        probs, structures, _ = sparsemap_bitvector(scores, budget=self.budget, encoding=self.encoding)
        return _finish(probs, structures, loss_fn)

