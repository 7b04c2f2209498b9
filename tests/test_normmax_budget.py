"""α-normmax and budget sparsemax: values and gradients against the ``entmax`` package (1.3)
over shapes, dims, α and budgets, float32 and float64; float64 gradcheck in X, α and the
budget; every argument the package takes; optimality checks that do not use the package; bad
arguments refused by name; the NaN / ±inf rule."""
from __future__ import annotations

import math

import entmax as pkg
import numpy as np
import pytest
import torch
from torch.autograd import gradcheck

import sparse_seq2seq as ss

NAN, INF = math.nan, math.inf
SHAPES_DIMS = [((5, 7), -1), ((5, 7), 0), ((3, 4, 6), 0), ((3, 4, 6), 1), ((3, 4, 6), 2),
               ((9,), 0), ((2, 1), -1)]
DTYPES = {torch.float64: 1e-9, torch.float32: 2e-5}
ALPHAS = [1.05, 1.5, 2, 3, 7.5]
BUDGETS = [0.5, 1, 1.5, 2, 3.25]


def scores(shape, seed=0, dtype=torch.float64, scale=2.0):
    gen = torch.Generator().manual_seed(seed)
    return (torch.randn(shape, generator=gen, dtype=torch.float64) * scale).to(dtype)


def close(ours, theirs, atol):
    torch.testing.assert_close(torch.as_tensor(ours, dtype=torch.float64),
                               torch.as_tensor(theirs, dtype=torch.float64), atol=atol, rtol=0)


def values_and_grads(fn, X, seed=1):
    """fn(X) and the gradient of ⟨fn(X), G⟩ in X for a random G."""
    X = X.detach().clone().requires_grad_()
    y = fn(X)
    (g,) = torch.autograd.grad(y, X, scores(y.shape, seed, y.dtype))
    return y.detach(), g


# -- values and gradients against the package ------------------------------------------------
@pytest.mark.parametrize("dtype", list(DTYPES), ids=str)
@pytest.mark.parametrize("alpha", ALPHAS)
@pytest.mark.parametrize("shape,dim", SHAPES_DIMS)
def test_normmax_matches_the_package(shape, dim, alpha, dtype):
    X = scores(shape, 3, dtype)
    ours = values_and_grads(lambda Z: ss.normmax_bisect(Z, alpha, dim), X)
    theirs = values_and_grads(lambda Z: pkg.normmax_bisect(Z, alpha, dim, n_iter=100), X)
    close(ours[0], theirs[0], DTYPES[dtype])
    close(ours[1], theirs[1], 50 * DTYPES[dtype])
    assert ours[0].dtype == dtype
    close(ours[0].sum(dim), torch.ones(()).expand(ours[0].sum(dim).shape), 10 * DTYPES[dtype])


@pytest.mark.parametrize("dtype", list(DTYPES), ids=str)
@pytest.mark.parametrize("shape,dim,budget", [(shape, dim, budget) for shape, dim in SHAPES_DIMS
                                              for budget in BUDGETS if budget <= shape[dim]])
def test_budget_matches_the_package(shape, dim, budget, dtype):
    X = scores(shape, 4, dtype)
    ours = values_and_grads(lambda Z: ss.budget_bisect(Z, budget, dim), X)
    # the package's backward fails for a last dim given as a positive index: give it as -1
    pkg_dim = -1 if dim == len(shape) - 1 else dim
    theirs = values_and_grads(lambda Z: pkg.budget_bisect(Z, budget, pkg_dim, n_iter=100), X)
    close(ours[0], theirs[0], 5 * DTYPES[dtype])
    close(ours[1], theirs[1], 5 * DTYPES[dtype])
    assert ours[0].dtype == dtype
    assert bool((ours[0] >= 0).all()) and bool((ours[0] <= 1).all())
    close(ours[0].sum(dim), torch.full(ours[0].sum(dim).shape, float(budget)), 20 * DTYPES[dtype])


def test_package_examples():
    x = torch.tensor([0, .25, .5, .75, 1])
    close(ss.normmax_bisect(x, alpha=2, dim=0), [0.0, 0.0239, 0.1746, 0.3254, 0.4761], 1e-4)
    close(ss.normmax_bisect(x, alpha=1000, dim=0), pkg.normmax_bisect(x, alpha=1000, dim=0), 1e-5)
    close(ss.budget_bisect(x, budget=2, dim=0), pkg.budget_bisect(x, budget=2, dim=0), 1e-6)
    close(ss.budget_bisect(2 * x, budget=3, dim=0), pkg.budget_bisect(2 * x, budget=3, dim=0), 1e-6)


