"""Fused α-entmax attention, O(T) memory, with gradients in q, k, v and α.

``sparse_attention(q, k, v, alpha)`` computes, for every query row i of every head h,
o_i = Σ_j p_ij v_j with p_i = α_h-entmax(scale · q_i kᵀ) (Correia, Niculae & Martins 2019,
eq. 1 with π = α-entmax), through the Triton kernels of :mod:`._triton_attention` when they
apply and through the materialised path (scores → :mod:`sparse_seq2seq.mappings` → p v)
otherwise. Causal masking is aligned bottom-right: query i sees keys j ≤ i + Tk − Tq.
"""
from __future__ import annotations

import importlib
import os
from types import SimpleNamespace
from typing import NamedTuple, Optional, Tuple, Union

import torch
from torch import Tensor

from ..mappings import entmax15, entmax_bisect, sparsemax
from .launch import launch_config

Alpha = Union[float, Tensor]
HEAD_DIMS = (32, 64, 128)
DTYPES = (torch.float32, torch.float16, torch.bfloat16)
MAX_ITER = 30
START_ITER = 12  # Newton steps, in registers, for the start τ₀ (per key column, the top two scores)
STEP_TOL = 4 * torch.finfo(torch.float32).eps
LIVE_MARGIN = 1e-4  # a key block is kept if some entry is within this of the support at the lower bracket
# A sweep forms the output when every searching row had |Σp − 1| below this in the sweep
# before, by kernel kind (general α, sparsemax, 1.5-entmax): sparsemax's Newton lands on the
# exact τ once the support is right, 1.5-entmax's converges quadratically from further off
# (set from the tile counts of benchmarks/bench_sweeps.py)
PREDICT_TOL = {0: 1e-2, 1: 1e-1, 2: 3e-3}

_KERNELS = {}


def interpreting() -> bool:
    """True when Triton kernels run through the interpreter (CPU tensors)."""
    return os.environ.get("TRITON_INTERPRET", "0") == "1"


def _kernels():
    """The Triton kernels (streamed and row-resident) as one namespace, imported on first use
    (None, reason when triton is missing)."""
    if "module" not in _KERNELS:
        try:
            parts = [importlib.import_module(f"{__package__}.{name}")
                     for name in ("_triton_attention", "_triton_resident")]
            _KERNELS["module"] = SimpleNamespace(**{k: v for part in parts
                                                    for k, v in vars(part).items()})
            _KERNELS["error"] = None
        except ImportError as err:  # triton not installed
            _KERNELS["module"], _KERNELS["error"] = None, f"triton cannot be imported ({err})"
    return _KERNELS["module"]


def kernel_unavailable_reason(q: Tensor, k: Tensor, v: Tensor) -> Optional[str]:
    """Why the fused kernel cannot run on these inputs, or None when it can."""
    if q.device.type == "cuda":
        pass
    elif q.device.type == "cpu":
        if not interpreting():
            return "tensors are on the CPU (the kernel runs on CUDA, or on CPU with TRITON_INTERPRET=1)"
    else:
        return f"device {q.device.type} is not supported"
    if q.size(-1) not in HEAD_DIMS:
        return f"head dim {q.size(-1)} is not one of {HEAD_DIMS}"
    if q.dtype not in DTYPES or k.dtype != q.dtype or v.dtype != q.dtype:
        return f"dtype {q.dtype} (q), {k.dtype} (k), {v.dtype} (v) is not one of float32/16, bfloat16"
    if _kernels() is None:
        return _KERNELS["error"]
    # NaN and ±inf need no look (no device sync): the kernels apply the library's rule
    return None


def kernel_applies(q: Tensor, k: Tensor, v: Tensor) -> bool:
    return kernel_unavailable_reason(q, k, v) is None


def _check(q: Tensor, k: Tensor, v: Tensor, key_padding_mask: Optional[Tensor]) -> None:
    if q.dim() != 4 or k.dim() != 4 or v.dim() != 4:
        raise ValueError(f"q, k, v must be (batch, heads, length, head_dim); got {tuple(q.shape)}, "
                         f"{tuple(k.shape)}, {tuple(v.shape)}")
    if k.shape != v.shape or q.shape[:2] != k.shape[:2] or q.size(-1) != k.size(-1):
        raise ValueError(f"q {tuple(q.shape)}, k {tuple(k.shape)} and v {tuple(v.shape)} do not agree")
    if q.size(2) < 1 or k.size(2) < 1:
        raise ValueError("query and key lengths must be at least 1")
    if key_padding_mask is not None and key_padding_mask.shape != (k.size(0), k.size(2)):
        raise ValueError(f"key_padding_mask must be (batch, key_len) = {(k.size(0), k.size(2))}, "
                         f"got {tuple(key_padding_mask.shape)}")


