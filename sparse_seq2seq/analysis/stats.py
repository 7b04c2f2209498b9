"""Statistics of attention heads: support size, density, fully dense queries and the
Jensen–Shannon diversity of the heads of a layer (Correia, Niculae & Martins 2019, §5).

Every function takes attention probabilities ``probs`` of shape (bsz, heads, tgt, src), as
kept by :class:`sparse_seq2seq.attention.SparseMultiheadAttention` with ``keep_attention``,
and a boolean ``valid`` of shape (bsz, tgt, src) that is true for the (query, key) pairs a
query may attend to: a real (non-padding) query and a real key, and for decoder
self-attention a key that is not in the future (:func:`valid_pairs`). A query with no valid
key (a padding position) is left out of every statistic.

Definitions, per query q of a head:

* **support size** — the number of valid keys with p > 0 (exactly nonzero weight, the
  sparsity of eq. 1 with π = α-entmax; a softmax weight is zero only when it underflows
  float32);
* **density** — support size divided by the number of valid keys n_q (the paper's
  "attention density", Fig. 6);
* **fully dense** — the support is every valid key (density 1). A head's *dense fraction*
  is the share of its queries that are fully dense; a head is a **fully dense head** when
  its dense fraction is 1, i.e. every query of the data gave weight to every token (a
  softmax head always is).

The **Jensen–Shannon head diversity** of a layer with H heads is, for one query,

    JS = H_S( (1/H) Σ_j p_j ) − (1/H) Σ_j H_S(p_j),

the generalised Jensen–Shannon divergence among the heads' distributions p_1 … p_H, with
H_S the Shannon entropy taken in base n_q (the number of valid keys) so that 0 ≤ JS ≤ 1 as
in the paper; it is averaged over queries. JS is 0 when all heads agree and log H / log n_q
for H ≤ n_q heads that each put all their weight on a different token. A query with a single
valid key (the first position of decoder self-attention) has no base-n entropy and carries
no information on diversity (every head must give that key weight 1): it is left out of
the JS average.

The functions and :class:`HeadStatistics` are the one implementation of these statistics
for every model: ``sparse-seq2seq-heads`` (fairseq checkpoints, :mod:`.collect`) and
:mod:`sparse_seq2seq.hf.heads` (transformers models) both call them, so their signatures
are kept stable:

* ``valid_pairs(query_real, key_real, causal=False) -> valid`` (bsz, tgt, src) bool;
* ``available_keys(valid) -> n`` (bsz, tgt) long;
* ``support_sizes(probs, valid) -> sizes`` (bsz, heads, tgt) long;
* ``js_divergence(probs, valid) -> (js, defined)``, both (bsz, tgt);
* ``HeadStatistics(num_heads)``, ``.update(probs, valid)``, then ``mean_support``,
  ``density``, ``dense_fraction``, ``fully_dense_heads`` (one value per head), ``js``,
  ``queries`` and ``js_queries``.

``probs`` may live on any device and have any float dtype; statistics are accumulated on
the CPU in float64.
"""
from __future__ import annotations

from dataclasses import dataclass, field
from typing import Optional, Tuple

import torch
from torch import Tensor

__all__ = ["valid_pairs", "support_sizes", "available_keys", "js_divergence", "HeadStatistics"]


def valid_pairs(query_real: Tensor, key_real: Tensor, causal: bool = False) -> Tensor:
    """Valid (query, key) pairs (bsz, tgt, src) from real-token masks (bsz, tgt), (bsz, src).

    ``causal`` forbids keys after the query (decoder self-attention; positions are
    aligned, so it expects tgt == src)."""
    valid = query_real.bool().unsqueeze(2) & key_real.bool().unsqueeze(1)
    if causal:
        tgt, src = valid.shape[1:]
        if tgt != src:
            raise ValueError(f"causal attention needs as many queries as keys, got {tgt} and {src}")
        valid = valid & torch.ones(tgt, src, dtype=torch.bool, device=valid.device).tril()
    return valid


def _check(probs: Tensor, valid: Tensor) -> Tensor:
    if probs.dim() != 4:
        raise ValueError(f"probs must be (bsz, heads, tgt, src), got shape {tuple(probs.shape)}")
    if valid.shape != probs.shape[:1] + probs.shape[2:]:
        raise ValueError(f"valid must be (bsz, tgt, src) = {tuple(probs.shape[:1] + probs.shape[2:])}, "
                         f"got {tuple(valid.shape)}")
    return valid.bool().unsqueeze(1)