@pytest.mark.parametrize("shape,dim", [((5, 7), -1), ((2, 3, 7), 1)])
def test_alpha_and_budget_per_row(shape, dim):
    X = scores(shape, 5)
    row = list(shape)
    row[dim] = 1
    gen = torch.Generator().manual_seed(6)
    alpha = 1.2 + 2 * torch.rand(row, generator=gen, dtype=torch.float64)
    budget = 0.5 + 2 * torch.rand(row, generator=gen, dtype=torch.float64)
    close(ss.normmax_bisect(X, alpha, dim), pkg.normmax_bisect(X, alpha, dim, 100), 1e-9)
    close(ss.budget_bisect(X, budget, dim), pkg.budget_bisect(X, budget, dim, 100), 1e-9)
    close(ss.budget_bisect(X, budget, dim).sum(dim, keepdim=True), budget, 1e-9)


# -- every argument the package takes --------------------------------------------------------
ARG_CALLS = {
    "positional": lambda m, X: m.normmax_bisect(X, 1.5, -1, 50),
    "keywords": lambda m, X: m.normmax_bisect(X, alpha=3, dim=0, n_iter=80),
    "defaults": lambda m, X: m.normmax_bisect(X),
    "numpy_alpha": lambda m, X: m.normmax_bisect(X, np.float32(1.7)),
    "tensor_alpha": lambda m, X: m.normmax_bisect(X, torch.tensor(2.5)),
    "column_alpha": lambda m, X: m.normmax_bisect(X, torch.full((5, 1), 1.3, dtype=torch.float64)),
    "n_iter_tensor": lambda m, X: m.normmax_bisect(X, 2, -1, torch.tensor(60)),
    "module": lambda m, X: m.NormmaxBisect(1.5, -1, 50)(X),
    "module_keywords": lambda m, X: m.NormmaxBisect(alpha=2.5, dim=0, n_iter=70)(X),
    "budget_positional": lambda m, X: m.budget_bisect(X, 3, -1, 50),
    "budget_keywords": lambda m, X: m.budget_bisect(X, budget=2.5, dim=0, n_iter=80),
    "budget_defaults": lambda m, X: m.budget_bisect(X),
    "budget_numpy": lambda m, X: m.budget_bisect(X, np.int64(2)),
    "budget_tensor": lambda m, X: m.budget_bisect(X, torch.tensor(1.5)),
    "budget_column": lambda m, X: m.budget_bisect(X, torch.tensor([[1.], [2], [3], [1.5], [4]],
                                                                  dtype=torch.float64)),
    "budget_module": lambda m, X: m.BudgetBisect(3, -1, 50)(X),
    "budget_module_keywords": lambda m, X: m.BudgetBisect(budget=1.5, dim=0, n_iter=70)(X),
}


@pytest.mark.parametrize("name", list(ARG_CALLS))
def test_arguments_as_the_package_takes_them(name):
    call = ARG_CALLS[name]
    ours = values_and_grads(lambda Z: call(ss, Z), scores((5, 7), 7))
    theirs = values_and_grads(lambda Z: call(pkg, Z), scores((5, 7), 7))
    close(ours[0], theirs[0], 1e-7)
    close(ours[1], theirs[1], 1e-6)


TARGET = torch.tensor([0, 6, 2, 3, 3])


@pytest.mark.parametrize("reduction", ["elementwise_mean", "sum", "none"])
@pytest.mark.parametrize("ignore_index", [-100, 3, torch.tensor(2)], ids=repr)
@pytest.mark.parametrize("alpha", [1.5, 2, 4])
def test_normmax_loss_matches_the_package(alpha, ignore_index, reduction):
    X = scores((5, 7), 8)
    for call in (lambda m, Z: m.normmax_bisect_loss(Z, TARGET, alpha, 50),
                 lambda m, Z: m.normmax_bisect_loss(Z, TARGET, alpha=alpha, n_iter=50),
                 lambda m, Z: m.NormmaxBisectLoss(alpha, 50, ignore_index, reduction)(Z, TARGET),
                 lambda m, Z: m.NormmaxBisectLoss(alpha=alpha, ignore_index=ignore_index,
                                                  reduction=reduction)(Z, TARGET)):
        ours = values_and_grads(lambda Z: call(ss, Z), X)
        theirs = values_and_grads(lambda Z: call(pkg, Z), X)
        close(ours[0], theirs[0], 1e-9)
        close(ours[1], theirs[1], 1e-9)
    close(ss.NormmaxBisectLoss()(X, TARGET), pkg.NormmaxBisectLoss()(X, TARGET), 1e-9)


