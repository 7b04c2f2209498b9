"""The sparse mappings agree with the entmax package and with a float64 reference,
in values and gradients, along every dim; float64 gradcheck in X and alpha."""
from __future__ import annotations

import zlib

import entmax as pkg
import numpy as np
import pytest
import torch
from torch.autograd import gradcheck

import sparse_seq2seq as ss
from helpers import reference_entmax, separated_input, tsallis_objective

SHAPES = [(7,), (3, 6), (2, 3, 5), (2, 3, 2, 5)]
SHAPE_DIMS = [(s, d) for s in SHAPES for d in range(-len(s), len(s))]
MAPPINGS = ["sparsemax", "entmax15", "sparsemax_bisect", "entmax_bisect"]
TOL = {torch.float32: 1e-6, torch.float64: 1e-9}
GRAD_ALPHAS = [0.5, 1.01, 1.05, 1.2, 1.5, 1.95, 2.0]


def seed_of(*parts) -> int:
    return zlib.crc32(repr(parts).encode())


def scores(shape, seed, dtype=torch.float64, scale=2.0):
    gen = torch.Generator().manual_seed(seed)
    return (torch.randn(shape, generator=gen, dtype=torch.float64) * scale).to(dtype)


def row_alpha(shape, dim, seed, dtype, low=1.05, high=2.0):
    """One alpha per row: a tensor with size 1 along ``dim``."""
    ashape = list(shape)
    ashape[dim] = 1
    gen = torch.Generator().manual_seed(seed + 1)
    return (low + (high - low) * torch.rand(ashape, generator=gen, dtype=torch.float64)).to(dtype)


def ours_and_package(name, X, dim, alpha=None):
    """(our output, the package's output in float64 with a tight bisection)."""
    Xd = X.detach().double()
    if name == "entmax_bisect":
        ad = alpha.detach().double()
        return ss.entmax_bisect(X, alpha, dim=dim), pkg.entmax_bisect(Xd, ad, dim=dim, n_iter=100)
    if name == "sparsemax_bisect":
        return ss.sparsemax_bisect(X, dim=dim), pkg.sparsemax_bisect(Xd, dim=dim, n_iter=100)
    return getattr(ss, name)(X, dim=dim), getattr(pkg, name)(Xd, dim=dim)


@pytest.mark.parametrize("dtype", [torch.float32, torch.float64], ids=["f32", "f64"])
@pytest.mark.parametrize("shape,dim", SHAPE_DIMS, ids=[f"{s}-dim{d}" for s, d in SHAPE_DIMS])
@pytest.mark.parametrize("name", MAPPINGS)
def test_values_match_entmax_package(name, shape, dim, dtype):
    seed = seed_of(name, shape, dim)
    X = scores(shape, seed, dtype)
    alpha = row_alpha(shape, dim, seed, dtype) if name == "entmax_bisect" else None
    ours, ref = ours_and_package(name, X, dim, alpha)
    assert ours.dtype == dtype and ours.shape == X.shape
    torch.testing.assert_close(ours.double(), ref, atol=TOL[dtype], rtol=0)
    torch.testing.assert_close(ours.sum(dim).double(), torch.ones(ref.sum(dim).shape,
                               dtype=torch.float64), atol=10 * TOL[dtype], rtol=0)


@pytest.mark.parametrize("name", MAPPINGS)
def test_float32_matches_package_float32(name):
    """Same-dtype comparison: our float32 against the package's own float32 result."""
    X = scores((16, 12), seed_of("f32", name), torch.float32)
    if name == "entmax_bisect":
        alpha = row_alpha((16, 12), -1, 3, torch.float32)
        theirs = pkg.entmax_bisect(X, alpha)
        ours = ss.entmax_bisect(X, alpha)
    else:
        theirs, ours = getattr(pkg, name)(X), getattr(ss, name)(X)
    torch.testing.assert_close(ours, theirs, atol=1e-6, rtol=0)


@pytest.mark.parametrize("dtype", [torch.float32, torch.float64], ids=["f32", "f64"])
@pytest.mark.parametrize("shape,dim", [((3, 6), 0), ((3, 6), 1), ((2, 3, 5), 1), ((2, 3, 2, 5), -1),
                                       ((2, 3, 2, 5), 2), ((7,), 0)])
