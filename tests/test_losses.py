"""Fenchel-Young losses: agreement with the entmax package, their defining properties,
ignore_index (negative too), reductions and float64 gradcheck."""
from __future__ import annotations

import zlib

import entmax as pkg
import numpy as np
import pytest
import torch
from torch.autograd import gradcheck

import sparse_seq2seq as ss
from helpers import separated_input

TOL = {torch.float32: 1e-6, torch.float64: 1e-9}

# name -> (our loss fn, package loss fn, our mapping, alpha)
LOSSES = {
    "sparsemax": (ss.sparsemax_loss, pkg.sparsemax_loss, ss.sparsemax, 2.0),
    "entmax15": (ss.entmax15_loss, pkg.entmax15_loss, ss.entmax15, 1.5),
    "sparsemax_bisect": (ss.sparsemax_bisect_loss, pkg.sparsemax_bisect_loss, ss.sparsemax_bisect, 2.0),
}
for _a in (1.25, 1.5, 1.75):
    LOSSES[f"entmax_bisect_{_a}"] = (
        lambda X, t, a=_a: ss.entmax_bisect_loss(X, t, alpha=a),
        lambda X, t, a=_a: pkg.entmax_bisect_loss(X, t, alpha=a, n_iter=100),
        lambda X, a=_a: ss.entmax_bisect(X, a),
        _a,
    )

# name -> (our module class, kwargs)
MODULES = {
    "sparsemax": (ss.SparsemaxLoss, {}, 2.0),
    "entmax15": (ss.Entmax15Loss, {}, 1.5),
    "sparsemax_bisect": (ss.SparsemaxBisectLoss, {}, 2.0),
    "entmax_bisect": (ss.EntmaxBisectLoss, {"alpha": 1.3}, 1.3),
}


def seed_of(*parts) -> int:
    return zlib.crc32(repr(parts).encode())


def data(n, c, seed, dtype=torch.float64, scale=2.0):
    gen = torch.Generator().manual_seed(seed)
    X = (torch.randn(n, c, generator=gen, dtype=torch.float64) * scale).to(dtype)
    target = torch.randint(0, c, (n,), generator=gen)
    return X, target


def tsallis(p, alpha):
    return (1 - (p ** alpha).sum(-1)) / (alpha * (alpha - 1))


@pytest.mark.parametrize("dtype", [torch.float32, torch.float64], ids=["f32", "f64"])
@pytest.mark.parametrize("name", list(LOSSES))
def test_loss_and_gradient_match_entmax_package(name, dtype):
    ours_fn, pkg_fn, _, _ = LOSSES[name]
    X, target = data(9, 11, seed_of(name), dtype)
    X.requires_grad_()
    Xd = X.detach().double().requires_grad_()
    ours, theirs = ours_fn(X, target), pkg_fn(Xd, target)
    assert ours.shape == (9,) and ours.dtype == dtype
    torch.testing.assert_close(ours.double(), theirs.detach(), atol=TOL[dtype], rtol=TOL[dtype])
    dY = data(9, 1, 1)[0][:, 0]
    g_ours, = torch.autograd.grad(ours, X, dY.to(dtype))
    g_theirs, = torch.autograd.grad(theirs, Xd, dY)
    torch.testing.assert_close(g_ours.double(), g_theirs, atol=TOL[dtype], rtol=0)


@pytest.mark.parametrize("alpha", [0.5, 1.0, 1.5, 2.0])
def test_entmax_bisect_loss_formula_any_alpha(alpha, ref):
    """L(x, y) = H_alpha(p) + p.x - x_y, also where the package does not go (alpha <= 1)."""
    X, target = data(6, 7, seed_of("formula", alpha))
    p = ref(X, alpha)
    if alpha == 1.0:
        ent = -(p * p.log()).sum(-1)
    else:
        ent = tsallis(p, alpha)
    expected = ent + (p * X).sum(-1) - X.gather(1, target[:, None])[:, 0]
    torch.testing.assert_close(ss.entmax_bisect_loss(X, target, alpha=alpha), expected,
                               atol=1e-9, rtol=0)


@pytest.mark.parametrize("scale", [0.1, 1.0, 10.0])
@pytest.mark.parametrize("name", list(LOSSES))
def test_loss_is_non_negative(name, scale):
    ours_fn = LOSSES[name][0]
    X, target = data(200, 9, seed_of("nonneg", name, scale), scale=scale)
    loss = ours_fn(X, target)
    assert torch.isfinite(loss).all()
    assert float(loss.min()) >= -1e-12


@pytest.mark.parametrize("dtype", [torch.float32, torch.float64], ids=["f32", "f64"])
@pytest.mark.parametrize("name", list(LOSSES))
def test_loss_zero_when_all_mass_on_target(name, dtype):
    ours_fn, _, mapping, _ = LOSSES[name]
    X, target = data(8, 6, seed_of("zero", name), dtype, scale=1.0)
    X = X.clone()
    X[torch.arange(8), target] += 20.0  # margin > 1/(alpha-1) for every alpha here
    p = mapping(X)
    assert torch.equal(p, torch.nn.functional.one_hot(target, 6).to(dtype))
    torch.testing.assert_close(ours_fn(X, target), torch.zeros(8, dtype=dtype), atol=TOL[dtype],
                               rtol=0)
    # and strictly positive when the mass is elsewhere
    wrong = (target + 1) % 6
    assert bool((ours_fn(X, wrong) > 1.0).all())


@pytest.mark.parametrize("name", list(LOSSES))
def test_gradient_is_prediction_minus_onehot(name):
    ours_fn, _, mapping, _ = LOSSES[name]
    X, target = data(7, 10, seed_of("grad", name))
    X.requires_grad_()
    ours_fn(X, target).sum().backward()
    expected = mapping(X.detach()) - torch.nn.functional.one_hot(target, 10).double()
    torch.testing.assert_close(X.grad, expected, atol=1e-9, rtol=0)


