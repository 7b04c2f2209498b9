"""The one multi-head attention of the project, with a pluggable normaliser.

Scores q kᵀ/√d are normalised by softmax, sparsemax, 1.5-entmax or α-entmax with a learned
α per head (Correia, Niculae & Martins 2019, §3). The module is plain PyTorch but speaks
fairseq's attention protocol — same constructor arguments, parameter names
(``q_proj``/``k_proj``/``v_proj``/``out_proj``), ``forward`` signature, incremental state
(``_get_input_buffer``/``_set_input_buffer``/``reorder_incremental_state``) and the
beam-shared encoder keys of ``set_beam_size`` — so fairseq layers, the BERT
post-editing model and any PyTorch model can use it. Unlike fairseq's module it never
takes the fused ``F.multi_head_attention_forward`` path, which would bypass the normaliser.
"""
from __future__ import annotations

import math
import os
import uuid
import warnings
from typing import Dict, Optional, Tuple, Union

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from .normalizers import build_normalizer
from .tensor_memo import TensorMemo

IncrementalState = Dict[str, Dict[str, Optional[Tensor]]]

KERNEL_ENV = "SPARSE_SEQ2SEQ_ATTN_KERNEL"
"""``auto`` (default): the fused Triton kernel on CUDA where it applies; ``triton``: also on
CPU tensors (under ``TRITON_INTERPRET=1``, for tests); ``off``: always the materialised path."""
KERNEL_MODES = ("auto", "triton", "off")
_WARNED = set()


def _say_once(reason: str) -> None:
    if reason not in _WARNED:
        _WARNED.add(reason)
        warnings.warn(f"sparse attention: materialised path ({reason})", stacklevel=3)


def kernel_mode() -> str:
    mode = os.environ.get(KERNEL_ENV, "auto").lower()
    if mode not in KERNEL_MODES:
        raise ValueError(f"{KERNEL_ENV}={mode!r}: choose one of {KERNEL_MODES}")
    return mode


