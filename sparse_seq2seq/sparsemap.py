"""SparseMAP over bit vectors, solved by the active-set method, with a closed-form backward.

SparseMAP (Niculae et al., ICML 2018; used for latent bit vectors in Correia et al.,
NeurIPS 2020, §4) returns a sparse distribution ``p`` over structures ``z ∈ {0,1}^D``:

    p* = argmax_{p ∈ Δ} θᵀp − ½‖M p‖²,   θ_z = ηᵀz,   M = [z_1 … z_|Z|]        (paper eq. 6)

so ``μ = M p*`` is the Euclidean projection of ``η`` onto the marginal polytope. Two
polytopes are supported: the cube ``[0,1]^D`` (MAP: ``z_i = [η_i > 0]``) and the budget
polytope ``{μ ∈ [0,1]^D : Σμ ≤ B}`` (MAP: the top-B positive entries).

The active-set solver keeps, per example, a set ``S`` of affinely independent vertices and
solves the KKT system ``[[M_Sᵀ M_S, 1], [1ᵀ, 0]] [p; τ] = [θ_S; 1]`` on it; a vertex is added
when the MAP oracle on ``η − μ`` finds one scoring above ``τ``, and dropped by a ratio test
when its weight would turn negative. All examples of a batch are solved together with
padded active sets. Backward: ``∂p_S/∂θ_S`` is the top-left block of the KKT inverse, and
``∂θ/∂η = M``, so ``∇_η = M_S K⁻¹[g; 0]``.
"""
from __future__ import annotations

from typing import NamedTuple, Optional

import torch
from torch import Tensor

__all__ = ["SparseMAPResult", "bitvector_map", "sparsemap_bitvector"]


class SparseMAPResult(NamedTuple):
    """A sparse distribution over bit vectors, padded to a fixed number of slots.

    ``probs`` (B, C) — probability of each slot (0 on empty slots);
    ``structures`` (B, C, D) — the bit vector in each slot (0/1 floats);
    ``mask`` (B, C) — True where the slot holds a structure with positive probability.
    """

    probs: Tensor
    structures: Tensor
    mask: Tensor


def bitvector_map(scores: Tensor, budget: Optional[int] = None) -> Tensor:
    """MAP oracle: ``argmax_{z ∈ {0,1}^D, ‖z‖₁ ≤ budget} scoresᵀz`` for each row.

    Without a budget this thresholds at zero; with one it keeps the ``budget`` largest
    positive entries.
    """
    positive = scores > 0
    if budget is None or budget >= scores.shape[-1]:
        return positive.to(scores.dtype)
    if budget <= 0:
        return torch.zeros_like(scores)
    top = scores.topk(budget, dim=-1).indices
    chosen = torch.zeros_like(scores, dtype=torch.bool).scatter(-1, top, True)
    return (chosen & positive).to(scores.dtype)


def _kkt_solve(structures: Tensor, active: Tensor, rhs_top: Tensor, rhs_bottom: float) -> tuple[Tensor, Tensor]:
    """Solve ``[[Q_S, 1_S], [1_Sᵀ, 0]] [x; t] = [r_S; c]`` for every row of a padded batch.

    Inactive slots get an identity row, so their ``x`` is 0.
    """
    bsz, cap, _ = structures.shape
    act = active.to(structures.dtype)
    gram = structures @ structures.transpose(1, 2)
    kkt = structures.new_zeros(bsz, cap + 1, cap + 1)
    kkt[:, :cap, :cap] = gram * act.unsqueeze(1) * act.unsqueeze(2) + torch.diag_embed(1 - act)
    kkt[:, :cap, cap] = act
    kkt[:, cap, :cap] = act
    rhs = structures.new_zeros(bsz, cap + 1)
    rhs[:, :cap] = rhs_top * act
    rhs[:, cap] = rhs_bottom
    sol = torch.linalg.solve(kkt, rhs)
    return sol[:, :cap] * act, sol[:, cap]


