"""SparseMAP over bit vectors against brute force over all 2^D structures (D <= 6), float64."""
import itertools

import pytest
import torch

from sparse_seq2seq.mappings import sparsemax
from sparse_seq2seq.sparsemap import bitvector_map, sparsemap_bitvector


pytestmark = pytest.mark.usefixtures("float64_default")  # every tensor float64 (conftest.py)


def all_structures(dim, budget=None):
    rows = [r for r in itertools.product((0.0, 1.0), repeat=dim) if budget is None or sum(r) <= budget]
    return torch.tensor(rows)  # (|Z|, D)


def qp_objective(p, structures, eta):
    mu = p @ structures
    return p @ (structures @ eta) - 0.5 * mu @ mu


def simplex_qp(theta, gram, iters):
    """argmax_{p in the simplex} θᵀp − ½ pᵀ G p by accelerated projected gradient."""
    step = 1.0 / torch.linalg.eigvalsh(gram).max()
    p = torch.full((theta.shape[0],), 1.0 / theta.shape[0])
    y, t = p.clone(), 1.0
    for _ in range(iters):
        p_next = sparsemax(y + step * (theta - gram @ y), dim=-1)
        t_next = (1 + (1 + 4 * t * t) ** 0.5) / 2
        y = p_next + (t - 1) / t_next * (p_next - p)
        p, t = p_next, t_next
    return p


def brute_force_qp(eta, budget=None, iters=1500):
    """argmax_{p in simplex over every structure} θᵀp − ½‖Mp‖²."""
    z = all_structures(eta.shape[0], budget)
    return simplex_qp(z @ eta, z @ z.T, iters), z


