"""Estimators of ∇E_π[ℓ] against the exact gradient of the full expectation, on small |Z|, float64.

Sparse and dense estimators must match exactly. Unbiased Monte-Carlo estimators must match
within 5 standard errors of their mean over 40 groups of replicated batches (plus 1e-3).
"""
import itertools

import pytest
import torch
import torch.nn.functional as F

from sparse_seq2seq.lvm import ESTIMATORS, build_estimator
from sparse_seq2seq.lvm.spaces import kbest_bitvectors
from sparse_seq2seq.mappings import sparsemax, topk_sparsemax



pytestmark = pytest.mark.usefixtures("float64_default")  # every tensor float64 (conftest.py)


B, K, D = 3, 5, 3


def problem(latent, seed=0):
    gen = torch.Generator().manual_seed(seed)
    width = K if latent == "categorical" else D
    scores = (torch.randn(B, width, generator=gen) * 0.7).requires_grad_()
    weight = torch.randn(width, 2, generator=gen).requires_grad_()
    target = torch.randn(B, 2, generator=gen)

    def loss_fn(rows, z):
        return ((z @ weight - target[rows]) ** 2).sum(-1) + torch.sin(z.sum(-1))

    return scores, weight, target, loss_fn


def all_values(latent):
    if latent == "categorical":
        return torch.eye(K)
    return torch.tensor(list(itertools.product((0.0, 1.0), repeat=D)))


def exact_gradient(latent, probs_fn, seed=0):
    """∇ of Σ_i Σ_z π_i(z) ℓ(i, z) with every z evaluated (no skipping)."""
    scores, weight, _, loss_fn = problem(latent, seed)
    values = all_values(latent)
    probs = probs_fn(scores, values)
    rows = torch.arange(B).repeat_interleave(values.shape[0])
    losses = loss_fn(rows, values.repeat(B, 1)).view(B, -1)
    (probs * losses).sum().backward()
    return scores.grad.clone(), weight.grad.clone(), (probs * losses).sum(1).detach()


def softmax_probs(latent):
    def fn(scores, values):
        if latent == "categorical":
            return scores.softmax(-1)
        return (scores @ values.T - F.softplus(scores).sum(-1, keepdim=True)).exp()
    return fn


def estimator_gradient(est, latent, seed=0, replicas=1, **context):
    scores, weight, _, loss_fn = problem(latent, seed)
    rep_scores = scores.repeat(replicas, 1)

    def rep_loss(rows, z):
        return loss_fn(rows % B, z)

    ctx = {k: v.repeat(replicas) for k, v in context.items()}
    out = est(rep_scores, rep_loss, **ctx)
    (out.objective.sum() / replicas).backward()
    return scores.grad.clone(), weight.grad.clone(), out


@pytest.mark.parametrize("latent", ["categorical", "bitvector"])
def test_dense_is_the_exact_gradient(latent):
    exact = exact_gradient(latent, softmax_probs(latent))
    g_s, g_w, out = estimator_gradient(build_estimator("dense", latent), latent)
    assert torch.allclose(g_s, exact[0], atol=1e-12) and torch.allclose(g_w, exact[1], atol=1e-12)
    assert torch.allclose(out.loss, exact[2])
    assert out.decoder_calls == B * all_values(latent).shape[0]


def test_sparsemax_is_exact_and_decodes_only_the_support():
    exact = exact_gradient("categorical", lambda s, v: sparsemax(s, dim=-1))
    g_s, g_w, out = estimator_gradient(build_estimator("sparsemax"), "categorical")
    assert torch.allclose(g_s, exact[0], atol=1e-12) and torch.allclose(g_w, exact[1], atol=1e-12)
    assert torch.allclose(out.loss, exact[2])
    assert out.decoder_calls == int((out.probs > 0).sum()) < B * K


def test_topk_sparsemax_categorical_is_exact():
    exact = exact_gradient("categorical", lambda s, v: topk_sparsemax(s, 2, dim=-1))
    g_s, g_w, out = estimator_gradient(build_estimator("topk_sparsemax", k=2), "categorical")
    assert torch.allclose(g_s, exact[0], atol=1e-12) and torch.allclose(g_w, exact[1], atol=1e-12)
    assert out.decoder_calls <= 2 * B


