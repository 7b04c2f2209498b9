"""Attention normalisers: softmax, sparsemax, 1.5-entmax and α-entmax with one α per head.

A normaliser maps scores of shape (bsz, heads, tgt, src) to probabilities along src,
in float32 whatever the input dtype (half precision loses probability mass), and gives
an all-masked row zeros. Correia, Niculae & Martins (2019), eq. 1 with π ∈ {softmax,
sparsemax, 1.5-entmax, α-entmax}.
"""
from __future__ import annotations

from typing import Optional, Union

import torch
from torch import nn

from .mappings import EntmaxAlpha, entmax15, sparsemax

NORMALIZERS = ("softmax", "sparsemax", "entmax15", "alpha_entmax")


class Normalizer(nn.Module):
    """A fixed mapping along the last dim, computed in float32 (no parameters)."""

    def __init__(self, name: str):
        super().__init__()
        if name not in ("softmax", "sparsemax", "entmax15"):
            raise ValueError(f"unknown attention normalizer {name!r}; choose from {NORMALIZERS}")
        self.name = name

    def forward(self, scores: torch.Tensor) -> torch.Tensor:
        scores = scores.float()
        if self.name == "softmax":
            return torch.softmax(scores, dim=-1)
        if self.name == "sparsemax":
            return sparsemax(scores, dim=-1)
        return entmax15(scores, dim=-1)

    @property
    def alpha(self) -> Optional[torch.Tensor]:
        return {"softmax": None, "sparsemax": torch.tensor(2.0), "entmax15": torch.tensor(1.5)}[self.name]

    def extra_repr(self) -> str:
        return self.name


class AlphaEntmaxNormalizer(EntmaxAlpha):
    """α-entmax with learned α = 1 + sigmoid(a) per head, scores (bsz, heads, tgt, src)."""

    name = "alpha_entmax"

    def __init__(self, num_heads: int, alpha_init: Union[float, str] = 1.5):
        super().__init__(num_heads, dim=-1, alpha_init=alpha_init, head_dim=1)

    def forward(self, scores: torch.Tensor) -> torch.Tensor:
        return super().forward(scores.float())


def build_normalizer(name: str, num_heads: int, alpha_init: Union[float, str] = 1.5) -> nn.Module:
    """The normaliser called ``name`` (one of :data:`NORMALIZERS`)."""
    if name == "alpha_entmax":
        return AlphaEntmaxNormalizer(num_heads, alpha_init)
    return Normalizer(name)