def test_normmax_loss_with_alpha_per_row():
    # the package broadcasts a column α into an (n, n) loss; compare each row at its α
    alpha = torch.tensor([[1.2], [1.5], [2.0], [3.0], [6.0]], dtype=torch.float64)
    ours = ss.normmax_bisect_loss(scores((5, 7), 9), TARGET, alpha)
    for r in range(5):
        close(ours[r], pkg.normmax_bisect_loss(scores((5, 7), 9)[r:r + 1], TARGET[r:r + 1],
                                               float(alpha[r, 0]))[0], 1e-9)


# -- gradcheck in float64 --------------------------------------------------------------------
@pytest.mark.parametrize("alpha", [1.1, 1.5, 2.0, 3.0, 20.0])
@pytest.mark.parametrize("shape,dim", [((4, 6), -1), ((3, 5, 4), 1)])
def test_normmax_gradcheck_in_x_and_alpha(shape, dim, alpha):
    X = scores(shape, 10).requires_grad_()
    row = list(shape)
    row[dim] = 1
    a = (alpha + 0.3 * torch.rand(row, generator=torch.Generator().manual_seed(11),
                                  dtype=torch.float64)).requires_grad_()
    assert gradcheck(lambda Z, A: ss.normmax_bisect(Z, A, dim), (X, a))
    assert gradcheck(lambda Z: ss.normmax_bisect(Z, alpha, dim), (X,))


def test_normmax_gradient_at_large_alpha_is_finite_and_right():
    X = scores((3, 6), 12).requires_grad_()
    assert gradcheck(lambda Z: ss.normmax_bisect(Z, 1000.0), (X,))


@pytest.mark.parametrize("base", [0, 1, 2])
@pytest.mark.parametrize("shape,dim", [((4, 6), -1), ((3, 5, 4), 1)])
def test_budget_gradcheck_in_x_and_budget(shape, dim, base):
    # non-integer budgets: at an integer budget with a gap > 1 in the scores the map has a kink
    X = scores(shape, 13).requires_grad_()
    row = list(shape)
    row[dim] = 1
    b = (base + 0.2 + 0.6 * torch.rand(row, generator=torch.Generator().manual_seed(14),
                                       dtype=torch.float64)).requires_grad_()
    assert gradcheck(lambda Z, B: ss.budget_bisect(Z, B, dim), (X, b))


def test_normmax_loss_gradcheck_in_x_and_alpha():
    X = scores((5, 7), 15).requires_grad_()
    alpha = torch.tensor([[1.3], [1.7], [2.0], [2.5], [4.0]], dtype=torch.float64,
                         requires_grad=True)
    assert gradcheck(lambda Z, A: ss.normmax_bisect_loss(Z, TARGET, A), (X, alpha))


# -- checks that do not use the package ------------------------------------------------------
@pytest.mark.parametrize("alpha", [1.3, 2.0, 4.0])
def test_normmax_maximises_its_objective(alpha):
    """pᵀx − ‖p‖_α at p = normmax(x) beats every other point of the simplex tried."""
    X = scores((4, 6), 16)
    p = ss.normmax_bisect(X, alpha)
    objective = lambda q: (q * X).sum(-1) - q.norm(p=alpha, dim=-1)  # noqa: E731
    gen = torch.Generator().manual_seed(17)
    for _ in range(200):
        q = p + 0.05 * torch.randn(p.shape, generator=gen, dtype=torch.float64)
        q = q.clamp_min(0)
        q = q / q.sum(-1, keepdim=True)
        assert bool((objective(p) >= objective(q) - 1e-12).all())
    vertices = torch.eye(6, dtype=torch.float64)
    for v in vertices:
        assert bool((objective(p) >= objective(v.expand_as(p)) - 1e-12).all())