def _active_set(eta: Tensor, budget: Optional[int], max_iter: int, tol: float) -> tuple[Tensor, Tensor, Tensor]:
    """Batched primal active-set method (Nocedal & Wright, Alg. 16.3) for SparseMAP."""
    bsz, dim = eta.shape
    cap = dim + 2  # Carathéodory: at most D + 1 affinely independent vertices, +1 while adding
    rows = torch.arange(bsz, device=eta.device)
    structures = eta.new_zeros(bsz, cap, dim)
    active = torch.zeros(bsz, cap, dtype=torch.bool, device=eta.device)
    probs = eta.new_zeros(bsz, cap)
    structures[:, 0] = bitvector_map(eta, budget)
    active[:, 0] = True
    probs[:, 0] = 1.0
    done = torch.zeros(bsz, dtype=torch.bool, device=eta.device)
    for _ in range(max_iter):
        if bool(done.all()):
            break
        theta = structures @ eta.unsqueeze(-1)
        target, tau = _kkt_solve(structures, active, theta.squeeze(-1), 1.0)
        negative = active & (target < -tol) & ~done.unsqueeze(1)
        blocked = negative.any(dim=1)
        free = ~done & ~blocked
        # Rows whose restricted optimum is feasible: move there, then ask the oracle.
        probs = torch.where(free.unsqueeze(1), target.clamp_min(0.0) * active, probs)
        mu = (probs.unsqueeze(-1) * structures).sum(1)
        grad = eta - mu
        vertex = bitvector_map(grad, budget)
        gain = (vertex * grad).sum(-1)
        scale = 1.0 + tau.abs() + grad.abs().sum(-1)
        optimal = free & (gain <= tau + tol * scale)
        done = done | optimal
        add = free & ~optimal
        if bool(add.any()):
            empty = ~active
            if bool((add & ~empty.any(1)).any()):
                raise RuntimeError("SparseMAP active set overflowed its capacity")
            slot = empty.to(torch.int8).argmax(1)
            r, s = rows[add], slot[add]
            structures[r, s] = vertex[add]
            active[r, s] = True
            probs[r, s] = 0.0
        # Rows whose restricted optimum leaves the simplex: ratio test, drop the blocking vertex.
        if bool(blocked.any()):
            step_ratio = probs / (probs - target).clamp_min(1e-300)
            step_ratio = torch.where(negative, step_ratio, torch.full_like(step_ratio, float("inf")))
            alpha, block = step_ratio.min(1)
            alpha = alpha.clamp(0.0, 1.0)
            moved = probs + alpha.unsqueeze(1) * (target - probs)
            probs = torch.where(blocked.unsqueeze(1), moved * active, probs)
            r, s = rows[blocked], block[blocked]
            probs[r, s] = 0.0
            active[r, s] = False
    else:
        if not bool(done.all()):
            raise RuntimeError(f"SparseMAP active set did not converge in {max_iter} iterations")
    # Slots that stayed in the active set with zero weight are not part of the support.
    mask = active & (probs > 0)
    probs = probs * mask
    return probs / probs.sum(1, keepdim=True), structures, mask


class _SparseMAPBitVector(torch.autograd.Function):
    """Autograd wrapper: forward by active set, backward by the KKT system on the support."""

    @staticmethod
    def forward(ctx, eta: Tensor, budget: Optional[int], max_iter: int, tol: float):  # type: ignore[override]
        work = eta.detach().to(torch.float64)
        probs, structures, mask = _active_set(work, budget, max_iter, tol)
        ctx.save_for_backward(structures, mask)
        ctx.out_dtype = eta.dtype
        ctx.mark_non_differentiable(structures, mask)
        return probs.to(eta.dtype), structures.to(eta.dtype), mask

    @staticmethod
    def backward(ctx, grad_probs: Tensor, _grad_structures: Tensor, _grad_mask: Tensor):  # type: ignore[override]
        structures, mask = ctx.saved_tensors
        grad_theta, _ = _kkt_solve(structures, mask, grad_probs.to(torch.float64), 0.0)
        grad_eta = (grad_theta.unsqueeze(-1) * structures).sum(1)
        return grad_eta.to(ctx.out_dtype), None, None, None


def sparsemap_bitvector(
    eta: Tensor, budget: Optional[int] = None, max_iter: Optional[int] = None, tol: float = 1e-9
) -> SparseMAPResult:
    """SparseMAP distribution over ``{0,1}^D`` (optionally ``‖z‖₁ ≤ budget``) for scores ``eta`` (B, D).

    Returns a :class:`SparseMAPResult`; ``probs`` is differentiable w.r.t. ``eta``
    (paper eq. 6 and its Jacobian, §4). Solved in float64, returned in ``eta``'s dtype.
    """
    if eta.dim() != 2:
        raise ValueError(f"eta must be (batch, D), got shape {tuple(eta.shape)}")
    if budget is not None and budget < 1:
        raise ValueError("budget must be a positive integer")
    iters = max_iter if max_iter is not None else 20 * (eta.shape[1] + 2)
    probs, structures, mask = _SparseMAPBitVector.apply(eta, budget, iters, tol)
    return SparseMAPResult(probs, structures, mask)
