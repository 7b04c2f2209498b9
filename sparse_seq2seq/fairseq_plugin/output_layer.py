"""Output distribution of a model trained with an entmax loss (Peters et al. 2019, §3):
decode with the same mapping, and log-probabilities of −inf where p = 0."""
from __future__ import annotations

import torch

from ..registry import mapping_for_alpha


def entmax_probs(logits: torch.Tensor, alpha: float) -> torch.Tensor:
    """α-entmax over the last dim in float32: sparsemax at 2, 1.5-entmax at 1.5, bisection
    elsewhere (the normaliser of :mod:`sparse_seq2seq.registry` with that α)."""
    return mapping_for_alpha(alpha)(logits.float())


def normalized_output(logits: torch.Tensor, alpha: float, log_probs: bool) -> torch.Tensor:
    """``entmax_probs`` of the logits, or their log (−inf where p = 0)."""
    probs = entmax_probs(logits, alpha)
    return torch.log(probs) if log_probs else probs