def test_topk_sparsemax_bitvector_is_sparsemax_over_the_brute_force_k_best():
    k = 4

    def probs_fn(scores, values):  # rank all 2^D structures by ηᵀz, sparsemax over the k best
        theta = scores @ values.T
        keep = theta.detach().topk(k, dim=-1).indices
        return torch.zeros_like(theta).scatter(1, keep, sparsemax(theta.gather(1, keep), dim=-1))

    exact = exact_gradient("bitvector", probs_fn)
    g_s, g_w, out = estimator_gradient(build_estimator("topk_sparsemax", "bitvector", k=k), "bitvector")
    assert torch.allclose(g_s, exact[0], atol=1e-12) and torch.allclose(g_w, exact[1], atol=1e-12)
    assert torch.allclose(out.loss, exact[2])


def test_kbest_bitvectors_against_enumeration():
    eta = torch.randn(20, 7, generator=torch.Generator().manual_seed(2))
    values = torch.tensor(list(itertools.product((0.0, 1.0), repeat=7)))
    best = kbest_bitvectors(eta, 12)
    ours = (best * eta.unsqueeze(1)).sum(-1)
    ref = (eta @ values.T).topk(12, dim=-1).values
    assert torch.allclose(ours, ref, atol=1e-12)
    assert torch.all((best.unsqueeze(2) == best.unsqueeze(1)).all(-1).sum(-1) == 1)  # distinct


@pytest.mark.parametrize("encoding", ["states", "bits"])
@pytest.mark.parametrize("name", ["sparsemap", "sparsemap_budget"])
def test_sparsemap_estimators_for_a_linear_loss(name, encoding):
    """ℓ(z) = cᵀz: E_p[ℓ] = cᵀμ with μ the projection of η (``bits``) or of (η + 1)/2 (``states``),
    which is unique, so value and gradient are exact."""
    gen = torch.Generator().manual_seed(7)
    eta = (torch.randn(6, 4, generator=gen) + 0.5).requires_grad_()
    c = torch.randn(6, 4, generator=gen)
    est = build_estimator(name, "bitvector", budget=2, encoding=encoding)
    out = est(eta, lambda rows, z: (z * c[rows]).sum(-1))
    out.objective.sum().backward()
    projected, slope = (eta.detach(), 1.0) if encoding == "bits" else ((eta.detach() + 1) / 2, 0.5)
    values = torch.tensor(list(itertools.product((0.0, 1.0), repeat=4)))
    if name == "sparsemap":
        mu = projected.clamp(0, 1)
        grad = slope * c * ((projected > 0) & (projected < 1))
        assert torch.allclose(eta.grad, grad, atol=1e-9)
    else:  # budget: μ = clip(η − λ, 0, 1) with the smallest λ >= 0 making Σμ <= 2 (bisection)
        lo, hi = torch.zeros(6, 1), torch.full((6, 1), 10.0)
        for _ in range(200):
            mid = (lo + hi) / 2
            over = (projected - mid).clamp(0, 1).sum(-1, keepdim=True) > 2
            lo, hi = torch.where(over, mid, lo), torch.where(over, hi, mid)
        mu = (projected - hi).clamp(0, 1)
        assert torch.all(values[(values.sum(-1) <= 2)].sum(-1) <= 2)
    assert torch.allclose(out.loss, (c * mu).sum(-1), atol=1e-8)
    assert out.decoder_calls == int((out.probs > 0).sum())


UNBIASED = [
    ("sfe", "categorical", {}), ("sfe_plus", "categorical", {}), ("nvil", "categorical", {}),
    ("sum_and_sample", "categorical", {"k": 2}),
    ("sfe", "bitvector", {}), ("sfe_plus", "bitvector", {}), ("nvil", "bitvector", {}),
    ("sum_and_sample", "bitvector", {"k": 2}),
]


