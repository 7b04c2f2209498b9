"""The attention function that transformers calls in place of softmax attention.

transformers 5 attention modules compute q, k, v of shape (batch, heads, length, head_dim)
and hand them, with the mask built by the mask interface, to
``fn(module, query, key, value, attention_mask, scaling=..., dropout=..., **kwargs)``,
which returns the output (batch, q_len, heads, head_dim) and the weights. Here the weights
are p = π(scaling · q kᵀ + mask) with π softmax, sparsemax, 1.5-entmax or α-entmax with the
module's own α per head (Correia, Niculae & Martins 2019, eq. 1).

Masks: a boolean mask (True = attend, as ``sdpa_mask`` builds it) or an additive float mask
(0 = attend, the dtype's minimum or −inf = forbidden, as ``eager_mask`` builds it; other
finite values are added as biases); None means causal attention for a causal module with more
than one query (top-left aligned, as transformers' sdpa path), no mask otherwise. Forbidden
keys get −inf, so a query with no key left gets zeros. A ``position_bias`` keyword (T5's
relative position bias, (1 or B, H, Tq, Tk)) is added to the scores before the mask, as T5's
eager attention does. Scores and the normaliser run in float32 for half-precision inputs; the
output has the input dtype.

On CUDA, with a plain padding or causal mask, no position bias and no kept attention,
α-entmax runs through the fused kernel of :mod:`sparse_seq2seq.kernels` (O(T) memory; attention
dropout in training is applied inside it).
"""
from __future__ import annotations

from functools import partial
from typing import Callable, Optional, Tuple

import torch
from torch import Tensor, nn
import torch.nn.functional as F

from .._checks import compute_dtype
from ..mappings import EntmaxAlpha, entmax_bisect
from ..registry import normalizer_spec
from ..tensor_memo import TensorMemo

__all__ = ["attention_forward", "allowed_keys", "plain_mask", "ALPHA_MODULE", "KEEP_FLAG", "KEPT"]

ALPHA_MODULE = "entmax_alpha"  # attribute of an attention module holding its learned α
KEEP_FLAG = "sparse_keep_attention"  # when true on a module, its last probabilities are kept…
KEPT = "sparse_last_attention"  # …here, (batch, heads, q_len, kv_len), float32 for half inputs


def _softmax(scores: Tensor) -> Tensor:
    """Softmax that gives a row of −inf zeros (α-entmax at α = 1), not NaN: NaN at a fully
    masked query would reach every later layer through its values."""
    return entmax_bisect(scores, 1.0, dim=-1)


def _mapping(module: nn.Module, name: str, heads: int) -> Callable[[Tensor], Tensor]:
    """π for scores (B, H, Tq, Tk): the fixed mapping, or α-entmax with the module's α."""
    spec = normalizer_spec(name)
    if not spec.learned:
        return _softmax if spec.alpha == 1 else spec.mapping
    alpha = getattr(module, ALPHA_MODULE, None)
    if not isinstance(alpha, EntmaxAlpha):
        raise RuntimeError(f"{type(module).__name__} has no learned α: build the model with "
                           f"attn_implementation={name!r} after importing sparse_seq2seq.hf, or call "
                           f"sparse_seq2seq.hf.sparsify(model, {name!r})")
    if alpha.num_heads != heads:
        raise ValueError(f"{type(module).__name__} has α for {alpha.num_heads} heads, the query has {heads}")
    return partial(EntmaxAlpha.forward, alpha)  # the library's α-entmax, in the scores' dtype


def _alpha(module: nn.Module, name: str):
    """α for the fused kernel: the fixed float, or the (heads,) tensor of learned α."""
    fixed = normalizer_spec(name).alpha
    return fixed if fixed is not None else getattr(module, ALPHA_MODULE).alpha


def allowed_keys(mask: Tensor) -> Tensor:
    """True where a query may attend a key: a boolean mask as it is, an additive float mask
    where it is above half its dtype's minimum (−inf and the minimum forbid)."""
    if mask.dtype == torch.bool:
        return mask
    return mask > torch.finfo(mask.dtype).min / 2


def _future(q_len: int, kv_len: int, device) -> Tensor:
    """True where key j is after query i, bottom-right aligned (j > i + kv_len − q_len)."""
    i = torch.arange(q_len, device=device)[:, None]
    return torch.arange(kv_len, device=device)[None, :] > i + (kv_len - q_len)


_PLAIN_MASKS = TensorMemo()


def plain_mask(mask: Optional[Tensor], causal: bool, q_len: int, kv_len: int
               ) -> Optional[Tuple[Optional[Tensor], bool]]:
    """``(key_padding_mask (batch, kv_len) True = pad, or None; causal)`` when ``mask`` is a
    padding mask, or a bottom-right causal mask with padding, and every query keeps a key;
    None for any other mask (it needs the materialised path). Read once per mask, not once
    per layer (:mod:`sparse_seq2seq.tensor_memo`)."""
    if mask is None:
        return (None, causal) if not causal or q_len == kv_len else None
    if mask.dim() != 4 or mask.size(1) != 1:
        return None
    return _PLAIN_MASKS.get(mask, (q_len, kv_len), lambda: _read_plain_mask(mask, q_len, kv_len))