@pytest.mark.parametrize("name", list(LOSSES))
def test_gradcheck_loss(name):
    ours_fn, _, _, alpha = LOSSES[name]
    X = separated_input((4, 6), alpha, -1, seed_of("gc", name)).requires_grad_()
    target = torch.tensor([0, 5, 2, 3])
    assert gradcheck(lambda x: ours_fn(x, target), (X,))


@pytest.mark.parametrize("name", ["sparsemax", "entmax15"])
def test_k_does_not_change_loss(name):
    ours_fn = ss.sparsemax_loss if name == "sparsemax" else ss.entmax15_loss
    X, target = data(5, 12, seed_of("k", name))
    torch.testing.assert_close(ours_fn(X, target, k=2), ours_fn(X, target), atol=1e-12, rtol=0)


# ---- modules: ignore_index and reduction ---------------------------------------------------


def expected_reduced(per_row, keep, reduction):
    if reduction == "none":
        return torch.where(keep, per_row, torch.zeros_like(per_row))
    total = per_row[keep].sum()
    return total if reduction == "sum" else total / keep.sum()


@pytest.mark.parametrize("reduction", ["none", "sum", "mean", "elementwise_mean"])
@pytest.mark.parametrize("ignore_index", [-100, -1, 0, 3])
@pytest.mark.parametrize("name", list(MODULES))
def test_module_ignore_index_and_reduction(name, ignore_index, reduction):
    cls, kwargs, alpha = MODULES[name]
    module = cls(ignore_index=ignore_index, reduction=reduction, **kwargs)
    X, target = data(10, 5, seed_of("mod", name, ignore_index))
    target[[1, 4, 7]] = ignore_index
    keep = target != ignore_index
    X.requires_grad_()
    out = module(X, target)
    # per-row losses of the kept rows, computed without any ignored row present
    fn = {"sparsemax": ss.sparsemax_loss, "entmax15": ss.entmax15_loss,
          "sparsemax_bisect": ss.sparsemax_bisect_loss}.get(name)
    fn = fn or (lambda x, t: ss.entmax_bisect_loss(x, t, alpha=alpha))
    per_row = torch.zeros(10, dtype=torch.float64)
    per_row[keep] = fn(X.detach()[keep], target[keep])
    expected = expected_reduced(per_row, keep, reduction)
    assert out.shape == expected.shape
    torch.testing.assert_close(out.detach(), expected, atol=1e-12, rtol=1e-12)
    out.sum().backward()
    assert torch.isfinite(X.grad).all()
    assert torch.equal(X.grad[~keep], torch.zeros_like(X.grad[~keep]))
    p = ss.entmax_bisect(X.detach()[keep], alpha)
    onehot = torch.nn.functional.one_hot(target[keep], 5).double()
    scale = 1.0 / int(keep.sum()) if reduction in ("mean", "elementwise_mean") else 1.0
    torch.testing.assert_close(X.grad[keep], scale * (p - onehot), atol=1e-9, rtol=0)


@pytest.mark.parametrize("reduction", ["none", "sum", "elementwise_mean"])
@pytest.mark.parametrize("name", list(MODULES))
def test_module_matches_entmax_package_module(name, reduction):
    cls, kwargs, _ = MODULES[name]
    pkg_cls = {"sparsemax": pkg.SparsemaxLoss, "entmax15": pkg.Entmax15Loss,
               "sparsemax_bisect": pkg.SparsemaxBisectLoss, "entmax_bisect": pkg.EntmaxBisectLoss}[name]
    extra = {"n_iter": 100} if name == "entmax_bisect" else {}
    X, target = data(8, 6, seed_of("pkgmod", name))
    target[2] = 1
    for ignore_index in (-100, 1):
        ours = cls(ignore_index=ignore_index, reduction=reduction, **kwargs)(X, target)
        theirs = pkg_cls(ignore_index=ignore_index, reduction=reduction, **kwargs, **extra)(X, target)
        torch.testing.assert_close(ours, theirs, atol=1e-9, rtol=0)


def test_default_module_arguments():
    module = ss.EntmaxBisectLoss()
    assert module.ignore_index == -100 and module.reduction == "elementwise_mean"
    assert ss.SparsemaxLoss().ignore_index == -100


def test_gradcheck_module_mean_with_negative_ignore_index():
    X = separated_input((5, 4), 1.5, -1, 77).requires_grad_()
    target = torch.tensor([1, -1, 3, 0, -1])
    for module in (ss.Entmax15Loss(ignore_index=-1, reduction="mean"),
                   ss.EntmaxBisectLoss(alpha=1.5, ignore_index=-1, reduction="sum")):
        assert gradcheck(lambda x: module(x, target), (X,))


@pytest.mark.parametrize("reduction", ["average", "max", None])
def test_bad_reduction_raises(reduction):
    with pytest.raises((ValueError, TypeError), match="reduction"):
        ss.SparsemaxLoss(reduction=reduction)(*data(3, 4, 0))


def test_loss_rows_are_independent():
    """Each row's loss depends on that row only (no accidental broadcasting of alpha etc.)."""
    X, target = data(6, 5, 123)
    full = ss.entmax_bisect_loss(X, target, alpha=1.4)
    rows = torch.stack([ss.entmax_bisect_loss(X[i:i + 1], target[i:i + 1], alpha=1.4)[0]
                        for i in range(6)])
    torch.testing.assert_close(full, rows, atol=1e-12, rtol=0)
    assert np.isfinite(full.numpy()).all()
