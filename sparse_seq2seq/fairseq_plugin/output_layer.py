"""Output distribution of a model trained with an entmax loss (Peters et al. 2019, §3):
decode with the same mapping, and log-probabilities of −inf where p = 0."""
from __future__ import annotations

import torch

from ..mappings import entmax15, entmax_bisect, sparsemax


def entmax_probs(logits: torch.Tensor, alpha: float) -> torch.Tensor:
    """α-entmax over the last dim in float32: sparsemax at 2, 1.5-entmax at 1.5."""
    logits = logits.float()
    if alpha == 2:
        return sparsemax(logits, dim=-1)
    if alpha == 1.5:
        return entmax15(logits, dim=-1)
    return entmax_bisect(logits, alpha, dim=-1)


def normalized_output(logits: torch.Tensor, alpha: float, log_probs: bool) -> torch.Tensor:
    probs = entmax_probs(logits, alpha)
    return torch.log(probs) if log_probs else probs
