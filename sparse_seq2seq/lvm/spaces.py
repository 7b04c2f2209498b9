"""The two latent spaces, seen through the softmax-family distribution their scores define.

``Categorical``: z is one of |Z| values, π = softmax(s), values are one-hot rows.
``BitVector``: z ∈ {0,1}^D, π(z) ∝ exp(ηᵀz) = Π_i Bernoulli(z_i; σ(η_i)), values are 0/1 rows.

Each offers what the Monte-Carlo estimators need (sampling, log-probabilities, entropy,
Gumbel relaxations) and what exact or sparse marginalisation needs (the k most probable
values, or every value when the space is small).
"""
from __future__ import annotations

import itertools
import torch
import torch.nn.functional as F
from torch import Tensor

__all__ = ["Categorical", "BitVector", "make_space", "kbest_bitvectors"]


class Categorical:
    """π = softmax(scores) over |Z| = scores.shape[-1] values."""

    kind = "categorical"

    def __init__(self, scores: Tensor):
        self.scores = scores
        self.log_probs = F.log_softmax(scores, dim=-1)

    @property
    def size(self) -> int:
        return self.scores.shape[-1]

    def sample(self) -> Tensor:
        idx = torch.multinomial(self.log_probs.detach().exp(), 1).squeeze(-1)
        return F.one_hot(idx, self.size).to(self.scores.dtype)

    def log_prob(self, z: Tensor) -> Tensor:
        return (z * self.log_probs).sum(-1)

    def entropy(self) -> Tensor:
        return -(self.log_probs.exp() * self.log_probs).sum(-1)

    def relaxed(self, temperature: float) -> Tensor:
        """Gumbel-softmax sample (Jang et al. 2017; Maddison et al. 2017)."""
        u = torch.rand_like(self.log_probs).clamp(1e-10, 1 - 1e-10)
        return F.softmax((self.log_probs - (-u.log()).log()) / temperature, dim=-1)

    @staticmethod
    def harden(y: Tensor) -> Tensor:
        return F.one_hot(y.argmax(-1), y.shape[-1]).to(y.dtype)

    def top_k(self, k: int) -> Tensor:
        """The k most probable values per example, (B, k, |Z|) one-hot."""
        idx = self.scores.topk(min(k, self.size), dim=-1).indices
        return F.one_hot(idx, self.size).to(self.scores.dtype)

    def enumerate(self) -> Tensor:
        return torch.eye(self.size, dtype=self.scores.dtype, device=self.scores.device)

    def sample_excluding(self, excluded: Tensor) -> Tensor:
        """Sample from π restricted to the values not in ``excluded`` (B, k, |Z|)."""
        banned = excluded.sum(1) > 0
        logits = self.log_probs.detach().masked_fill(banned, float("-inf"))
        ok = ~banned.all(-1, keepdim=True)
        logits = torch.where(ok, logits, torch.zeros_like(logits))
        idx = torch.multinomial(logits.softmax(-1), 1).squeeze(-1)
        return F.one_hot(idx, self.size).to(self.scores.dtype)


class BitVector:
    """π(z) = Π_i Bernoulli(z_i; σ(η_i)) over z ∈ {0,1}^D, D = scores.shape[-1]."""

    kind = "bitvector"

    def __init__(self, scores: Tensor):
        self.scores = scores

    @property
    def size(self) -> int:
        return self.scores.shape[-1]

    def sample(self) -> Tensor:
        return torch.bernoulli(torch.sigmoid(self.scores.detach()))

    def log_prob(self, z: Tensor) -> Tensor:
        return -F.binary_cross_entropy_with_logits(self.scores, z, reduction="none").sum(-1)

    def entropy(self) -> Tensor:
        return (F.softplus(self.scores) - torch.sigmoid(self.scores) * self.scores).sum(-1)

    def relaxed(self, temperature: float) -> Tensor:
        """Binary concrete sample (Maddison et al. 2017)."""
        u = torch.rand_like(self.scores).clamp(1e-10, 1 - 1e-10)
        return torch.sigmoid((self.scores + u.log() - (-u).log1p()) / temperature)

    @staticmethod
    def harden(y: Tensor) -> Tensor:
        return (y > 0.5).to(y.dtype)

    def top_k(self, k: int) -> Tensor:
        """The k most probable bit vectors per example, (B, k', D) with k' = min(k, 2^D)."""
        return kbest_bitvectors(self.scores.detach(), k)

    def enumerate(self) -> Tensor:
        if self.size > 16:
            raise ValueError(f"refusing to enumerate 2^{self.size} bit vectors")
        rows = list(itertools.product((0.0, 1.0), repeat=self.size))
        return torch.tensor(rows, dtype=self.scores.dtype, device=self.scores.device)

    def sample_excluding(self, excluded: Tensor, max_rounds: int = 100) -> Tensor:
        """Rejection-sample π outside ``excluded`` (B, k, D). A row whose draws all land inside
        for ``max_rounds`` rounds (excluded mass above ~0.97) keeps its last draw."""
        z = self.sample()
        for _ in range(max_rounds):
            inside = (z.unsqueeze(1) == excluded).all(-1).any(-1)
            if not bool(inside.any()):
                break
            z = torch.where(inside.unsqueeze(-1), self.sample(), z)
        return z


def kbest_bitvectors(eta: Tensor, k: int) -> Tensor:
    """The k highest-scoring z ∈ {0,1}^D under ηᵀz, best first, as (B, k', D), k' = min(k, 2^D).

    The best is z* = [η > 0]; any other z flips a set F of bits and loses Σ_{i∈F} |η_i|. The k
    cheapest flip sets only use the k smallest |η_i| (a set holding a larger one costs more than
    the empty set and the k singletons), so enumerating subsets of those is exact.
    """
    bsz, dim = eta.shape
    m = min(k, dim)
    if m > 16:
        raise ValueError("kbest_bitvectors enumerates 2^min(k, D) flip sets; use k <= 16")
    cost, idx = eta.abs().topk(m, dim=-1, largest=False)
    subsets = torch.tensor(list(itertools.product((0.0, 1.0), repeat=m)), dtype=eta.dtype, device=eta.device)
    flip_cost = cost @ subsets.T  # (B, 2^m)
    kk = min(k, subsets.shape[0])
    order = flip_cost.topk(kk, dim=-1, largest=False).indices  # (B, kk)
    chosen = subsets[order]  # (B, kk, m)
    flips = torch.zeros(bsz, kk, dim, dtype=eta.dtype, device=eta.device)
    flips.scatter_(2, idx.unsqueeze(1).expand(bsz, kk, m), chosen)
    best = (eta > 0).to(eta.dtype).unsqueeze(1)
    return (best - flips).abs()


def make_space(kind: str, scores: Tensor):
    """Build the latent space named ``kind`` ('categorical' or 'bitvector') over ``scores``."""
    if kind == "categorical":
        return Categorical(scores)
    if kind == "bitvector":
        return BitVector(scores)
    raise ValueError(f"unknown latent space {kind!r}")