@pytest.mark.parametrize("name", MAPPINGS)
def test_gradients_match_entmax_package(name, shape, dim, dtype):
    seed = seed_of("grad", name, shape, dim)
    X = scores(shape, seed, dtype).requires_grad_()
    Xd = X.detach().double().requires_grad_()
    dY = scores(shape, seed + 7, torch.float64)
    if name == "entmax_bisect":
        alpha = row_alpha(shape, dim, seed, dtype).requires_grad_()
        ad = alpha.detach().double().requires_grad_()
        ours = torch.autograd.grad(ss.entmax_bisect(X, alpha, dim=dim), (X, alpha), dY.to(dtype))
        ref = torch.autograd.grad(pkg.entmax_bisect(Xd, ad, dim=dim, n_iter=100), (Xd, ad), dY)
    else:
        n_iter = {"n_iter": 100} if name == "sparsemax_bisect" else {}
        ours = torch.autograd.grad(getattr(ss, name)(X, dim=dim), (X,), dY.to(dtype))
        ref = torch.autograd.grad(getattr(pkg, name)(Xd, dim=dim, **n_iter), (Xd,), dY)
    # float32: dX is O(1) sums of a few products (a few ulp); d(alpha) divides p - p~ by
    # (alpha-1)^2 >= 1/400, which amplifies float32 rounding of p by up to ~400x.
    dx_tol = 1e-9 if dtype == torch.float64 else 1e-5
    torch.testing.assert_close(ours[0].double(), ref[0], atol=dx_tol, rtol=0)
    if name == "entmax_bisect":
        da_tol = 1e-9 if dtype == torch.float64 else 1e-3
        assert ours[1].shape == alpha.shape
        torch.testing.assert_close(ours[1].double(), ref[1], atol=da_tol, rtol=0)


@pytest.mark.parametrize("alpha", [0.5, 0.8, 1.0, 1.25, 1.5, 2.0, 3.0])
@pytest.mark.parametrize("dtype", [torch.float32, torch.float64], ids=["f32", "f64"])
def test_entmax_bisect_matches_numpy_reference(alpha, dtype, ref):
    """Any alpha > 0, including alpha < 1 (dense) where the entmax package does not apply."""
    X = scores((5, 8), seed_of("np", alpha), dtype)
    torch.testing.assert_close(ss.entmax_bisect(X, alpha).double(), ref(X, alpha),
                               atol=TOL[dtype], rtol=0)


def test_per_row_alpha_mixing_below_at_and_above_one(ref):
    X = scores((2, 6, 5), 11)
    alpha = torch.tensor([0.5, 0.9, 1.0, 1.5, 2.0, 2.5], dtype=torch.float64).view(1, 6, 1)
    alpha = alpha.expand(2, 6, 1).contiguous()
    out = ss.entmax_bisect(X, alpha, dim=-1)
    torch.testing.assert_close(out, ref(X, alpha, -1), atol=1e-9, rtol=0)
    torch.testing.assert_close(out[:, 2], torch.softmax(X[:, 2], -1), atol=1e-12, rtol=0)


@pytest.mark.parametrize("alpha", [0.5, 0.75, 1.3, 1.5])
def test_output_maximises_regularised_objective(alpha):
    """p = argmax_{p in simplex} p.x + H_alpha(p): no feasible perturbation does better."""
    X = scores((4, 7), seed_of("kkt", alpha))
    P = ss.entmax_bisect(X, alpha).numpy()
    gen = np.random.default_rng(0)
    for x, p in zip(X.numpy(), P):
        best = tsallis_objective(p, x, alpha)
        for _ in range(300):
            d = gen.standard_normal(7)
            d -= d.mean()
            q = p + 1e-3 * d / np.abs(d).max()
            if (q < 0).any():
                continue
            assert tsallis_objective(q, x, alpha) <= best + 1e-12
    if alpha < 1:
        assert (P > 0).all()  # alpha < 1 is dense


@pytest.mark.parametrize("alpha", GRAD_ALPHAS)
@pytest.mark.parametrize("shape,dim", [((3, 5), -1), ((2, 4, 3), 1)])
def test_gradcheck_x_and_alpha(alpha, shape, dim):
    ashape = list(shape)
    ashape[dim] = 1
    a = torch.full(ashape, alpha, dtype=torch.float64)
    X = separated_input(shape, a, dim, seed_of("gc", alpha, shape)).requires_grad_()
    a.requires_grad_()
    assert gradcheck(lambda x, al: ss.entmax_bisect(x, al, dim=dim), (X, a))


@pytest.mark.parametrize("alpha", GRAD_ALPHAS)
def test_gradcheck_x_with_float_alpha(alpha):
    X = separated_input((3, 6), alpha, -1, seed_of("gcf", alpha)).requires_grad_()
    assert gradcheck(lambda x: ss.entmax_bisect(x, alpha), (X,))


