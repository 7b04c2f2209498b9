"""Attention normalisers: softmax, sparsemax, 1.5-entmax and α-entmax with one α per head.

A normaliser maps scores of shape (bsz, heads, tgt, src) to probabilities along src,
in float32 whatever the input dtype (half precision loses probability mass), and gives
an all-masked row zeros. Correia, Niculae & Martins (2019), eq. 1 with π ∈ {softmax,
sparsemax, 1.5-entmax, α-entmax}; the names, mappings and α live in
:mod:`sparse_seq2seq.registry`.

Every normaliser has ``alpha`` (a per-head tensor, a 0-dim tensor for a fixed α, or None
for softmax) and, when ``record_density`` is set, keeps ``last_density`` after each
training forward: per head, the mean over query rows of the share of unmasked keys with
non-zero probability (1 for softmax; the fairseq models log it as ``density/<type>_l<i>_h<j>``).
"""
from __future__ import annotations

from typing import Optional, Union

import torch
from torch import nn

from .mappings import EntmaxAlpha
from .registry import NORMALIZER_NAMES, normalizer_spec

NORMALIZERS = NORMALIZER_NAMES


def head_density(scores: torch.Tensor, probs: torch.Tensor) -> torch.Tensor:
    """Mean share of the unmasked keys (score > −inf) that get non-zero probability, per
    head, over the query rows that have any unmasked key; scores and probs (bsz, heads, tgt, src)."""
    with torch.no_grad():
        valid = scores > float("-inf")
        keys = valid.sum(-1)
        support = (probs > 0).logical_and_(valid).sum(-1)
        live = keys > 0
        share = torch.where(live, support / keys.clamp(min=1), torch.zeros((), device=probs.device))
        rows = live.sum(dim=(0, 2)).clamp(min=1)
        return share.sum(dim=(0, 2)) / rows


class _DensityRecorder:
    """``record_density`` / ``last_density`` shared by every normaliser."""

    record_density: bool = False
    last_density: Optional[torch.Tensor] = None

    def _record(self, scores: torch.Tensor, probs: torch.Tensor) -> torch.Tensor:
        if self.record_density and self.training and scores.dim() == 4:
            self.last_density = head_density(scores, probs)
        return probs


class Normalizer(_DensityRecorder, nn.Module):
    """A fixed mapping along the last dim, computed in float32 (no parameters)."""

    def __init__(self, name: str):
        super().__init__()
        spec = normalizer_spec(name)
        if spec.learned:
            raise ValueError(f"{name!r} learns α per head: build it with build_normalizer")
        self.name = name
        self._mapping = spec.mapping
        self._alpha = spec.alpha

    def forward(self, scores: torch.Tensor) -> torch.Tensor:
        scores = scores.float()
        return self._record(scores, self._mapping(scores))

    @property
    def alpha(self) -> Optional[torch.Tensor]:
        """The fixed α as a 0-dim tensor; None for softmax (it has no α to learn or log)."""
        return None if self._alpha == 1 else torch.tensor(self._alpha)

    def extra_repr(self) -> str:
        return self.name


class AlphaEntmaxNormalizer(_DensityRecorder, EntmaxAlpha):
    """α-entmax with learned α = 1 + sigmoid(a) per head, scores (bsz, heads, tgt, src)."""

    name = "alpha_entmax"

    def __init__(self, num_heads: int, alpha_init: Union[float, str] = 1.5):
        super().__init__(num_heads, dim=-1, alpha_init=alpha_init, head_dim=1)

    def forward(self, scores: torch.Tensor) -> torch.Tensor:
        scores = scores.float()
        return self._record(scores, super().forward(scores))


def build_normalizer(name: str, num_heads: int, alpha_init: Union[float, str] = 1.5) -> nn.Module:
    """The normaliser called ``name`` (one of :data:`NORMALIZERS`)."""
    if normalizer_spec(name).learned:
        return AlphaEntmaxNormalizer(num_heads, alpha_init)
    return Normalizer(name)
