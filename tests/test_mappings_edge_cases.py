"""Edge cases: masked rows, huge scores, ties, half precision, alpha limits, bad arguments,
top-k sparsemax."""
from __future__ import annotations

import re

import entmax as pkg
import pytest
import torch

import sparse_seq2seq as ss

NEG_INF = float("-inf")


def scores(shape, seed, dtype=torch.float64, scale=2.0):
    gen = torch.Generator().manual_seed(seed)
    return (torch.randn(shape, generator=gen, dtype=torch.float64) * scale).to(dtype)


# name -> (callable(X, dim), alpha of the equivalent alpha-entmax)
MAPS = {
    "sparsemax": (lambda X, dim=-1: ss.sparsemax(X, dim=dim), 2.0),
    "entmax15": (lambda X, dim=-1: ss.entmax15(X, dim=dim), 1.5),
    "sparsemax_bisect": (lambda X, dim=-1: ss.sparsemax_bisect(X, dim=dim), 2.0),
    "entmax_bisect_0.5": (lambda X, dim=-1: ss.entmax_bisect(X, 0.5, dim=dim), 0.5),
    "entmax_bisect_1.0": (lambda X, dim=-1: ss.entmax_bisect(X, 1.0, dim=dim), 1.0),
    "entmax_bisect_1.3": (lambda X, dim=-1: ss.entmax_bisect(X, 1.3, dim=dim), 1.3),
    "entmax_bisect_2.0": (lambda X, dim=-1: ss.entmax_bisect(X, 2.0, dim=dim), 2.0),
    "topk_sparsemax_3": (lambda X, dim=-1: ss.topk_sparsemax(X, 3, dim=dim), None),
}


# ---- masked (-inf) scores ------------------------------------------------------------------


@pytest.mark.parametrize("name", list(MAPS))
@pytest.mark.parametrize("dtype", [torch.float32, torch.float64], ids=["f32", "f64"])
def test_all_minus_inf_row_gives_zeros_and_finite_grads(name, dtype):
    fn, _ = MAPS[name]
    X = scores((4, 6), 1, dtype)
    X[1] = NEG_INF
    X.requires_grad_()
    out = fn(X)
    assert out.dtype == dtype
    assert torch.equal(out[1], torch.zeros(6, dtype=dtype))
    assert torch.isfinite(out).all()
    torch.testing.assert_close(out[[0, 2, 3]].sum(-1), torch.ones(3, dtype=dtype), atol=1e-5, rtol=0)
    (out * scores((4, 6), 2, dtype)).sum().backward()
    assert torch.isfinite(X.grad).all()
    assert torch.equal(X.grad[1], torch.zeros(6, dtype=dtype))


def test_all_minus_inf_row_with_tensor_alpha_gradient():
    X = scores((3, 5), 3)
    X[0] = NEG_INF
    X.requires_grad_()
    alpha = torch.tensor([[1.5], [0.7], [1.9]], dtype=torch.float64, requires_grad=True)
    out = ss.entmax_bisect(X, alpha)
    assert torch.equal(out[0], torch.zeros(5, dtype=torch.float64))
    out.pow(2).sum().backward()
    assert torch.isfinite(X.grad).all() and torch.isfinite(alpha.grad).all()
    assert float(alpha.grad[0]) == 0.0


@pytest.mark.parametrize("name", list(MAPS))
def test_partly_minus_inf_equals_mapping_on_finite_entries(name):
    fn, _ = MAPS[name]
    X = scores((3, 7), 4)
    keep = torch.tensor([True, False, True, True, False, True, True])
    X[:, ~keep] = NEG_INF
    X.requires_grad_()
    out = fn(X)
    assert torch.equal(out[:, ~keep], torch.zeros(3, 2, dtype=torch.float64))
    Xs = X.detach()[:, keep].clone().requires_grad_()
    small = fn(Xs)
    torch.testing.assert_close(out[:, keep], small, atol=1e-9, rtol=0)
    dY = scores((3, 7), 5)
    (out * dY).sum().backward()
    (small * dY[:, keep]).sum().backward()
    assert torch.isfinite(X.grad).all()
    torch.testing.assert_close(X.grad[:, keep], Xs.grad, atol=1e-9, rtol=0)
    assert torch.equal(X.grad[:, ~keep], torch.zeros(3, 2, dtype=torch.float64))


