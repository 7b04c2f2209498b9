"""Backward passes shared by the eager and the fused (compiled) mappings.

For p = π_α(x), the Jacobian is diag(s) − s sᵀ/Σs with s = p^{2−α} (Correia, Niculae & Martins
2019, eq. 10), and ∂p/∂α has the closed form of their Proposition 1.
"""
from __future__ import annotations

import torch


def jacobian_vector(p_slope: torch.Tensor, grad: torch.Tensor, dim: int) -> torch.Tensor:
    """(diag(s) − s sᵀ/Σs) g for s = p^{2−α}."""
    weighted = grad * p_slope
    total = p_slope.sum(dim, keepdim=True)
    mean = weighted.sum(dim, keepdim=True) / total.clamp_min(torch.finfo(grad.dtype).tiny)
    return weighted.sub_(p_slope * mean)


def alpha_gradient(p: torch.Tensor, log_p: torch.Tensor, slope: torch.Tensor, grad: torch.Tensor,
                   am1: torch.Tensor, dim: int) -> torch.Tensor:
    """gᵀ ∂p/∂α with ∂p/∂α = (p − p̃)/(α−1)² + (h − p̃ Σh)/(α−1), h = −p log p,
    p̃ = p^{2−α}/Σ p^{2−α} (Correia et al. 2019, Prop. 1); near α = 1 its limit
    −½ (diag(p) − p pᵀ) log² p, the derivative of softmax-entmax at α = 1."""
    skewed = slope / slope.sum(dim, keepdim=True).clamp_min(torch.finfo(p.dtype).tiny)
    g_p = (grad * p).sum(dim, keepdim=True)
    g_skewed = (grad * skewed).sum(dim, keepdim=True)
    p_log_p = p * log_p
    entropy = -p_log_p.sum(dim, keepdim=True)
    g_h = -(grad * p_log_p).sum(dim, keepdim=True)
    near = 1e-7 if p.dtype == torch.float64 else 1e-4
    safe = torch.where(am1.abs() < near, torch.ones_like(am1), am1)
    closed = (g_p - g_skewed) / safe.square() + (g_h - g_skewed * entropy) / safe
    p_log2 = p_log_p * log_p
    limit = -0.5 * ((grad * p_log2).sum(dim, keepdim=True) - g_p * p_log2.sum(dim, keepdim=True))
    return torch.where(am1.abs() < near, limit, closed)