def _read_plain_mask(mask: Tensor, q_len: int, kv_len: int
                     ) -> Optional[Tuple[Optional[Tensor], bool]]:
    allowed = allowed_keys(mask)
    if mask.dtype != torch.bool and bool((mask.masked_fill(~allowed, 0) != 0).any()):
        return None  # a float mask with biases
    if not bool(allowed.any(-1).all()):
        return None  # rows without keys: left to the materialised path (zeros)
    pad = ~allowed[:, 0, -1, :]  # the last query sees every key that is not padding
    keys = ~pad[:, None, None, :]
    if torch.equal(allowed, keys.expand_as(allowed)):
        return pad, False
    if torch.equal(allowed, (keys & ~_future(q_len, kv_len, mask.device)).expand_as(allowed)):
        return pad, True
    return None


def _on_gpu(query: Tensor) -> bool:
    return query.is_cuda


def _fused(module, query, key, value, mask, causal, scaling, dropout, name, bias):
    """The fused kernel's output (batch, heads, q_len, head_dim), or None when it does not apply."""
    if not _on_gpu(query) or normalizer_spec(name).alpha == 1.0 or bias is not None:
        return None
    if getattr(module, KEEP_FLAG, False):
        return None
    try:
        from ..kernels import kernel_applies
        from ..kernels.attention import fused_attention
    except ImportError:
        return None
    if not kernel_applies(query, key, value):
        return None
    plain = plain_mask(mask, causal, query.size(2), key.size(2))
    if plain is None:
        return None
    padding, causal = plain
    alpha = _alpha(module, name)
    return fused_attention(query, key, value, alpha, key_padding_mask=padding, causal=causal,
                           scale=scaling, dropout=dropout if module.training else 0.0,
                           check_inputs=False, check_alpha=False)  # α = 1 + sigmoid ∈ (1, 2]


def _repeat_kv(states: Tensor, heads: int) -> Tensor:
    """Grouped-query attention: repeat each key/value head for its group of query heads."""
    if states.size(1) == heads:
        return states
    if heads % states.size(1):
        raise ValueError(f"{heads} query heads cannot share {states.size(1)} key/value heads")
    return states.repeat_interleave(heads // states.size(1), dim=1)


def attention_forward(module: nn.Module, query: Tensor, key: Tensor, value: Tensor,
                      attention_mask: Optional[Tensor], scaling: Optional[float] = None,
                      dropout: float = 0.0, *, normalizer: str, is_causal: Optional[bool] = None,
                      position_bias: Optional[Tensor] = None, **kwargs) -> Tuple[Tensor, Optional[Tensor]]:
    """Sparse attention for transformers' ``AttentionInterface``.

    query (B, H, Tq, D); key, value (B, H_kv, Tk, D) with H a multiple of H_kv;
    attention_mask (B, 1 or H, Tq, ≥Tk), boolean or additive, or None (see the module
    docstring); position_bias (1 or B, H, Tq, ≥Tk), added to the scores, or None. Returns
    (output (B, Tq, H, D) in the query's dtype, weights (B, H, Tq, Tk) in the query's dtype,
    or None from the fused kernel)."""
    heads, q_len = query.size(1), query.size(2)
    key, value = _repeat_kv(key, heads), _repeat_kv(value, heads)
    kv_len = key.size(2)
    scaling = query.size(-1) ** -0.5 if scaling is None else scaling
    if attention_mask is not None:
        attention_mask = attention_mask[..., :kv_len]
    if position_bias is not None:
        position_bias = position_bias[..., :kv_len]
    causal = bool(is_causal if is_causal is not None else getattr(module, "is_causal", True))
    causal = causal and attention_mask is None and q_len > 1
    mapping = _mapping(module, normalizer, heads)

    out = _fused(module, query, key, value, attention_mask, causal, scaling, dropout, normalizer,
                 position_bias)
    if out is not None:
        return out.transpose(1, 2).contiguous(), None

    dtype = compute_dtype(query)  # float32 for half precision
    scores = torch.matmul(query.to(dtype), key.to(dtype).transpose(-1, -2)) * scaling
    if position_bias is not None:
        scores = scores + position_bias.to(dtype)
    if attention_mask is not None:
        forbidden = ~allowed_keys(attention_mask)
        if attention_mask.dtype != torch.bool:
            scores = scores + attention_mask.to(dtype).masked_fill(forbidden, 0.0)
        scores = scores.masked_fill(forbidden, float("-inf"))
    elif causal:  # top-left aligned, as torch's is_causal
        future = torch.ones(q_len, kv_len, dtype=torch.bool, device=query.device).triu(1)
        scores = scores.masked_fill(future, float("-inf"))
    probs = mapping(scores)  # (B, H, Tq, Tk), in the scores' dtype
    if getattr(module, KEEP_FLAG, False):
        setattr(module, KEPT, probs.detach())
    weights = F.dropout(probs, p=dropout, training=module.training) if dropout > 0 else probs
    out = torch.matmul(weights.to(value.dtype), value)
    return out.transpose(1, 2).contiguous(), probs.to(query.dtype)