def test_masked_attention_like_input_along_dim0():
    X = scores((6, 4), 6)
    X[2:, 1] = NEG_INF
    X[:, 3] = NEG_INF
    for name, (fn, _) in MAPS.items():
        out = fn(X, dim=0)
        assert torch.equal(out[:, 3], torch.zeros(6, dtype=torch.float64)), name
        assert torch.equal(out[2:, 1], torch.zeros(4, dtype=torch.float64)), name
        torch.testing.assert_close(out[:, :3].sum(0), torch.ones(3, dtype=torch.float64),
                                   atol=1e-9, rtol=0)


# ---- large magnitudes and ties ---------------------------------------------------------------


@pytest.mark.parametrize("name", [n for n in MAPS if MAPS[n][1] is not None])
@pytest.mark.parametrize("dtype", [torch.float32, torch.float64], ids=["f32", "f64"])
@pytest.mark.parametrize("kind", ["spread", "offset"])
def test_scores_of_magnitude_1e4(name, dtype, kind, ref):
    """'spread': scores ~ 1e4 * N(0,1); 'offset': 1e4 + N(0,1), where only O(1) differences
    matter.  The reference is computed in float64 from the very same (rounded) inputs."""
    fn, alpha = MAPS[name]
    base = scores((5, 9), 7, torch.float64, scale=1.0)
    X = (base * 1e4 if kind == "spread" else base + 1e4).to(dtype).requires_grad_()
    out = fn(X)
    assert torch.isfinite(out).all()
    tol = 1e-6 if dtype == torch.float32 else 1e-9
    torch.testing.assert_close(out.double(), ref(X, alpha), atol=tol, rtol=0)
    out.pow(2).sum().backward()
    assert torch.isfinite(X.grad).all()


@pytest.mark.parametrize("name", [n for n in MAPS if MAPS[n][1] is not None])
def test_ties(name, ref):
    fn, alpha = MAPS[name]
    X = torch.tensor([[1.0, 1.0, 1.0, 1.0], [3.0, 3.0, 0.0, -1.0], [0.5, 2.0, 2.0, 2.0],
                      [0.0, 0.0, -5.0, -5.0]], dtype=torch.float64, requires_grad=True)
    out = fn(X)
    torch.testing.assert_close(out[0], torch.full((4,), 0.25, dtype=torch.float64), atol=1e-12, rtol=0)
    torch.testing.assert_close(out, ref(X, alpha), atol=1e-9, rtol=0)
    assert out[1, 0] == out[1, 1] and out[2, 1] == out[2, 2] == out[2, 3]
    out.pow(2).sum().backward()
    assert torch.isfinite(X.grad).all()


# ---- half precision ------------------------------------------------------------------------


@pytest.mark.parametrize("name", list(MAPS))
@pytest.mark.parametrize("dtype", [torch.float16, torch.bfloat16], ids=["f16", "bf16"])
def test_half_precision_in_float32_inside(name, dtype):
    fn, _ = MAPS[name]
    X = scores((6, 40), 8, dtype).requires_grad_()
    out = fn(X)
    assert out.dtype == dtype
    ref32 = fn(X.detach().float())
    # computed in float32 and rounded once: within one rounding of the float32 result
    unit = torch.finfo(dtype).eps
    torch.testing.assert_close(out.float(), ref32, atol=unit, rtol=unit)
    torch.testing.assert_close(out.float().sum(-1), torch.ones(6), atol=unit, rtol=0)
    out.float().pow(2).sum().backward()
    assert X.grad.dtype == dtype and torch.isfinite(X.grad.float()).all()