def test_budget_is_the_projection_onto_the_capped_simplex():
    """‖p − x‖ is smallest at p = budget(x) among feasible points (0 ≤ q ≤ 1, Σq = B), and
    budget 1 is sparsemax."""
    X = scores((4, 8), 18, scale=0.7)
    p = ss.budget_bisect(X, 2.5)
    gen = torch.Generator().manual_seed(19)
    for _ in range(200):
        step = 0.05 * torch.randn(p.shape, generator=gen, dtype=torch.float64)
        q = (p + step - step.mean(-1, keepdim=True)).clamp(0, 1)
        feasible = (q.sum(-1) - 2.5).abs() < 1e-12
        dist_p, dist_q = (p - X).norm(dim=-1), (q - X).norm(dim=-1)
        assert bool((dist_p[feasible] <= dist_q[feasible] + 1e-12).all())
    close(ss.budget_bisect(X, 1), ss.sparsemax(X), 1e-12)
    close(ss.budget_bisect(X, 8), torch.ones_like(X), 0)


def test_normmax_at_alpha_two_is_the_l2_case():
    """α = 2: p ∝ [x − τ]_+ with ‖[x − τ]_+‖₂ = 1 (solved here by sorting)."""
    x = scores((7,), 20).sort(descending=True).values
    for k in range(1, 8):
        top = x[:k]
        # Σ (x_i − τ)² = 1 on the top k: τ = mean − sqrt((1 − var·k)/k)
        disc = (1 - ((top - top.mean()) ** 2).sum()) / k
        if disc < 0:
            continue
        tau = top.mean() - disc.sqrt()
        if bool((top > tau).all()) and (k == 7 or bool(x[k] <= tau)):
            q = (x - tau).clamp_min(0)
            close(ss.normmax_bisect(x, 2, 0), q / q.sum(), 1e-12)
            return
    pytest.fail("no support found")


def test_half_precision_is_computed_in_float32():
    X = scores((4, 9), 21, torch.float32)
    for dtype in (torch.float16, torch.bfloat16):
        for fn in (lambda Z: ss.normmax_bisect(Z, 1.5), lambda Z: ss.budget_bisect(Z, 2.5)):
            out = fn(X.to(dtype))
            assert out.dtype == dtype
            close(out, fn(X.to(dtype).float()), 1e-2)


# -- bad arguments ---------------------------------------------------------------------------
@pytest.mark.parametrize("call,error,name", [
    (lambda X: ss.normmax_bisect(X, 1.0), ValueError, "alpha"),
    (lambda X: ss.normmax_bisect(X, 0.5), ValueError, "alpha"),
    (lambda X: ss.normmax_bisect(X, torch.tensor([[1.5], [0.9], [2], [2], [2]])), ValueError,
     "alpha"),
    (lambda X: ss.normmax_bisect(X, "2"), TypeError, "alpha"),
    (lambda X: ss.normmax_bisect(X, torch.ones(5, 7) * 2), ValueError, "alpha"),
    (lambda X: ss.normmax_bisect(X, 2, 2), ValueError, "dim"),
    (lambda X: ss.normmax_bisect(X, 2, -1, 0), ValueError, "n_iter"),
    (lambda X: ss.normmax_bisect_loss(X, TARGET, 1.0), ValueError, "alpha"),
    (lambda X: ss.NormmaxBisect(2, -1, -3), ValueError, "n_iter"),
    (lambda X: ss.budget_bisect(X, 0), ValueError, "budget"),
    (lambda X: ss.budget_bisect(X, -1.5), ValueError, "budget"),
    (lambda X: ss.budget_bisect(X, 8), ValueError, "budget"),
    (lambda X: ss.budget_bisect(X, math.nan), ValueError, "budget"),
    (lambda X: ss.budget_bisect(X, torch.tensor([[1.], [2], [9], [1], [1]])), ValueError, "budget"),
    (lambda X: ss.budget_bisect(X, torch.ones(5, 7)), ValueError, "budget"),
    (lambda X: ss.budget_bisect(X, torch.ones(3, 1)), ValueError, "budget"),
    (lambda X: ss.budget_bisect(X, True), TypeError, "budget"),
    (lambda X: ss.budget_bisect(X, None), TypeError, "budget"),
    (lambda X: ss.budget_bisect(X, 2, 5), ValueError, "dim"),
    (lambda X: ss.budget_bisect(X, 2, -1, 0), ValueError, "n_iter"),
    (lambda X: ss.BudgetBisect(2, -1, 0), ValueError, "n_iter"),
    (lambda X: ss.budget_bisect(X.long(), 2), TypeError, "X"),
])
def test_bad_arguments_are_refused_by_name(call, error, name):
    with pytest.raises(error, match=name):
        call(scores((5, 7), 22))