def cases():
    gen = torch.Generator().manual_seed(0)
    out = []
    for dim in range(1, 7):
        for budget in (None, max(1, dim // 2)):
            for shift in (0.0, 0.5):
                out.append((dim, budget, torch.randn(dim, generator=gen, dtype=torch.float64) + shift))
    return out


@pytest.mark.parametrize("dim,budget,eta", cases())
def test_matches_brute_force_qp(dim, budget, eta):
    res = sparsemap_bitvector(eta.unsqueeze(0), budget=budget)
    probs, structs, mask = res.probs[0], res.structures[0], res.mask[0]
    p, z = probs[mask], structs[mask]
    assert torch.all(p > 0) and torch.allclose(p.sum(), torch.tensor(1.0))
    assert p.numel() <= dim + 1  # Carathéodory
    if budget is not None:
        assert torch.all(z.sum(-1) <= budget)
    ours = p @ (z @ eta) - 0.5 * (p @ z) @ (p @ z)
    ref_p, ref_z = brute_force_qp(eta, budget)
    ref = qp_objective(ref_p, ref_z, eta)
    assert ours >= ref - 1e-9, "active set found a worse point than the full-simplex QP"
    assert ours - ref < 1e-5
    assert torch.allclose(p @ z, ref_p @ ref_z, atol=2e-2)
    # Exact optimality certificate over all structures: zᵀ(η − μ) <= τ, equality on the support.
    mu = p @ z
    scores = all_structures(dim, budget) @ (eta - mu)
    tau = (z @ (eta - mu)).max()
    assert torch.allclose(z @ (eta - mu), tau.expand(p.numel()), atol=1e-9)
    assert scores.max() <= tau + 1e-9


def budget_projection(eta, budget):
    """Euclidean projection onto {μ ∈ [0,1]^D : Σμ <= B}: clip(η − λ, 0, 1), λ >= 0 by bisection."""
    lo, hi = torch.zeros(eta.shape[0], 1), torch.full((eta.shape[0], 1), float(eta.abs().max()) + 2)
    for _ in range(200):
        mid = (lo + hi) / 2
        over = (eta - mid).clamp(0, 1).sum(-1, keepdim=True) > budget
        lo, hi = torch.where(over, mid, lo), torch.where(over, hi, mid)
    return (eta - hi).clamp(0, 1)


@pytest.mark.parametrize("dim,budget", [(8, None), (12, None), (12, 4), (40, None), (40, 10)])
def test_marginals_are_the_projection_with_growing_slots(dim, budget):
    """Beyond brute force: μ = Σ p z must be the Euclidean projection of η on the polytope, also when
    the active set outgrows its first 8 slots."""
    eta = torch.randn(16, dim, generator=torch.Generator().manual_seed(dim)) * 0.6 + 0.5
    res = sparsemap_bitvector(eta, budget=budget)
    mu = (res.probs.unsqueeze(-1) * res.structures).sum(1)
    expected = eta.clamp(0, 1) if budget is None else budget_projection(eta, budget)
    assert torch.allclose(mu, expected, atol=1e-8)
    assert int(res.mask.sum(1).max()) > 8
    assert torch.allclose(res.probs.sum(1), torch.ones(16))
    if budget is not None:
        assert torch.all((res.structures.sum(-1) <= budget) | ~res.mask)


def test_confident_scores_give_a_single_structure():
    eta = torch.tensor([[3.0, -2.0, 1.5, -4.0]])
    res = sparsemap_bitvector(eta)
    assert int(res.mask.sum()) == 1
    assert torch.equal(res.structures[0][res.mask[0]][0], torch.tensor([1.0, 0.0, 1.0, 0.0]))


def test_map_oracle_with_budget():
    scores = torch.tensor([[0.5, -1.0, 2.0, 0.1, 3.0]])
    assert torch.equal(bitvector_map(scores), torch.tensor([[1.0, 0.0, 1.0, 1.0, 1.0]]))
    assert torch.equal(bitvector_map(scores, budget=2), torch.tensor([[0.0, 0.0, 1.0, 0.0, 1.0]]))
    assert torch.equal(bitvector_map(-scores.abs(), budget=2), torch.zeros(1, 5))


@pytest.mark.parametrize("budget", [None, 2])
def test_backward_matches_finite_differences(budget):
    """Closed-form backward vs central differences of the forward, for an expected loss Σ p ℓ(z).

    The decomposition of μ into structures is unique here (one fractional coordinate without a
    budget; two fractional coordinates on an active budget), so Σ p ℓ(z) is smooth in η.
    """
    gen = torch.Generator().manual_seed(3)
    base = torch.tensor([[2.0, 0.4, -1.0, 1.7, -0.5], [-2.0, 1.5, 0.7, -0.3, 3.0]])
    if budget is not None:
        base = torch.tensor([[2.0, 0.8, 0.6, -1.0, -2.0], [0.9, -1.0, 3.0, -2.0, 0.7]])
    eta = (base + 0.05 * torch.randn(base.shape, generator=gen)).requires_grad_()
    weights = torch.randn(5, generator=gen)

    def expected(e):
        res = sparsemap_bitvector(e, budget=budget)
        losses = torch.sin(res.structures @ weights) + res.structures.sum(-1) ** 2
        return (res.probs * losses).sum()

    res = sparsemap_bitvector(eta, budget=budget)
    assert torch.equal(res.mask.sum(1), torch.tensor([2, 2]))
    assert torch.autograd.gradcheck(expected, (eta,), eps=1e-6, atol=1e-6)


def test_linear_loss_gradient_is_the_projection_jacobian():
    """For ℓ(z) = cᵀz, E_p[ℓ] = cᵀμ and μ = clip(η, 0, 1): the gradient is c on fractional coordinates."""
    gen = torch.Generator().manual_seed(4)
    eta = (torch.randn(8, 6, generator=gen) + 0.5).requires_grad_()
    c = torch.randn(6, generator=gen)
    res = sparsemap_bitvector(eta)
    (res.probs * (res.structures @ c)).sum().backward()
    fractional = ((eta > 0) & (eta < 1)).to(eta.dtype)
    assert torch.allclose(eta.grad, fractional * c, atol=1e-9)


def test_batched_equals_one_by_one_and_float32():
    eta = torch.randn(6, 10, generator=torch.Generator().manual_seed(5)) + 0.3
    batched = sparsemap_bitvector(eta, budget=4)
    for i in range(eta.shape[0]):
        single = sparsemap_bitvector(eta[i: i + 1], budget=4)
        mu_b = (batched.probs[i].unsqueeze(-1) * batched.structures[i]).sum(0)
        mu_s = (single.probs[0].unsqueeze(-1) * single.structures[0]).sum(0)
        assert torch.allclose(mu_b, mu_s, atol=1e-9)
    res32 = sparsemap_bitvector(eta.float(), budget=4)
    assert res32.probs.dtype == torch.float32
    assert torch.allclose(res32.probs.sum(1), torch.ones(6, dtype=torch.float32))


def brute_force_states_qp(eta, budget=None, iters=3000):
    """The ``states`` problem over the full simplex: θ_z = ηᵀz, structure vectors [z; 1 − z]."""
    z = all_structures(eta.shape[0], budget)
    both = torch.cat([z, 1 - z], dim=1)
    theta = z @ eta
    p = simplex_qp(theta, both @ both.T, iters)
    mu = p @ z
    return p @ theta - 0.5 * (mu @ mu + (1 - mu) @ (1 - mu)), mu


@pytest.mark.parametrize("dim,budget,eta", [c for c in cases() if c[0] <= 5])
def test_states_encoding_matches_brute_force_qp(dim, budget, eta):
    res = sparsemap_bitvector(eta.unsqueeze(0), budget=budget, encoding="states")
    p, z = res.probs[0][res.mask[0]], res.structures[0][res.mask[0]]
    mu = p @ z
    ours = p @ (z @ eta) - 0.5 * (mu @ mu + (1 - mu) @ (1 - mu))
    ref, ref_mu = brute_force_states_qp(eta, budget)
    assert ours >= ref - 1e-9 and ours - ref < 1e-5
    assert torch.allclose(mu, ref_mu, atol=2e-2)
    if budget is None:
        assert torch.allclose(mu, ((eta + 1) / 2).clamp(0, 1), atol=1e-9)


def test_states_encoding_keeps_uncertain_bits_at_zero_scores():
    """η = 0: the ``bits`` encoding puts all mass on z = 0 (μ = 0, zero gradient), the ``states``
    encoding has μ = ½ and a gradient for every bit; at generic η with |η_i| < 1 the gradient of
    a linear loss cᵀz is exactly c/2 (μ = (η + 1)/2 inside the cube)."""
    eta = torch.zeros(1, 6, requires_grad=True)
    c = torch.arange(1.0, 7.0)
    bits = sparsemap_bitvector(eta)
    assert int(bits.mask.sum()) == 1 and float(bits.structures[0][bits.mask[0]].sum()) == 0
    (bits.probs * (bits.structures @ c)).sum().backward()
    assert torch.count_nonzero(eta.grad) == 0
    eta.grad = None
    states = sparsemap_bitvector(eta, encoding="states")
    mu = (states.probs.unsqueeze(-1) * states.structures).sum(1)
    assert torch.allclose(mu, torch.full((1, 6), 0.5)) and int(states.mask.sum()) >= 2
    (states.probs * (states.structures @ c)).sum().backward()
    assert torch.all(eta.grad > 0)
    generic = (torch.rand(4, 6, generator=torch.Generator().manual_seed(5)) * 1.8 - 0.9).requires_grad_()
    states = sparsemap_bitvector(generic, encoding="states")
    (states.probs * (states.structures @ c)).sum().backward()
    assert torch.allclose(generic.grad, c.expand(4, 6) / 2, atol=1e-9)
    with pytest.raises(ValueError, match="encoding must be one of"):
        sparsemap_bitvector(eta, encoding="pairs")