def available_keys(valid: Tensor) -> Tensor:
    """n_q: the number of keys each query may attend to, (bsz, tgt)."""
    return valid.bool().sum(-1)


def support_sizes(probs: Tensor, valid: Tensor) -> Tensor:
    """Number of valid keys with nonzero weight, (bsz, heads, tgt)."""
    return ((probs > 0) & _check(probs, valid)).sum(-1)


def _entropy(p: Tensor) -> Tensor:
    """Shannon entropy in nats along the last dim, with 0 log 0 = 0."""
    return -torch.xlogy(p, p).sum(-1)


def js_divergence(probs: Tensor, valid: Tensor) -> Tuple[Tensor, Tensor]:
    """Jensen–Shannon diversity of the heads per query (see the module docstring).

    Returns ``(js, defined)``, both (bsz, tgt): ``js`` in [0, 1], and ``defined`` true
    where the query has at least two valid keys (elsewhere ``js`` is 0 and should be
    ignored). Computed in float64."""
    mask = _check(probs, valid)
    p = probs.double() * mask  # weight on invalid keys (none, for a masked model) is dropped
    heads_entropy = _entropy(p).mean(1)  # (bsz, tgt)
    mixture_entropy = _entropy(p.mean(1))
    n = available_keys(valid)
    defined = n >= 2
    log_n = torch.where(defined, n.double(), torch.full_like(n, 2, dtype=torch.float64)).log()
    js = ((mixture_entropy - heads_entropy) / log_n).clamp(min=0.0)
    return torch.where(defined, js, torch.zeros_like(js)), defined


@dataclass
class HeadStatistics:
    """Running sums for the heads of one attention module (one layer of one type).

    Feed batches with :meth:`update`; read means from the properties. Only queries with at
    least one valid key count."""

    num_heads: int
    queries: int = 0  # real queries seen (each head sees the same ones)
    js_queries: int = 0  # queries with at least two valid keys
    _support: Optional[Tensor] = field(default=None, repr=False)
    _density: Optional[Tensor] = field(default=None, repr=False)
    _dense: Optional[Tensor] = field(default=None, repr=False)
    _js: float = 0.0

    def __post_init__(self) -> None:
        zeros = torch.zeros(self.num_heads, dtype=torch.float64)
        self._support, self._density, self._dense = zeros.clone(), zeros.clone(), zeros.clone()

    def update(self, probs: Tensor, valid: Tensor) -> None:
        """Add a batch: ``probs`` (bsz, heads, tgt, src) and ``valid`` (bsz, tgt, src)."""
        if probs.size(1) != self.num_heads:
            raise ValueError(f"expected {self.num_heads} heads, got {probs.size(1)}")
        probs, valid = probs.detach().cpu(), valid.detach().cpu().bool()
        support = support_sizes(probs, valid).double()  # (bsz, heads, tgt)
        n = available_keys(valid)
        real = (n > 0).unsqueeze(1)  # (bsz, 1, tgt)
        n_heads = n.unsqueeze(1).clamp(min=1).double()
        self._support += (support * real).sum((0, 2))
        self._density += (support / n_heads * real).sum((0, 2))
        self._dense += ((support == n.unsqueeze(1)) & real).double().sum((0, 2))
        self.queries += int(real.sum())
        js, defined = js_divergence(probs, valid)
        self._js += float(js[defined].sum())
        self.js_queries += int(defined.sum())

    def _mean(self, total: Tensor) -> Tensor:
        return total / self.queries if self.queries else torch.full_like(total, float("nan"))

    @property
    def mean_support(self) -> Tensor:
        """Mean number of tokens with nonzero weight per query, one value per head."""
        return self._mean(self._support)

    @property
    def density(self) -> Tensor:
        """Mean share of the valid tokens with nonzero weight, one value per head."""
        return self._mean(self._density)

    @property
    def dense_fraction(self) -> Tensor:
        """Share of queries whose distribution is fully dense, one value per head."""
        return self._mean(self._dense)

    @property
    def fully_dense_heads(self) -> Tensor:
        """True for heads that were fully dense on every query."""
        return self._dense == self.queries if self.queries else torch.zeros(self.num_heads, dtype=torch.bool)

    @property
    def js(self) -> float:
        """Mean Jensen–Shannon diversity of the heads over queries (nan before any)."""
        return self._js / self.js_queries if self.js_queries else float("nan")