# -- NaN and ±inf ------------------------------------------------------------------------------
def test_normmax_follows_the_nonfinite_rule():
    X = torch.tensor([[0.0, NAN, 1.0, 2.0], [INF, 0.0, INF, 1.0], [-INF] * 4,
                      [0.5, -INF, 1.0, -INF]], dtype=torch.float64, requires_grad=True)
    p = ss.normmax_bisect(X, 1.5)
    assert bool(p[0].isnan().all())
    close(p[1], [0.5, 0.0, 0.5, 0.0], 0)
    close(p[2], torch.zeros(4), 0)
    close(p[3], pkg.normmax_bisect(X[3:].detach(), 1.5, n_iter=100)[0], 1e-12)
    assert p[3, 1] == 0 and p[3, 3] == 0
    (g,) = torch.autograd.grad(p, X, torch.arange(16.0, dtype=torch.float64).view(4, 4))
    assert bool(g[0].isnan().all())
    close(g[1:3], torch.zeros(2, 4), 0)
    assert bool(g[3].isfinite().all()) and g[3, 1] == 0


def test_budget_follows_the_nonfinite_rule():
    X = torch.tensor([[0.0, NAN, 1.0, 2.0, 0.0], [INF, 0.0, INF, 0.2, 0.1],
                      [INF, 0.0, -1.0, 2.0, 0.5], [INF, INF, INF, INF, 0.0], [-INF] * 5,
                      [0.5, -INF, 1.0, -INF, -INF], [0.5, -INF, 1.0, 0.2, -INF]],
                     dtype=torch.float64, requires_grad=True)
    p = ss.budget_bisect(X, 2.5)
    assert bool(p[0].isnan().all())
    # k = 2 entries at +inf take 1 each, the finite ones share 0.5 by budget sparsemax
    # (the package gives NaN for any −inf score, so its reference gets the finite ones only)
    close(p[1, [0, 2]], [1.0, 1.0], 0)
    close(p[1, [1, 3, 4]], pkg.budget_bisect(X[1, [1, 3, 4]].detach(), 0.5, 0, 100), 1e-12)
    close(p[2, 0], 1.0, 0)
    close(p[2, 1:], pkg.budget_bisect(X[2:3, 1:].detach(), 1.5, n_iter=100)[0], 1e-12)
    close(p[3], [0.625, 0.625, 0.625, 0.625, 0.0], 0)  # k = 4 ≥ B: B/k each
    close(p[4], torch.zeros(5), 0)
    close(p[5], [1.0, 0, 1.0, 0, 0], 0)  # fewer finite scores than the budget: all saturated
    close(p[6, [0, 2, 3]], pkg.budget_bisect(X[6, [0, 2, 3]].detach(), 2.5, 0, 100), 1e-12)
    close(p[6, [1, 4]], [0.0, 0.0], 0)
    assert float(p[6].detach().sum()) == pytest.approx(2.5)
    (g,) = torch.autograd.grad(p, X, torch.arange(35.0, dtype=torch.float64).view(7, 5))
    assert bool(g[0].isnan().all())
    assert bool(g[1:].isfinite().all())
    close(g[1, [0, 2]], torch.zeros(2), 0)  # the +inf entries no longer move
    close(g[3:6], torch.zeros(3, 5), 0)
    # the finite entries of a row with +inf still move with their scores: the limit's gradient
    assert float(g[1, [1, 3, 4]].abs().sum()) > 0


def test_budget_with_large_negative_fill_and_few_iterations():
    X = scores((16, 300), 23)
    X[:, :100] = -1e9
    close(ss.budget_bisect(X, 4.5, n_iter=20), pkg.budget_bisect(X, 4.5, n_iter=100), 1e-12)


def test_normmax_loss_follows_the_nonfinite_rule():
    X = torch.tensor([[0.0, NAN, 1.0], [INF, 0.0, INF], [INF, 0.0, 1.0]], dtype=torch.float64)
    loss = ss.normmax_bisect_loss(X, torch.tensor([0, 0, 1]), 2)
    assert math.isnan(float(loss[0]))
    close(loss[1], 1 - 2 ** -0.5, 1e-12)  # 1 − ‖(½, 0, ½)‖₂
    assert float(loss[2]) == INF