def test_gradcheck_per_row_alpha_mixed():
    a = torch.tensor([[0.5], [1.2], [1.7], [2.0]], dtype=torch.float64)
    X = separated_input((4, 5), a, -1, 5).requires_grad_()
    a.requires_grad_()
    assert gradcheck(lambda x, al: ss.entmax_bisect(x, al), (X, a))


@pytest.mark.parametrize("name", ["sparsemax", "entmax15", "sparsemax_bisect"])
@pytest.mark.parametrize("shape,dim", [((3, 6), -1), ((4, 3), 0), ((2, 3, 4), 1)])
def test_gradcheck_fixed_alpha_mappings(name, shape, dim):
    alpha = 1.5 if name == "entmax15" else 2.0
    X = separated_input(shape, alpha, dim, seed_of("gcm", name, shape)).requires_grad_()
    fn = getattr(ss, name)
    assert gradcheck(lambda x: fn(x, dim=dim), (X,))


@pytest.mark.parametrize("name", ["sparsemax", "entmax15"])
@pytest.mark.parametrize("k", [1, 2, 4, 50])
def test_k_gives_exact_result(name, k):
    """k is a hint (the package's partial sort); the result is exact for every k."""
    X = scores((6, 9), seed_of("k", name, k))
    full = getattr(ss, name)(X)
    torch.testing.assert_close(getattr(ss, name)(X, k=k), full, atol=1e-12, rtol=0)
    torch.testing.assert_close(getattr(pkg, name)(X, k=k), full, atol=1e-9, rtol=0)


@pytest.mark.parametrize("dim", [0, 1, -1])
def test_modules_equal_functions(dim):
    X = scores((3, 4, 5), seed_of("mod", dim))
    alpha = 1.3
    cases = [
        (ss.Sparsemax(dim=dim), ss.sparsemax(X, dim=dim)),
        (ss.Sparsemax(dim=dim, k=2), ss.sparsemax(X, dim=dim)),
        (ss.Entmax15(dim=dim), ss.entmax15(X, dim=dim)),
        (ss.SparsemaxBisect(dim=dim), ss.sparsemax_bisect(X, dim=dim)),
        (ss.EntmaxBisect(alpha=alpha, dim=dim), ss.entmax_bisect(X, alpha, dim=dim)),
    ]
    for module, expected in cases:
        assert isinstance(module, torch.nn.Module)
        torch.testing.assert_close(module(X), expected, atol=0, rtol=0)
    torch.testing.assert_close(ss.EntmaxBisect(alpha=alpha, dim=dim)(X),
                               pkg.EntmaxBisect(alpha=alpha, dim=dim, n_iter=100)(X),
                               atol=1e-9, rtol=0)


def test_names_are_exported_from_submodules():
    from sparse_seq2seq import losses, mappings

    for name in ["sparsemax", "entmax15", "sparsemax_bisect", "entmax_bisect", "topk_sparsemax",
                 "Sparsemax", "Entmax15", "SparsemaxBisect", "EntmaxBisect", "EntmaxAlpha"]:
        assert getattr(ss, name) is getattr(mappings, name)
    for name in ["sparsemax_loss", "entmax15_loss", "sparsemax_bisect_loss", "entmax_bisect_loss",
                 "SparsemaxLoss", "Entmax15Loss", "SparsemaxBisectLoss", "EntmaxBisectLoss"]:
        assert getattr(ss, name) is getattr(losses, name)


@pytest.mark.parametrize("ensure", [True, False])
def test_ensure_sum_one_flag(ensure):
    X = scores((4, 10), seed_of("esum", ensure))
    out = ss.entmax_bisect(X, 1.7, ensure_sum_one=ensure)
    torch.testing.assert_close(out, pkg.entmax_bisect(X, 1.7, n_iter=100), atol=1e-9, rtol=0)
    out = ss.sparsemax_bisect(X, ensure_sum_one=ensure)
    torch.testing.assert_close(out, pkg.sparsemax(X), atol=1e-9, rtol=0)


# ---- EntmaxAlpha: learnable alpha per head ----------------------------------------------