class SparseMultiheadAttention(nn.Module):
    """Multi-head attention (time × batch × channel) whose normaliser is chosen by name."""

    def __init__(self, embed_dim: int, num_heads: int, kdim: Optional[int] = None,
                 vdim: Optional[int] = None, dropout: float = 0.0, bias: bool = True,
                 self_attention: bool = False, encoder_decoder_attention: bool = False,
                 normalizer: str = "softmax", alpha_init: Union[float, str] = 1.5):
        super().__init__()
        if embed_dim % num_heads:
            raise ValueError(f"embed_dim={embed_dim} is not divisible by num_heads={num_heads}")
        self.embed_dim, self.num_heads = embed_dim, num_heads
        self.kdim, self.vdim = kdim or embed_dim, vdim or embed_dim
        self.qkv_same_dim = self.kdim == embed_dim and self.vdim == embed_dim
        self.head_dim = embed_dim // num_heads
        self.scaling = self.head_dim ** -0.5
        self.dropout = dropout
        self.self_attention = self_attention
        self.encoder_decoder_attention = encoder_decoder_attention
        self.k_proj = nn.Linear(self.kdim, embed_dim, bias=bias)
        self.v_proj = nn.Linear(self.vdim, embed_dim, bias=bias)
        self.q_proj = nn.Linear(embed_dim, embed_dim, bias=bias)
        self.out_proj = nn.Linear(embed_dim, embed_dim, bias=bias)
        self.normalizer = build_normalizer(normalizer, num_heads, alpha_init)
        self.beam_size = 1
        self.skip_embed_dim_check = False
        self.keep_attention = False  # when True, the last probabilities are kept for analysis
        self.last_attention: Optional[Tensor] = None
        self._incremental_state_id = str(uuid.uuid4())
        self.reset_parameters()

    def reset_parameters(self) -> None:
        """fairseq's initialisation (scaled Xavier for q, k, v when they share a size)."""
        gain = 1 / math.sqrt(2) if self.qkv_same_dim else 1.0
        for proj in (self.k_proj, self.v_proj, self.q_proj):
            nn.init.xavier_uniform_(proj.weight, gain=gain)
        nn.init.xavier_uniform_(self.out_proj.weight)
        if self.out_proj.bias is not None:
            nn.init.constant_(self.out_proj.bias, 0.0)

    @property
    def alpha(self) -> Optional[Tensor]:
        """α per head (None for softmax)."""
        alpha = self.normalizer.alpha
        if alpha is not None and alpha.dim() == 0:
            alpha = alpha.expand(self.num_heads)
        return alpha

    # -- fairseq's incremental-state protocol -------------------------------------------
    def _state_key(self) -> str:
        return f"{self._incremental_state_id}.attn_state"

    def _get_input_buffer(self, incremental_state: Optional[IncrementalState]) -> Dict[str, Optional[Tensor]]:
        if incremental_state is None:
            return {}
        return incremental_state.get(self._state_key(), None) or {}

    def _set_input_buffer(self, incremental_state: Optional[IncrementalState],
                          buffer: Dict[str, Optional[Tensor]]) -> Optional[IncrementalState]:
        if incremental_state is not None:
            incremental_state[self._state_key()] = buffer
        return incremental_state

    def reorder_incremental_state(self, incremental_state: Optional[IncrementalState],
                                  new_order: Tensor) -> Optional[IncrementalState]:
        """Reorder cached keys/values along the batch for beam search."""
        buffer = self._get_input_buffer(incremental_state)
        for name, value in list(buffer.items()):
            if value is None:
                continue
            if self.encoder_decoder_attention:
                if value.size(0) * self.beam_size == new_order.size(0):
                    return incremental_state  # keys shared across the beam stay as they are
                if self.beam_size > 1:
                    order = new_order.reshape(-1, self.beam_size)[:, 0] // self.beam_size
                    buffer[name] = value.index_select(0, order)
                    continue
            buffer[name] = value.index_select(0, new_order)
        return self._set_input_buffer(incremental_state, buffer)

    def set_beam_size(self, beam_size: int) -> None:
        self.beam_size = beam_size

    # -- forward ---------------------------------------------------------------------------
    def forward(self, query: Tensor, key: Optional[Tensor], value: Optional[Tensor],
                key_padding_mask: Optional[Tensor] = None,
                incremental_state: Optional[IncrementalState] = None,
                need_weights: bool = True, static_kv: bool = False,
                attn_mask: Optional[Tensor] = None, before_softmax: bool = False,
                need_head_weights: bool = False) -> Tuple[Tensor, Optional[Tensor]]:
        """query (tgt, bsz, embed); key/value (src, bsz, kdim); key_padding_mask (bsz, src),
        true at pads; attn_mask (tgt, src) additive (−inf to forbid). Returns the output and,
        if asked, the weights (heads, bsz, tgt, src) or their mean over heads."""
        need_weights = need_weights or need_head_weights
        tgt_len, bsz, embed_dim = query.size()
        if not self.skip_embed_dim_check and embed_dim != self.embed_dim:
            raise ValueError(f"query has {embed_dim} channels, expected {self.embed_dim}")
        saved_state = None
        if incremental_state is not None:
            saved_state = self._get_input_buffer(incremental_state)
            if "prev_key" in saved_state and static_kv:
                key = value = None  # encoder keys are cached
        q = self.q_proj(query) * self.scaling
        k: Optional[Tensor] = None
        v: Optional[Tensor] = None
        if self.self_attention:
            k, v = self.k_proj(query), self.v_proj(query)
        elif self.encoder_decoder_attention:
            if key is not None:  # keys and values both come from the encoder output
                if self.beam_size > 1 and bsz == key.size(1):  # one copy per beam is enough
                    key = key.view(key.size(0), -1, self.beam_size, key.size(2))[:, :, 0]
                    if key_padding_mask is not None:
                        key_padding_mask = key_padding_mask.view(
                            -1, self.beam_size, key_padding_mask.size(1))[:, 0]
                k, v = self.k_proj(key), self.v_proj(key)
        else:
            k, v = self.k_proj(key), self.v_proj(value)
        q = q.contiguous().view(tgt_len, bsz * self.num_heads, self.head_dim).transpose(0, 1)
        kv_bsz = bsz if k is None else k.size(1)
        if k is not None:
            k = k.contiguous().view(-1, kv_bsz * self.num_heads, self.head_dim).transpose(0, 1)
            v = v.contiguous().view(-1, kv_bsz * self.num_heads, self.head_dim).transpose(0, 1)
        if saved_state is not None:
            k, v, key_padding_mask, kv_bsz = self._update_cache(
                incremental_state, saved_state, k, v, key_padding_mask, static_kv)
        src_len = k.size(1)
        if key_padding_mask is not None and key_padding_mask.dim() == 0:
            key_padding_mask = None

        heads = self.num_heads
        fused = None if before_softmax else self._fused_path(
            q, k, v, key_padding_mask, attn_mask, bsz, kv_bsz, tgt_len, need_weights)
        if fused is not None:
            out, weights = fused
            if weights is not None and not need_head_weights:
                weights = weights.mean(dim=0)
            return self.out_proj(out), weights
        if self.encoder_decoder_attention and bsz != kv_bsz:
            scores = torch.einsum("bxhtd,bhsd->bxhts", q.view((kv_bsz, -1, heads) + q.size()[1:]),
                                  k.view((kv_bsz, heads) + k.size()[1:]))
            scores = scores.reshape(bsz * heads, tgt_len, src_len)
        else:
            scores = torch.bmm(q, k.transpose(1, 2))
        if attn_mask is not None:
            scores = scores + attn_mask.unsqueeze(0)
        scores = scores.view(bsz, heads, tgt_len, src_len)
        if key_padding_mask is not None:
            pad = key_padding_mask.to(torch.bool).view(kv_bsz, 1, 1, 1, src_len)
            scores = scores.view(kv_bsz, -1, heads, tgt_len, src_len).masked_fill(pad, float("-inf"))
            scores = scores.view(bsz, heads, tgt_len, src_len)
        if before_softmax:
            return scores.view(bsz * heads, tgt_len, src_len), v

        probs_float = self.normalizer(scores)  # float32, (bsz, heads, tgt, src)
        if self.keep_attention:
            self.last_attention = probs_float.detach()
        probs = F.dropout(probs_float.type_as(scores), p=self.dropout, training=self.training)
        if self.encoder_decoder_attention and bsz != kv_bsz:
            attn = torch.einsum("bxhts,bhsd->bxhtd", probs.view(kv_bsz, -1, heads, tgt_len, src_len),
                                v.view((kv_bsz, heads) + v.size()[1:]))
            attn = attn.reshape(bsz * heads, tgt_len, self.head_dim)
        else:
            attn = torch.bmm(probs.view(bsz * heads, tgt_len, src_len), v)
        attn = attn.transpose(0, 1).contiguous().view(tgt_len, bsz, self.embed_dim)
        attn = self.out_proj(attn)
        weights = None
        if need_weights:
            weights = probs_float.transpose(1, 0)
            if not need_head_weights:
                weights = weights.mean(dim=0)
        return attn, weights

    # -- the fused kernel ----------------------------------------------------------------
    def _fused_reason(self, q: Tensor, k: Tensor, v: Tensor, attn_mask: Optional[Tensor]
                      ) -> Optional[str]:
        """Why this call takes the materialised path (None: the fused kernel runs); the
        reason is said once when the kernel was expected (CUDA) or forced."""
        mode = kernel_mode()
        if mode == "off" or self.normalizer.name == "softmax":
            return "off"
        if mode == "auto" and not q.is_cuda:
            return "cpu"
        if self.keep_attention:
            return "attention probabilities kept for analysis"
        if attn_mask is not None and not _is_future_mask(attn_mask, q.size(1), k.size(1)):
            return "an attn_mask other than the causal one"
        from .kernels import kernel_unavailable_reason
        return kernel_unavailable_reason(q, k, v)

    def _fused_path(self, q, k, v, key_padding_mask, attn_mask, bsz, kv_bsz, tgt_len,
                    need_weights: bool) -> Optional[Tuple[Tensor, Optional[Tensor]]]:
        """Attention through :func:`sparse_seq2seq.kernels.fused_attention`: the output
        (tgt, bsz, embed) before the output projection and, with ``need_weights``, the
        probabilities (heads, bsz, tgt, src) from the kernel's τ, without gradient; None when
        the materialised path must run."""
        reason = self._fused_reason(q, k, v, attn_mask)
        if reason is not None:
            if reason not in ("off", "cpu"):
                _say_once(reason)
            return None
        from .kernels.attention import fused_attention
        heads, dim = self.num_heads, self.head_dim
        # beams sharing encoder keys: stack the beam's queries along the query axis
        q4 = q.view(kv_bsz, bsz // kv_bsz, heads, tgt_len, dim).transpose(1, 2)
        q4 = q4.reshape(kv_bsz, heads, -1, dim)
        k4, v4 = k.view(kv_bsz, heads, -1, dim), v.view(kv_bsz, heads, -1, dim)
        alpha = self.normalizer.alpha
        if alpha.dim() == 0:
            alpha = float(alpha)
        kpm = key_padding_mask.to(torch.bool) if key_padding_mask is not None else None
        record = getattr(self.normalizer, "record_density", False) and self.training
        causal = attn_mask is not None
        out, stats = fused_attention(q4, k4, v4, alpha, kpm, causal=causal, scale=1.0,
                                     with_stats=True, check_alpha=False, check_inputs=False,
                                     dropout=self.dropout if self.training else 0.0)
        if record:
            self.normalizer.last_density = stats.density()
        out = out.view(kv_bsz, heads, bsz // kv_bsz, tgt_len, dim).transpose(1, 2)
        out = out.reshape(bsz * heads, tgt_len, dim).transpose(0, 1).reshape(
            tgt_len, bsz, self.embed_dim)
        weights = None
        if need_weights:
            weights = stats.weights(q4, k4, kpm, causal)  # (kv_bsz, heads, beam·tgt, src)
            weights = weights.view(kv_bsz, heads, bsz // kv_bsz, tgt_len, -1).transpose(1, 2)
            weights = weights.reshape(bsz, heads, tgt_len, -1).transpose(0, 1)
        return out, weights

    def _update_cache(self, incremental_state, saved_state, k, v, key_padding_mask, static_kv):
        """Append this step's keys/values (and padding mask) to the cache and return all."""
        kv_bsz = k.size(0) // self.num_heads if k is not None else None
        if "prev_key" in saved_state:
            prev_key = saved_state["prev_key"]
            kv_bsz = prev_key.size(0)
            prev_key = prev_key.view(kv_bsz * self.num_heads, -1, self.head_dim)
            prev_value = saved_state["prev_value"].view(kv_bsz * self.num_heads, -1, self.head_dim)
            if static_kv:
                k, v = prev_key, prev_value
            else:
                k, v = torch.cat([prev_key, k], dim=1), torch.cat([prev_value, v], dim=1)
        key_padding_mask = _append_padding_mask(key_padding_mask, saved_state.get("prev_key_padding_mask"),
                                                kv_bsz, k.size(1), static_kv)
        saved_state["prev_key"] = k.view(kv_bsz, self.num_heads, -1, self.head_dim)
        saved_state["prev_value"] = v.view(kv_bsz, self.num_heads, -1, self.head_dim)
        saved_state["prev_key_padding_mask"] = key_padding_mask
        self._set_input_buffer(incremental_state, saved_state)
        return k, v, key_padding_mask, kv_bsz


def _append_padding_mask(mask: Optional[Tensor], prev: Optional[Tensor], batch: int,
                         src_len: int, static_kv: bool) -> Optional[Tensor]:
    """Padding mask (batch, src_len) for cached keys: previous steps, then this one."""
    if prev is not None and static_kv:
        return prev
    if prev is None and mask is None:
        return None
    device = (prev if prev is not None else mask).device
    prev = prev.bool() if prev is not None else torch.zeros(batch, src_len - mask.size(1),
                                                            dtype=torch.bool, device=device)
    mask = mask.bool() if mask is not None else torch.zeros(batch, src_len - prev.size(1),
                                                            dtype=torch.bool, device=device)
    return torch.cat([prev, mask], dim=1)


_FUTURE_MASKS = TensorMemo()


def _is_future_mask(mask: Tensor, tgt_len: int, src_len: int) -> bool:
    """Whether ``mask`` is fairseq's causal mask: (T, T), −inf above the diagonal, 0 elsewhere
    (compared once per mask, see :mod:`.tensor_memo`)."""
    if mask.shape != (tgt_len, src_len) or tgt_len != src_len or not mask.is_floating_point():
        return False

    def compare() -> bool:
        future = torch.ones(tgt_len, src_len, dtype=torch.bool, device=mask.device).triu_(1)
        return bool((torch.isneginf(mask) == future).all()) and bool((mask[~future] == 0).all())

    return _FUTURE_MASKS.get(mask, None, compare)