@pytest.mark.parametrize("dtype", [torch.float16, torch.bfloat16], ids=["f16", "bf16"])
def test_half_precision_with_masked_row_and_tensor_alpha(dtype):
    X = scores((3, 16), 9, dtype)
    X[2] = NEG_INF
    alpha = torch.tensor([[1.2], [1.8], [1.5]], dtype=dtype, requires_grad=True)
    X.requires_grad_()
    out = ss.entmax_bisect(X, alpha)
    assert out.dtype == dtype and torch.isfinite(out.float()).all()
    assert torch.equal(out[2].float(), torch.zeros(16))
    out.float().pow(2).sum().backward()
    assert torch.isfinite(X.grad.float()).all() and torch.isfinite(alpha.grad.float()).all()


# ---- alpha limits ----------------------------------------------------------------------------


def test_alpha_near_one_approaches_softmax():
    X = scores((5, 12), 10)
    torch.testing.assert_close(ss.entmax_bisect(X, 1 + 1e-4), torch.softmax(X, -1), atol=1e-3, rtol=0)
    err = [(ss.entmax_bisect(X, a) - torch.softmax(X, -1)).abs().max() for a in (1.1, 1.01, 1.001)]
    assert err[0] > err[1] > err[2]


@pytest.mark.parametrize("dtype", [torch.float32, torch.float64], ids=["f32", "f64"])
def test_alpha_one_is_softmax(dtype):
    X = scores((4, 9), 11, dtype).requires_grad_()
    tol = 1e-6 if dtype == torch.float32 else 1e-12
    out = ss.entmax_bisect(X, 1.0)
    torch.testing.assert_close(out, torch.softmax(X, -1), atol=tol, rtol=0)
    alpha = torch.ones(4, 1, dtype=dtype, requires_grad=True)
    out2 = ss.entmax_bisect(X, alpha)
    torch.testing.assert_close(out2, torch.softmax(X, -1), atol=tol, rtol=0)
    gx, = torch.autograd.grad((out * X.detach()).sum(), X)
    gx_soft, = torch.autograd.grad((torch.softmax(X, -1) * X.detach()).sum(), X)
    torch.testing.assert_close(gx, gx_soft, atol=10 * tol, rtol=0)
    ga, = torch.autograd.grad((out2 * X.detach()).sum(), alpha)
    assert torch.isfinite(ga).all()


@pytest.mark.parametrize("dtype", [torch.float32, torch.float64], ids=["f32", "f64"])
def test_alpha_two_is_sparsemax(dtype):
    X = scores((6, 10), 12, dtype).requires_grad_()
    tol = 1e-6 if dtype == torch.float32 else 1e-9
    dY = scores((6, 10), 13, dtype)
    for out in (ss.entmax_bisect(X, 2.0), ss.sparsemax_bisect(X), ss.sparsemax(X)):
        torch.testing.assert_close(out, pkg.sparsemax(X.detach().double()).to(dtype), atol=tol, rtol=0)
    g1, = torch.autograd.grad(ss.entmax_bisect(X, 2.0), X, dY)
    g2, = torch.autograd.grad(ss.sparsemax(X), X, dY)
    torch.testing.assert_close(g1, g2, atol=10 * tol, rtol=0)


def test_alpha_one_point_five_is_entmax15():
    X = scores((6, 10), 14)
    torch.testing.assert_close(ss.entmax_bisect(X, 1.5), ss.entmax15(X), atol=1e-9, rtol=0)


# ---- invalid arguments ---------------------------------------------------------------------


def _raises(fn, word):
    with pytest.raises((ValueError, TypeError)) as info:
        fn()
    assert re.search(rf"\b{word}\b", str(info.value)), str(info.value)


X0 = torch.randn(3, 4)
BAD_ALPHA = [0.0, -1.0, torch.tensor([[1.5], [0.0], [1.2]]), torch.tensor([[1.5], [-2.0], [1.2]])]


@pytest.mark.parametrize("alpha", BAD_ALPHA, ids=["zero", "neg", "tensor-zero", "tensor-neg"])
def test_non_positive_alpha_raises(alpha):
    _raises(lambda: ss.entmax_bisect(X0, alpha), "alpha")
    _raises(lambda: ss.EntmaxBisect(alpha=alpha)(X0), "alpha")
    if not isinstance(alpha, torch.Tensor):
        _raises(lambda: ss.entmax_bisect_loss(X0, torch.tensor([0, 1, 2]), alpha=alpha), "alpha")