def _alpha_per_head(alpha: Alpha, heads: int, device: torch.device,
                    check: bool = True) -> Tuple[Tensor, Optional[float]]:
    """α as a float32 (heads,) tensor and, for a float α, the float itself."""
    if isinstance(alpha, Tensor):
        if alpha.dim() == 0:
            alpha = alpha.expand(heads)
        if alpha.shape != (heads,):
            raise ValueError(f"alpha must be a float or a tensor of {heads} values (one per head), "
                             f"got shape {tuple(alpha.shape)}")
        with torch.no_grad():
            if check and not bool(((alpha > 1) & (alpha <= 2)).all()):
                raise ValueError(f"alpha must lie in (1, 2], got {alpha.detach().cpu().tolist()}")
        return alpha.to(device=device, dtype=torch.float32), None
    alpha = float(alpha)
    if not 1 < alpha <= 2:
        raise ValueError(f"alpha must lie in (1, 2], got {alpha}")
    return torch.full((heads,), alpha, device=device), alpha


def _causal_mask(tq: int, tk: int, device: torch.device) -> Tensor:
    """True where query i may not see key j (j > i + tk − tq)."""
    i = torch.arange(tq, device=device)[:, None]
    j = torch.arange(tk, device=device)[None, :]
    return j > i + (tk - tq)


def masked_scores(q: Tensor, k: Tensor, key_padding_mask: Optional[Tensor], causal: bool,
                  scale: float) -> Tensor:
    """float32 scores (batch, heads, Tq, Tk), −inf at padded and future keys."""
    scores = torch.matmul(q.float(), k.float().transpose(-1, -2)) * scale
    if key_padding_mask is not None:
        scores = scores.masked_fill(key_padding_mask.bool()[:, None, None, :], float("-inf"))
    if causal:
        scores = scores.masked_fill(_causal_mask(q.size(2), k.size(2), q.device), float("-inf"))
    return scores


def _dropout_rate(dropout: float) -> float:
    rate = float(dropout)
    if not 0.0 <= rate < 1.0:
        raise ValueError(f"dropout must lie in [0, 1), got {dropout}")
    return rate


def materialised_attention(q: Tensor, k: Tensor, v: Tensor, alpha: Alpha,
                           key_padding_mask: Optional[Tensor] = None, causal: bool = False,
                           scale: Optional[float] = None, dropout: float = 0.0) -> Tensor:
    """The reference: scores (batch, heads, Tq, Tk) → the library's mapping → p v (with
    ``dropout``, torch's dropout on p)."""
    _check(q, k, v, key_padding_mask)
    scale = q.size(-1) ** -0.5 if scale is None else float(scale)
    scores = masked_scores(q, k, key_padding_mask, causal, scale)
    if isinstance(alpha, Tensor):
        heads = q.size(1)
        a = alpha.expand(heads) if alpha.dim() == 0 else alpha
        probs = entmax_bisect(scores, a.float().view(1, heads, 1, 1), dim=-1)
    elif float(alpha) == 2.0:
        probs = sparsemax(scores, dim=-1)
    elif float(alpha) == 1.5:
        probs = entmax15(scores, dim=-1)
    else:
        probs = entmax_bisect(scores, float(alpha), dim=-1)
    if _dropout_rate(dropout) > 0:
        probs = torch.nn.functional.dropout(probs, dropout)
    return torch.matmul(probs, v.float()).to(q.dtype)


def _kind(alpha_float: Optional[float], module) -> int:
    if alpha_float == 2.0:
        return module.KIND_SPARSEMAX
    if alpha_float == 1.5:
        return module.KIND_ENTMAX15
    return module.KIND_GENERAL


def _streamed(cfg: dict) -> dict:
    """The streamed kernels' launch options (tile sizes, warps) from a launch config."""
    return {key: value for key, value in cfg.items() if key not in ("resident", "resident_dq")}


