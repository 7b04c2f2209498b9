"""SparseMAP over bit vectors, solved by the active-set method, with a closed-form backward.

SparseMAP (Niculae et al., ICML 2018; used for latent bit vectors in Correia et al.,
NeurIPS 2020, §4) returns a sparse distribution ``p`` over structures ``z ∈ {0,1}^D``:

    p* = argmax_{p ∈ Δ} θᵀp − ½‖M p‖²,   θ_z = ηᵀz,   M = [z_1 … z_|Z|]        (paper eq. 6)

so ``μ = M p*`` is the Euclidean projection of ``η`` onto the marginal polytope. Two
polytopes are supported: the cube ``[0,1]^D`` (MAP: ``z_i = [η_i > 0]``) and the budget
polytope ``{μ ∈ [0,1]^D : Σμ ≤ B}`` (MAP: the top-B positive entries).

Two encodings of a structure in the quadratic term: ``bits`` uses ``z`` itself, so μ is the
projection of η (``clip(η, 0, 1)`` on the cube: every bit with η_i ≤ 0 is clipped, with zero
gradient, already at η = 0); ``states`` gives each bit one indicator per state, ``[z; 1 − z]``
(a factor graph of binary variables, as lp-sparsemap's Bernoulli and budget factors do).
Since ``‖[μ; 1 − μ]‖² = 2‖μ‖² − 2·1ᵀμ + D``, the ``states`` problem for η is twice the ``bits``
problem for ``(η + 1) / 2``: same distribution, μ = ``clip((η + 1) / 2, 0, 1)`` on the cube, so
η = 0 means μ = ½ (every bit uncertain) and a bit is clipped only once |η_i| ≥ 1.

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

__all__ = ["ENCODINGS", "SparseMAPResult", "bitvector_map", "sparsemap_bitvector"]


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


def _kkt_solve(gram: Tensor, active: Tensor, rhs_top: Tensor, rhs_bottom: float) -> tuple[Tensor, Tensor]:
    """Solve ``[[Q_S, 1_S], [1_Sᵀ, 0]] [x; t] = [r_S; c]`` for every row of a padded batch.

    ``gram`` (B, C, C) holds Q = M_Sᵀ M_S for the slots; inactive slots get an identity row,
    so their ``x`` is 0.
    """
    bsz, cap = active.shape
    act = active.to(gram.dtype)
    kkt = gram.new_zeros(bsz, cap + 1, cap + 1)
    kkt[:, :cap, :cap] = gram * act.unsqueeze(1) * act.unsqueeze(2) + torch.diag_embed(1 - act)
    kkt[:, :cap, cap] = act
    kkt[:, cap, :cap] = act
    rhs = gram.new_zeros(bsz, cap + 1)
    rhs[:, :cap] = rhs_top * act
    rhs[:, cap] = rhs_bottom
    sol = torch.linalg.solve(kkt, rhs)
    return sol[:, :cap] * act, sol[:, cap]


def _grow(capacity: int, dim: int, gram: Tensor, *tensors: Tensor) -> tuple[int, Tensor, list[Tensor]]:
    """Double the number of slots (at most D + 2): zero-pad the (B, C, C) Gram matrix and the
    per-slot tensors (B, C, ...)."""
    new_cap = min(2 * capacity, dim + 2)
    extra = new_cap - capacity
    gram = torch.cat([gram, gram.new_zeros(gram.shape[0], extra, capacity)], 1)
    gram = torch.cat([gram, gram.new_zeros(gram.shape[0], new_cap, extra)], 2)
    grown = [torch.cat([t, t.new_zeros((t.shape[0], extra) + tuple(t.shape[2:]))], 1) for t in tensors]
    return new_cap, gram, grown


def _active_set(eta: Tensor, budget: Optional[int], max_iter: int, tol: float) -> tuple[Tensor, Tensor, Tensor]:
    """Batched primal active-set method (Nocedal & Wright, Alg. 16.3) for SparseMAP.

    Slots grow on demand up to D + 2 (Carathéodory: at most D + 1 affinely independent vertices,
    +1 while adding), the Gram matrix and slot scores are updated as vertices enter, and each
    iteration solves only the rows that have not converged.
    """
    bsz, dim = eta.shape
    cap = min(8, dim + 2)
    structures = eta.new_zeros(bsz, cap, dim)
    gram = eta.new_zeros(bsz, cap, cap)
    theta = eta.new_zeros(bsz, cap)
    active = torch.zeros(bsz, cap, dtype=torch.bool, device=eta.device)
    probs = eta.new_zeros(bsz, cap)
    first = bitvector_map(eta, budget)
    structures[:, 0], gram[:, 0, 0], theta[:, 0] = first, first.sum(-1), (first * eta).sum(-1)
    active[:, 0] = True
    probs[:, 0] = 1.0
    todo = torch.arange(bsz, device=eta.device)
    for _ in range(max_iter):
        if todo.numel() == 0:
            break
        act, p_old = active[todo], probs[todo]
        target, tau = _kkt_solve(gram[todo], act, theta[todo], 1.0)
        negative = act & (target < -tol)
        blocked = negative.any(dim=1)
        # Rows whose restricted optimum is feasible: move there, then ask the oracle.
        p_new = torch.where(blocked.unsqueeze(1), p_old, target.clamp_min(0.0) * act)
        grad = eta[todo] - (p_new.unsqueeze(-1) * structures[todo]).sum(1)
        vertex = bitvector_map(grad, budget)
        gain = (vertex * grad).sum(-1)
        optimal = ~blocked & (gain <= tau + tol * (1.0 + tau.abs() + grad.abs().sum(-1)))
        add = ~blocked & ~optimal
        # Rows whose restricted optimum leaves the simplex: ratio test, drop the blocking vertex.
        if bool(blocked.any()):
            ratio = p_old / (p_old - target).clamp_min(1e-300)
            ratio = torch.where(negative, ratio, torch.full_like(ratio, float("inf")))
            alpha, block = ratio.min(1)
            moved = (p_old + alpha.clamp(0.0, 1.0).unsqueeze(1) * (target - p_old)) * act
            moved[torch.arange(len(todo), device=eta.device), block] = 0.0
            p_new = torch.where(blocked.unsqueeze(1), moved, p_new)
            act = act.clone()
            act[blocked.nonzero(as_tuple=True)[0], block[blocked]] = False
        probs[todo], active[todo] = p_new, act
        if bool(add.any()):
            rows = todo[add]
            if bool(active[rows].all(1).any()):
                if cap == dim + 2:
                    raise RuntimeError("SparseMAP active set overflowed its capacity")
                cap, gram, (structures, theta, active, probs) = _grow(cap, dim, gram, structures, theta, active, probs)
            slot = (~active[rows]).to(torch.int8).argmax(1)
            new = vertex[add]
            structures[rows, slot] = new
            overlap = (structures[rows] @ new.unsqueeze(-1)).squeeze(-1)  # (n, C)
            gram[rows, slot] = overlap
            gram[rows, :, slot] = overlap
            theta[rows, slot] = (new * eta[rows]).sum(-1)
            active[rows, slot] = True
            probs[rows, slot] = 0.0
        todo = todo[~optimal]
    else:
        if todo.numel():
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
        gram = structures @ structures.transpose(1, 2)
        grad_theta, _ = _kkt_solve(gram, mask, grad_probs.to(torch.float64), 0.0)
        grad_eta = (grad_theta.unsqueeze(-1) * structures).sum(1)
        return grad_eta.to(ctx.out_dtype), None, None, None


ENCODINGS = ("bits", "states")


def sparsemap_bitvector(
    eta: Tensor, budget: Optional[int] = None, max_iter: Optional[int] = None, tol: float = 1e-9,
    encoding: str = "bits",
) -> SparseMAPResult:
    """SparseMAP distribution over ``{0,1}^D`` (optionally ``‖z‖₁ ≤ budget``) for scores ``eta`` (B, D).

    ``encoding`` is the structure vector of the quadratic term: ``bits`` (``z``) or ``states``
    (``[z; 1 − z]``, see the module docstring). Returns a :class:`SparseMAPResult`; ``probs``
    is differentiable w.r.t. ``eta`` (paper eq. 6 and its Jacobian, §4). Solved in float64,
    returned in ``eta``'s dtype.
    """
    if eta.dim() != 2:
        raise ValueError(f"eta must be (batch, D), got shape {tuple(eta.shape)}")
    if budget is not None and budget < 1:
        raise ValueError("budget must be a positive integer")
    if encoding not in ENCODINGS:
        raise ValueError(f"encoding must be one of {ENCODINGS}, got {encoding!r}")
    if encoding == "states":
        eta = (eta + 1) / 2
    iters = max_iter if max_iter is not None else 20 * (eta.shape[1] + 2)
    probs, structures, mask = _SparseMAPBitVector.apply(eta, budget, iters, tol)
    return SparseMAPResult(probs, structures, mask)