@pytest.mark.parametrize("alpha_init", [-1.0, 0.0, 0.9, 2.5])
def test_entmax_alpha_init_outside_range_raises(alpha_init):
    """EntmaxAlpha's alpha = 1 + sigmoid(a) lives in (1, 2]: other initial values are errors."""
    _raises(lambda: ss.EntmaxAlpha(2, alpha_init=alpha_init), "alpha_init")


@pytest.mark.parametrize("k", [0, -2])
def test_non_positive_k_raises(k):
    _raises(lambda: ss.sparsemax(X0, k=k), "k")
    _raises(lambda: ss.entmax15(X0, k=k), "k")
    _raises(lambda: ss.topk_sparsemax(X0, k), "k")
    _raises(lambda: ss.Sparsemax(k=k)(X0), "k")
    _raises(lambda: ss.sparsemax_loss(X0, torch.tensor([0, 1, 2]), k=k), "k")


@pytest.mark.parametrize("dim", [2, -3, 5])
def test_dim_out_of_range_raises(dim):
    for fn in (lambda: ss.sparsemax(X0, dim=dim), lambda: ss.entmax15(X0, dim=dim),
               lambda: ss.sparsemax_bisect(X0, dim=dim), lambda: ss.entmax_bisect(X0, 1.5, dim=dim),
               lambda: ss.topk_sparsemax(X0, 2, dim=dim), lambda: ss.EntmaxAlpha(4, dim=dim)(X0)):
        _raises(fn, "dim")


@pytest.mark.parametrize("dtype", [torch.long, torch.int32, torch.bool])
def test_non_floating_input_raises(dtype):
    Xi = torch.ones(3, 4, dtype=dtype)
    for fn in (lambda: ss.sparsemax(Xi), lambda: ss.entmax15(Xi), lambda: ss.sparsemax_bisect(Xi),
               lambda: ss.entmax_bisect(Xi), lambda: ss.topk_sparsemax(Xi, 2)):
        _raises(fn, "X")


# ---- top-k sparsemax -----------------------------------------------------------------------


@pytest.mark.parametrize("dim", [-1, 0, 1])
def test_topk_sparsemax_exact_when_support_fits(dim):
    X = scores((5, 6, 12), 15, scale=3.0)
    full = ss.sparsemax(X, dim=dim)
    k = int((full > 0).sum(dim).max())
    for kk in (k, k + 1, X.shape[dim]):
        torch.testing.assert_close(ss.topk_sparsemax(X, kk, dim=dim), full, atol=1e-12, rtol=0)


@pytest.mark.parametrize("k", [1, 2, 3])
def test_topk_sparsemax_truncated(k):
    X = scores((20, 30), 16, scale=0.3)  # flat scores: sparsemax support > k
    assert int((ss.sparsemax(X) > 0).sum(-1).min()) > k
    X.requires_grad_()
    out = ss.topk_sparsemax(X, k)
    assert bool(((out > 0).sum(-1) <= k).all())
    torch.testing.assert_close(out.sum(-1), torch.ones(20, dtype=torch.float64), atol=1e-12, rtol=0)
    top_vals, top_idx = X.detach().topk(k, dim=-1)
    expected = torch.zeros_like(out).scatter(-1, top_idx, pkg.sparsemax(top_vals, dim=-1))
    torch.testing.assert_close(out, expected, atol=1e-12, rtol=0)
    dY = scores((20, 30), 17)
    gx, = torch.autograd.grad(out, X, dY)
    top = X.detach().topk(k, -1)[0].requires_grad_()
    g_top, = torch.autograd.grad(pkg.sparsemax(top, -1), top, dY.gather(-1, top_idx))
    torch.testing.assert_close(gx.gather(-1, top_idx), g_top, atol=1e-12, rtol=0)
    outside = torch.ones_like(gx, dtype=torch.bool).scatter(-1, top_idx, False)
    assert torch.equal(gx[outside], torch.zeros_like(gx[outside]))


def test_topk_sparsemax_k_larger_than_dim():
    X = scores((3, 4), 18)
    torch.testing.assert_close(ss.topk_sparsemax(X, 10), ss.sparsemax(X), atol=1e-12, rtol=0)
