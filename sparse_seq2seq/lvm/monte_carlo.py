"""Sampling baselines for E_π[ℓ] with π from the softmax family (categorical or Bernoulli bits).

Score function (SFE, eq. 2 of Correia et al. 2020): ∇E_π[ℓ] = E_π[∇ℓ + ℓ ∇log π(z)], with
  * ``sfe``      — one sample, no baseline;
  * ``sfe_plus`` — two samples, each the other's baseline (unbiased: the baseline is independent);
  * ``nvil``     — a learned, input-dependent baseline b(x) passed as ``baseline=`` (Mnih & Gregor 2014),
                   fitted by the extra term (ℓ − b)²;
relaxations (biased, one decoder call):
  * ``gumbel``    — Gumbel-softmax / binary concrete sample fed to the decoder (Jang et al. 2017);
  * ``st_gumbel`` — discrete sample forward, relaxed gradient backward (straight-through);
and the Rao-Blackwellised ``sum_and_sample`` (Liu et al. 2019): exact sum over the k most probable
values plus one score-function sample from the rest, weighted by the remaining mass.
"""
from __future__ import annotations

import torch
from torch import Tensor

from .base import Estimate, Estimator, LossFn
from .spaces import make_space

__all__ = ["SFE", "SFEPlus", "NVIL", "Gumbel", "STGumbel", "SumAndSample"]


def _rows(scores: Tensor) -> Tensor:
    return torch.arange(scores.shape[0], device=scores.device)


class SFE(Estimator):
    """Score-function estimator, one sample: surrogate ℓ(z) + ℓ(z)·log π(z)  (ℓ detached in the product)."""

    name = "sfe"

    def __init__(self, latent: str = "categorical"):
        self.latent = latent

    def __call__(self, scores: Tensor, loss_fn: LossFn, **context: Tensor) -> Estimate:
        space = make_space(self.latent, scores)
        z = space.sample()
        loss = loss_fn(_rows(scores), z)
        surrogate = loss + loss.detach() * space.log_prob(z)
        return Estimate(surrogate, loss.detach(), space.entropy(), scores.shape[0])


class SFEPlus(Estimator):
    """Score function with a second independent sample as baseline; both samples also train ℓ."""

    name = "sfe_plus"

    def __init__(self, latent: str = "categorical"):
        self.latent = latent

    def __call__(self, scores: Tensor, loss_fn: LossFn, **context: Tensor) -> Estimate:
        space = make_space(self.latent, scores)
        z1, z2 = space.sample(), space.sample()
        rows = _rows(scores)
        both = loss_fn(torch.cat([rows, rows]), torch.cat([z1, z2]))
        l1, l2 = both.split(scores.shape[0])
        advantage = (l1 - l2).detach() / 2
        surrogate = (l1 + l2) / 2 + advantage * (space.log_prob(z1) - space.log_prob(z2))
        return Estimate(surrogate, ((l1 + l2) / 2).detach(), space.entropy(), 2 * scores.shape[0])


class NVIL(Estimator):
    """Score function with a learned baseline ``baseline`` (B,): surrogate
    ℓ(z) + (ℓ(z) − b(x))·log π(z) + (ℓ(z) − b(x))², the last term training b only."""

    name = "nvil"

    def __init__(self, latent: str = "categorical"):
        self.latent = latent

    def __call__(self, scores: Tensor, loss_fn: LossFn, **context: Tensor) -> Estimate:
        baseline = context.get("baseline")
        if baseline is None:
            raise ValueError("nvil needs baseline=<(B,) tensor from a learned baseline network>")
        space = make_space(self.latent, scores)
        z = space.sample()
        loss = loss_fn(_rows(scores), z)
        centred = loss.detach() - baseline
        surrogate = loss + centred.detach() * space.log_prob(z) + centred.pow(2)
        return Estimate(surrogate, loss.detach(), space.entropy(), scores.shape[0])


class Gumbel(Estimator):
    """Gumbel-softmax (categorical) or binary-concrete (bits) relaxation at ``temperature``."""

    name = "gumbel"

    def __init__(self, latent: str = "categorical", temperature: float = 1.0):
        self.latent, self.temperature = latent, temperature

    def __call__(self, scores: Tensor, loss_fn: LossFn, **context: Tensor) -> Estimate:
        space = make_space(self.latent, scores)
        y = space.relaxed(self.temperature)
        loss = loss_fn(_rows(scores), y)
        return Estimate(loss, loss.detach(), space.entropy(), scores.shape[0])


class STGumbel(Gumbel):
    """Straight-through Gumbel: the decoder sees the discrete z, gradients flow through the relaxation."""

    name = "st_gumbel"

    def __call__(self, scores: Tensor, loss_fn: LossFn, **context: Tensor) -> Estimate:
        space = make_space(self.latent, scores)
        y = space.relaxed(self.temperature)
        z = space.harden(y) - y.detach() + y
        loss = loss_fn(_rows(scores), z)
        return Estimate(loss, loss.detach(), space.entropy(), scores.shape[0])


class SumAndSample(Estimator):
    """Sum the k most probable values exactly, sample one from the rest (Liu et al. 2019).

    E_π[ℓ] = Σ_{z∈T} π(z)ℓ(z) + R·E_{q}[ℓ],  R = 1 − π(T),  q = π restricted to Z∖T;
    surrogate Σ_T π ℓ + R·ℓ(z') + R·ℓ(z')·log q(z')  (detached factors in the last product).
    k + 1 decoder calls per example (k when T is all of Z).
    """

    name = "sum_and_sample"

    def __init__(self, latent: str = "categorical", k: int = 1):
        self.latent, self.k = latent, k

    def __call__(self, scores: Tensor, loss_fn: LossFn, **context: Tensor) -> Estimate:
        space = make_space(self.latent, scores)
        top = space.top_k(self.k)  # (B, k', L)
        bsz, kk, _ = top.shape
        rows = _rows(scores)
        top_logp = torch.stack([space.log_prob(top[:, j]) for j in range(kk)], 1)
        top_p = top_logp.exp()
        rest = (1 - top_p.sum(1)).clamp_min(0.0)
        exhaustive = kk >= (space.size if self.latent == "categorical" else 2 ** min(space.size, 62))
        if exhaustive:
            losses = loss_fn(rows.repeat_interleave(kk), top.reshape(bsz * kk, -1)).view(bsz, kk)
            expected = (top_p * losses).sum(1)
            return Estimate(expected, expected.detach(), space.entropy(), bsz * kk)
        z = space.sample_excluding(top.detach())
        all_rows = torch.cat([rows.repeat_interleave(kk), rows])
        losses = loss_fn(all_rows, torch.cat([top.reshape(bsz * kk, -1), z]))
        top_losses, sample_loss = losses[: bsz * kk].view(bsz, kk), losses[bsz * kk:]
        log_q = space.log_prob(z) - rest.clamp_min(1e-30).log()
        surrogate = (top_p * top_losses).sum(1) + rest * sample_loss + (rest * sample_loss).detach() * log_q
        value = (top_p * top_losses).sum(1) + rest * sample_loss
        return Estimate(surrogate, value.detach(), space.entropy(), bsz * (kk + 1))
