"""The estimator interface shared by every way of handling a discrete latent variable.

An estimator receives the encoder's scores and a callable ``loss_fn(rows, z)`` that returns
the loss ℓ(x_rows, z) for a batch of (example, latent value) pairs. It calls ``loss_fn`` only
where needed and returns an :class:`Estimate`: a per-example surrogate whose gradient is the
estimator's gradient of E_{π(z|x)}[ℓ(x, z)] (Correia et al., NeurIPS 2020, eq. 1), the value
of that expectation as estimated, the entropy of π (for KL terms), and the number of
``loss_fn`` ("decoder") evaluations.

Latent values are always handed to ``loss_fn`` as float vectors: one-hot (or relaxed) rows of
length |Z| for categorical variables, {0,1} (or relaxed) rows of length D for bit vectors.
"""
from __future__ import annotations

from dataclasses import dataclass
from typing import Callable, Optional

import torch
from torch import Tensor

LossFn = Callable[[Tensor, Tensor], Tensor]
"""``loss_fn(rows, z) -> losses``: rows (N,) long indices into the batch, z (N, ...) floats, losses (N,)."""


@dataclass
class Estimate:
    """What every estimator returns.

    objective: (B,) surrogate to back-propagate (its gradient is the estimator's gradient).
    loss: (B,) detached estimate of E_π[ℓ].
    entropy: (B,) entropy H(π) of the distribution the estimator uses, differentiable.
    decoder_calls: number of (example, z) pairs handed to ``loss_fn``.
    probs: (B, |Z|) or (B, C) probabilities of the latent values the estimator represents.
    """

    objective: Tensor
    loss: Tensor
    entropy: Tensor
    decoder_calls: int
    probs: Optional[Tensor] = None


class Estimator:
    """Base class: ``estimator(scores, loss_fn, **context) -> Estimate``."""

    name: str = "estimator"
    sparse: bool = False

    def __call__(self, scores: Tensor, loss_fn: LossFn, **context: Tensor) -> Estimate:
        raise NotImplementedError

    def __repr__(self) -> str:
        opts = ", ".join(f"{k}={v}" for k, v in vars(self).items())
        return f"{type(self).__name__}({opts})"


def sparse_entropy(probs: Tensor, dim: int = -1) -> Tensor:
    """Shannon entropy −Σ p log p with 0 log 0 = 0, differentiable on the support."""
    safe = torch.where(probs > 0, probs, torch.ones_like(probs))
    return -(probs * safe.log()).sum(dim)


def expect_over_support(probs: Tensor, values: Tensor, loss_fn: LossFn) -> tuple[Tensor, int]:
    """Σ_z π(z|x) ℓ(x, z) evaluated only on the support (paper eq. 4).

    probs: (B, S) probabilities; values: (S, L) latent values shared by all examples or
    (B, S, L) per-example ones. ``loss_fn`` sees only the pairs with ``probs > 0``: a latent value that has zero
    probability for every example is never decoded. Returns (expectation (B,), number of calls).
    """
    rows, cols = (probs > 0).nonzero(as_tuple=True)
    z = values[cols] if values.dim() == 2 else values[rows, cols]
    losses = loss_fn(rows, z)
    if losses.shape != rows.shape:
        raise ValueError(f"loss_fn must return one loss per pair: expected {tuple(rows.shape)}, got {tuple(losses.shape)}")
    weighted = probs[rows, cols] * losses
    total = weighted.new_zeros(probs.shape[0]).index_add(0, rows, weighted)
    return total, int(rows.numel())


def one_hot_rows(n: int, like: Tensor) -> Tensor:
    """The |Z| one-hot latent values as a (|Z|, |Z|) float matrix."""
    return torch.eye(n, dtype=like.dtype, device=like.device)