def launch_forward(q: Tensor, k: Tensor, v: Tensor, alpha: Tensor, key_padding_mask: Optional[Tensor],
                   causal: bool, scale: float, kind: int,
                   start_iter: int = START_ITER, predict_tol: Optional[float] = None,
                   resident: Optional[bool] = None, dropout: Tuple[float, int] = (0.0, 0)):
    """Run the forward kernel on contiguous q, k, v; returns (out, rows, blocks, kpm, cfg).
    ``dropout``: (rate, seed) of attention dropout (:func:`dropout_mask`).

    rows: float32 per-row ``thresh`` (τ + m), ``norm`` (Σp), ``support`` and ``keys`` counts;
    ``tiles`` (float32 (programs, 2): the q kᵀ and p v products each program computed, in
    units of one (BM × BN) tile); ``live`` (the blocks the forward still visited at its end).
    blocks: the int8 mask (batch·heads, query blocks, key blocks) of blocks holding support;
    kpm: the int8 padding; cfg: the tile sizes, with ``resident`` the row-resident forward's
    (or None) and ``resident_dq`` whether the backward's dq kernel is resident too.
    ``resident=False``: the streamed kernel; otherwise the row-resident kernels whenever a row
    fits (:func:`.launch.resident_config`). ``start_iter=0, predict_tol=0`` turn off the
    streamed kernel's start from the per-column top scores and its output in the last Newton
    sweep (the benchmarks' baseline)."""
    mod = _kernels()
    batch, heads, tq, dim = q.shape
    tk = k.size(2)
    cfg = launch_config(q.device.type, q.dtype, dim, tq, tk, resident is not False)
    n_qb, n_kb = -(-tq // cfg["BM"]), -(-tk // cfg["BN"])
    out = torch.empty_like(q)
    thresh = torch.empty(batch * heads * tq, device=q.device, dtype=torch.float32)
    norm, support, keys = torch.empty_like(thresh), torch.empty_like(thresh), torch.empty_like(thresh)
    blocks = torch.zeros(batch * heads, n_qb, n_kb, device=q.device, dtype=torch.int8)
    kpm = (key_padding_mask.to(torch.int8).contiguous() if key_padding_mask is not None
           else torch.zeros(1, device=q.device, dtype=torch.int8))
    flags = dict(D=dim, KIND=kind, HAS_KPM=key_padding_mask is not None, CAUSAL=bool(causal),
                 PREC=_precision(q), MAX_ITER=MAX_ITER, **_dropout_args(dropout))
    if cfg["resident"] is not None:
        res = cfg["resident"]
        n_rb = -(-tq // res["RBM"])
        mod.attention_fwd_resident[(n_rb * batch * heads,)](
            q, k, v, out, alpha, kpm, thresh, norm, support, keys, blocks,
            heads, tq, tk, n_rb, n_qb, n_kb, scale, STEP_TOL, BM=cfg["BM"], BN=cfg["BN"],
            **flags, **res)
        products = res["RBM"] * res["TKP"] / (cfg["BM"] * cfg["BN"])
        tiles = torch.full((n_rb * batch * heads, 2), products, device=q.device)
        live = blocks
    else:
        live = torch.empty_like(blocks)
        tiles = torch.empty(batch * heads * n_qb, 2, device=q.device, dtype=torch.int32)
        mod.attention_fwd[(n_qb * batch * heads,)](
            q, k, v, out, alpha, kpm, thresh, norm, support, keys, live, blocks, tiles,
            heads, tq, tk, n_qb, n_kb, scale, STEP_TOL, LIVE_MARGIN,
            PREDICT_TOL[kind] if predict_tol is None else predict_tol,
            START_ITER=start_iter, **flags, **_streamed(cfg))
        tiles = tiles.float()
    rows = dict(thresh=thresh, norm=norm, support=support, keys=keys, tiles=tiles, live=live)
    return out, rows, blocks, kpm, cfg


def _dropout_args(dropout: Tuple[float, int]) -> dict:
    rate, seed = dropout
    return dict(rate=float(rate), seed=int(seed), DROPOUT=rate > 0)


def dropout_mask(shape: Tuple[int, int, int, int], rate: float, seed: int,
                 device: torch.device) -> Tensor:
    """The attention-dropout scale M/(1 − r) (batch, heads, Tq, Tk), float32, that the kernels
    apply for (rate, seed): Philox draws keyed by (seed + batch·head, i·Tk + j), so the
    forward and every backward kernel regenerate the same mask without storing it."""
    batch, heads, tq, tk = shape
    out = torch.empty(batch * heads, tq, tk, device=device)
    size = 16
    n_qb, n_kb = -(-tq // size), -(-tk // size)
    _kernels().attention_dropout_mask[(batch * heads * n_qb * n_kb,)](
        out, tq, tk, n_qb, n_kb, int(seed), float(rate), BM=size, BN=size)
    return out.view(batch, heads, tq, tk)


def _precision(q: Tensor) -> str:
    """IEEE float32 products for float32 inputs (no TF32 rounding); tensor cores for half."""
    return "ieee" if q.dtype == torch.float32 else "tf32"


class SparseAttentionFunction(torch.autograd.Function):
    """Fused forward and backward; α a float32 (heads,) tensor (grad when it requires one)."""

    @staticmethod
    def forward(ctx, q: Tensor, k: Tensor, v: Tensor, alpha: Tensor, key_padding_mask: Optional[Tensor],
                causal: bool, scale: float, alpha_float: Optional[float],
                dropout: Tuple[float, int] = (0.0, 0)) -> Tensor:
        q, k, v = q.contiguous(), k.contiguous(), v.contiguous()
        alpha = alpha.detach().contiguous()
        kind = _kind(alpha_float, _kernels())
        out, rows, blocks, kpm, cfg = launch_forward(q, k, v, alpha, key_padding_mask, causal,
                                                     scale, kind, dropout=dropout)
        ctx.save_for_backward(q, k, v, alpha, kpm, rows["thresh"], rows["norm"], blocks)
        ctx.meta = (scale, kind, key_padding_mask is not None, bool(causal), _precision(q), cfg,
                    dropout)
        extras = (rows["support"], rows["keys"], rows["thresh"], rows["norm"])
        ctx.mark_non_differentiable(*extras)
        return (out,) + extras

    @staticmethod
    def backward(ctx, grad_out: Tensor, *_grad_rows):
        mod = _kernels()
        q, k, v, alpha, kpm, thresh, norm, blocks = ctx.saved_tensors
        scale, kind, has_kpm, causal, prec, cfg, dropout = ctx.meta
        batch, heads, tq, dim = q.shape
        tk = k.size(2)
        n_qb, n_kb = blocks.shape[1:]
        grad_out = grad_out.contiguous().to(q.dtype)
        dq, dk, dv = torch.empty_like(q), torch.empty_like(k), torch.empty_like(v)
        crow = torch.empty_like(thresh)
        need_alpha = bool(ctx.needs_input_grad[3])
        galpha = torch.zeros_like(thresh) if need_alpha else crow
        flags = dict(D=dim, KIND=kind, HAS_KPM=has_kpm, CAUSAL=causal, PREC=prec,
                     **_dropout_args(dropout))
        common = dict(flags, **_streamed(cfg))
        if cfg["resident_dq"]:
            n_rb = -(-tq // cfg["resident"]["RBM"])
            mod.attention_bwd_dq_resident[(n_rb * batch * heads,)](
                q, k, v, grad_out, dq, alpha, kpm, thresh, norm, crow, galpha,
                heads, tq, tk, n_rb, scale, NEED_ALPHA=need_alpha, **flags, **cfg["resident"])
        else:
            mod.attention_bwd_dq[(n_qb * batch * heads,)](
                q, k, v, grad_out, dq, alpha, kpm, thresh, norm, blocks, crow, galpha,
                heads, tq, tk, n_qb, n_kb, scale, NEED_ALPHA=need_alpha, **common)
        mod.attention_bwd_dkdv[(n_kb * batch * heads,)](
            q, k, v, grad_out, dk, dv, alpha, kpm, thresh, norm, blocks, crow,
            heads, tq, tk, n_qb, n_kb, scale, **common)
        grad_alpha = galpha.view(batch, heads, tq).sum((0, 2)) if need_alpha else None
        return dq, dk, dv, grad_alpha, None, None, None, None, None


def fused_attention(q: Tensor, k: Tensor, v: Tensor, alpha: Alpha,
                    key_padding_mask: Optional[Tensor] = None, causal: bool = False,
                    scale: Optional[float] = None, with_stats: bool = False,
                    check_alpha: bool = True, dropout: float = 0.0, seed: Optional[int] = None,
                    check_inputs: bool = True):
    """The Triton path only; raises when it does not apply (see :func:`kernel_unavailable_reason`).
    With ``with_stats``, returns (out, :class:`RowStats`). ``check_alpha=False`` skips the
    range check of a tensor α (a device sync) for callers that guarantee it;
    ``check_inputs=False`` skips :func:`kernel_unavailable_reason` for callers that have just
    asked it about these q, k, v (NaN and ±inf inputs are no reason: the kernels apply the
    rule of :mod:`sparse_seq2seq.nonfinite`, with no device sync). ``dropout``:
    attention dropout rate (the weights p ⊙ M/(1 − r), :func:`dropout_mask`), its mask drawn
    from ``seed`` (default: from torch's CPU generator, so ``torch.manual_seed`` fixes it)."""
    _check(q, k, v, key_padding_mask)
    rate = _dropout_rate(dropout)
    reason = kernel_unavailable_reason(q, k, v) if check_inputs else None
    if reason is not None:
        raise RuntimeError(f"the fused attention kernel does not apply: {reason}")
    if rate > 0 and seed is None:
        seed = int(torch.randint(0, 2 ** 30, ()))
    scale = q.size(-1) ** -0.5 if scale is None else float(scale)
    alpha_heads, alpha_float = _alpha_per_head(alpha, q.size(1), q.device, check_alpha)
    if key_padding_mask is not None:
        key_padding_mask = key_padding_mask.to(q.device)
    out, *rows = SparseAttentionFunction.apply(q, k, v, alpha_heads, key_padding_mask, causal,
                                               scale, alpha_float, (rate, seed or 0))
    if not with_stats:
        return out
    return out, RowStats(*(r.view(q.shape[:3]) for r in rows), alpha_heads.detach(), scale)


class RowStats(NamedTuple):
    """What the forward kernel keeps per query row (batch, heads, Tq), float32: support size,
    unmasked keys, τ (in score units) and Σ p before normalisation; α per head; the scale."""

    support: Tensor
    keys: Tensor
    thresh: Tensor
    norm: Tensor
    alpha: Tensor
    scale: float

    def density(self) -> Tensor:
        """Per head, the mean over rows with keys of the share of unmasked keys in the support."""
        live = self.keys > 0
        share = torch.where(live, self.support / self.keys.clamp(min=1),
                            torch.zeros((), device=self.keys.device))
        return share.sum(dim=(0, 2)) / live.sum(dim=(0, 2)).clamp(min=1)

    def weights(self, q: Tensor, k: Tensor, key_padding_mask: Optional[Tensor] = None,
                causal: bool = False) -> Tensor:
        """The attention probabilities (batch, heads, Tq, Tk), float32, without gradient:
        p = [1 + (α−1)(s − τ)]_+^{1/(α−1)} / Σ p from the kept τ (no threshold search)."""
        with torch.no_grad():
            scores = masked_scores(q, k, key_padding_mask, causal, self.scale)
            am1 = (self.alpha - 1).view(1, -1, 1, 1)
            thresh = self.thresh[..., None]  # +inf rows: 0 on their +inf scores, as the kernels
            shift = torch.where(scores == thresh, 0.0, scores - thresh)
            base = (1 + am1 * shift).clamp_(min=0)
            p = base.pow_(1 / am1)
            live = (self.norm > 0) | self.thresh.isnan()  # NaN rows stay NaN
            return p.div_(torch.where(live, self.norm, 1.0)[..., None]).masked_fill_(
                ~live[..., None], 0.0)


def sparse_attention(q: Tensor, k: Tensor, v: Tensor, alpha: Alpha,
                     key_padding_mask: Optional[Tensor] = None, causal: bool = False,
                     scale: Optional[float] = None, dropout: float = 0.0) -> Tensor:
    """α-entmax attention: q (B, H, Tq, D), k/v (B, H, Tk, D); ``alpha`` a float in (1, 2] or a
    (H,) tensor, one α per head (differentiable); key_padding_mask (B, Tk), True = pad;
    ``dropout`` the attention-dropout rate (pass 0 outside training). Fused kernel where it
    applies (CUDA, head dim 32/64/128), materialised path otherwise."""
    _check(q, k, v, key_padding_mask)
    if kernel_applies(q, k, v):
        return fused_attention(q, k, v, alpha, key_padding_mask, causal, scale, dropout=dropout,
                               check_inputs=False)
    return materialised_attention(q, k, v, alpha, key_padding_mask, causal, scale, dropout)