@pytest.mark.parametrize("alpha_init", [1.1, 1.5, 1.9])
def test_entmax_alpha_init_and_range(alpha_init):
    module = ss.EntmaxAlpha(4, alpha_init=alpha_init)
    assert isinstance(module.alpha_logit, torch.nn.Parameter)
    assert module.alpha_logit.shape == (4,)
    torch.testing.assert_close(module.alpha.detach().double(),
                               torch.full((4,), alpha_init, dtype=torch.float64), atol=1e-6, rtol=0)
    with torch.no_grad():
        module.alpha_logit.copy_(torch.tensor([-1e4, -30.0, 30.0, 1e4]))
    a = module.alpha.detach()
    assert bool(((a > 1) | torch.isclose(a, torch.ones_like(a))).all()) and bool((a <= 2).all())
    assert torch.isfinite(a).all()
    X = scores((2, 4, 3, 6), 3).float().requires_grad_()
    out = module(X)
    assert torch.isfinite(out).all()
    torch.testing.assert_close(out.sum(-1), torch.ones(2, 4, 3), atol=1e-5, rtol=0)
    (out * scores((2, 4, 3, 6), 4).float()).sum().backward()
    assert torch.isfinite(X.grad).all() and torch.isfinite(module.alpha_logit.grad).all()


def test_entmax_alpha_applies_one_alpha_per_head():
    torch.manual_seed(0)
    module = ss.EntmaxAlpha(3, dim=-1, alpha_init=1.5, head_dim=1).double()
    with torch.no_grad():
        module.alpha_logit.copy_(torch.tensor([-2.0, 0.0, 3.0]))
    alphas = 1 + torch.sigmoid(module.alpha_logit.detach())
    torch.testing.assert_close(module.alpha.detach(), alphas)
    X = scores((2, 3, 4, 5), 21)
    out = module(X)
    for h in range(3):
        expected = pkg.entmax_bisect(X[:, h], float(alphas[h]), dim=-1, n_iter=100)
        torch.testing.assert_close(out[:, h], expected, atol=1e-9, rtol=0)


def test_entmax_alpha_other_head_dim_and_dim():
    module = ss.EntmaxAlpha(4, dim=1, alpha_init=1.3, head_dim=0).double()
    X = scores((4, 6, 2), 8)
    out = module(X)
    a = float(module.alpha.detach()[0])
    torch.testing.assert_close(out, pkg.entmax_bisect(X, a, dim=1, n_iter=100), atol=1e-9, rtol=0)


def test_entmax_alpha_gets_gradient():
    module = ss.EntmaxAlpha(2, alpha_init=1.5)
    X = scores((3, 2, 4, 6), 4).float().requires_grad_()
    (module(X) * scores((3, 2, 4, 6), 5).float()).sum().backward()
    grad = module.alpha_logit.grad
    assert grad is not None and grad.shape == (2,)
    assert torch.isfinite(grad).all() and bool((grad != 0).all())
    assert X.grad is not None and torch.isfinite(X.grad).all()
    # the logit gradient is d(alpha)/d(logit) = sigmoid' times the alpha gradient
    Xd = X.detach().double()
    logits = module.alpha_logit.detach().double().requires_grad_()
    alpha = (1 + torch.sigmoid(logits)).view(1, 2, 1, 1).expand(3, 2, 4, 1)
    (pkg.entmax_bisect(Xd, alpha, n_iter=100) * scores((3, 2, 4, 6), 5)).sum().backward()
    torch.testing.assert_close(grad.double(), logits.grad, atol=1e-4, rtol=1e-4)


def test_numpy_reference_agrees_with_package_and_softmax():
    """The independent float64 reference used for alpha <= 1 is itself checked here."""
    X = scores((6, 9), 31)
    alpha = row_alpha((6, 9), -1, 31, torch.float64, low=1.01, high=3.0)
    ref = torch.from_numpy(reference_entmax(X.numpy(), alpha.numpy(), -1))
    torch.testing.assert_close(ref, pkg.entmax_bisect(X, alpha, n_iter=100), atol=1e-12, rtol=0)
    torch.testing.assert_close(torch.from_numpy(reference_entmax(X.numpy(), 1.0, 0)),
                               torch.softmax(X, 0), atol=1e-15, rtol=0)


def test_zero_dim_alpha_tensor_broadcasts_to_every_row():
    X = scores((4, 7), 32)
    a = torch.tensor(1.6, dtype=torch.float64, requires_grad=True)
    out = ss.entmax_bisect(X, a)
    torch.testing.assert_close(out, ss.entmax_bisect(X, 1.6), atol=1e-12, rtol=0)
    dY = scores((4, 7), 33)
    g, = torch.autograd.grad(out, a, dY)
    rows = torch.full((4, 1), 1.6, dtype=torch.float64, requires_grad=True)
    g_rows, = torch.autograd.grad(pkg.entmax_bisect(X, rows, n_iter=100), rows, dY)
    assert g.shape == () and torch.isclose(g, g_rows.sum(), atol=1e-9, rtol=0)