@pytest.mark.parametrize("name,latent,opts", UNBIASED)
def test_monte_carlo_estimators_are_unbiased(name, latent, opts):
    torch.manual_seed(0)
    exact_s, exact_w, _ = exact_gradient(latent, softmax_probs(latent))
    est = build_estimator(name, latent, **opts)
    context = {"baseline": torch.full((B,), 0.5)} if name == "nvil" else {}
    groups = [estimator_gradient(est, latent, replicas=500, **context) for _ in range(40)]
    for which, exact in ((0, exact_s), (1, exact_w)):
        grads = torch.stack([g[which] for g in groups])
        mean, stderr = grads.mean(0), grads.std(0) / len(groups) ** 0.5
        assert torch.all((mean - exact).abs() <= 5 * stderr + 1e-3), (name, which, mean, exact)


def test_straight_through_forward_value_is_unbiased_and_relaxation_is_biased():
    torch.manual_seed(0)
    _, _, exact_value = exact_gradient("categorical", softmax_probs("categorical"))
    st = build_estimator("st_gumbel", temperature=0.5)
    _, _, out = estimator_gradient(st, "categorical", replicas=20000)
    assert torch.allclose(out.loss.view(-1, B).mean(0), exact_value, atol=0.05)
    relaxed = build_estimator("gumbel", temperature=0.5)
    _, _, out = estimator_gradient(relaxed, "categorical", replicas=20000)
    assert (out.loss.view(-1, B).mean(0) - exact_value).abs().max() > 0.05


def test_gumbel_relaxations_live_on_the_simplex_and_the_cube():
    torch.manual_seed(0)
    seen = []
    build_estimator("gumbel", temperature=0.3)(torch.randn(4, K), lambda r, z: seen.append(z) or z.sum(-1))
    build_estimator("st_gumbel", "bitvector")(torch.randn(4, D), lambda r, z: seen.append(z) or z.sum(-1))
    assert torch.allclose(seen[0].sum(-1), torch.ones(4)) and torch.all(seen[0] >= 0)
    assert torch.all((seen[1] == 0) | (seen[1] == 1))


def test_nvil_trains_its_baseline_and_needs_one():
    scores, _, _, loss_fn = problem("categorical")
    baseline = torch.zeros(B, requires_grad=True)
    build_estimator("nvil")(scores, loss_fn, baseline=baseline).objective.sum().backward()
    assert baseline.grad is not None and baseline.grad.abs().sum() > 0
    with pytest.raises(ValueError):
        build_estimator("nvil")(scores, loss_fn)


@pytest.mark.parametrize("name", ESTIMATORS)
def test_reported_decoder_calls_equal_actual_calls(name):
    latent = "bitvector" if name.startswith("sparsemap") else "categorical"
    scores, _, _, loss_fn = problem(latent)
    calls = []

    def counting(rows, z):
        calls.append(rows.numel())
        return loss_fn(rows, z)

    est = build_estimator(name, latent, k=2, budget=2)
    context = {"baseline": torch.zeros(B)} if name == "nvil" else {}
    out = est(scores, counting, **context)
    assert out.decoder_calls == sum(calls)
    expected = {"dense": B * K, "sfe": B, "nvil": B, "gumbel": B, "st_gumbel": B,
                "sfe_plus": 2 * B, "sum_and_sample": 3 * B}
    if name in expected:
        assert out.decoder_calls == expected[name]
    else:
        assert out.decoder_calls == int((out.probs > 0).sum())


def test_values_with_zero_probability_everywhere_are_never_decoded():
    scores = torch.tensor([[2.0, 1.9, -5.0, 0.0, -3.0], [1.0, 2.0, -4.0, 1.5, -3.0]])
    decoded = []
    out = build_estimator("sparsemax")(scores, lambda rows, z: decoded.append(z.argmax(-1)) or z.sum(-1))
    decoded = torch.cat(decoded)
    assert not torch.isin(decoded, torch.tensor([2, 4])).any()
    assert out.decoder_calls == 4  # {0, 1} for the first example, {1, 3} for the second


def test_unknown_names_and_spaces_are_rejected():
    with pytest.raises(ValueError):
        build_estimator("reinforce")
    with pytest.raises(ValueError):
        build_estimator("sparsemax", "bitvector")
    with pytest.raises(ValueError):
        build_estimator("sparsemap", "categorical")
