"""The mappings and losses on CUDA tensors: agreement with the entmax package (computed
in float64 on the CPU), float64 gradcheck, half precision and masked rows.
Skipped where no GPU is present."""
from __future__ import annotations

import zlib

import entmax as pkg
import pytest
import torch
from torch.autograd import gradcheck

import sparse_seq2seq as ss
from helpers import separated_input

pytestmark = pytest.mark.cuda  # skipped without a GPU (conftest.py)

CUDA = "cuda"
TOL = {torch.float32: 1e-6, torch.float64: 1e-9}
CASES = [((3, 6), 0), ((3, 6), 1), ((2, 3, 4, 5), 1), ((2, 3, 4, 5), -1), ((50,), 0)]


def scores(shape, seed, dtype=torch.float64, scale=2.0):
    gen = torch.Generator().manual_seed(seed)
    return (torch.randn(shape, generator=gen, dtype=torch.float64) * scale).to(dtype)


def row_alpha(shape, dim, seed):
    ashape = list(shape)
    ashape[dim] = 1
    gen = torch.Generator().manual_seed(seed)
    return 1.05 + 0.95 * torch.rand(ashape, generator=gen, dtype=torch.float64)


@pytest.mark.parametrize("dtype", [torch.float32, torch.float64], ids=["f32", "f64"])
@pytest.mark.parametrize("shape,dim", CASES)
@pytest.mark.parametrize("name", ["sparsemax", "entmax15", "sparsemax_bisect", "entmax_bisect"])
def test_cuda_matches_entmax_package(name, shape, dim, dtype):
    X = scores(shape, zlib.crc32(repr((name, shape, dim)).encode()))
    dY = scores(shape, 99)
    Xc = X.to(CUDA, dtype).requires_grad_()
    Xr = X.clone().requires_grad_()
    if name == "entmax_bisect":
        a = row_alpha(shape, dim, 5)
        ac = a.to(CUDA, dtype).requires_grad_()
        ar = a.clone().requires_grad_()
        ours = ss.entmax_bisect(Xc, ac, dim=dim)
        ref = pkg.entmax_bisect(Xr, ar, dim=dim, n_iter=100)
        wrt_ours, wrt_ref = (Xc, ac), (Xr, ar)
    else:
        ours = getattr(ss, name)(Xc, dim=dim)
        ref = getattr(pkg, name)(Xr, dim=dim)
        wrt_ours, wrt_ref = (Xc,), (Xr,)
    assert ours.device.type == "cuda" and ours.dtype == dtype
    torch.testing.assert_close(ours.double().cpu(), ref.detach(), atol=TOL[dtype], rtol=0)
    g_ours = torch.autograd.grad(ours, wrt_ours, dY.to(CUDA, dtype))
    g_ref = torch.autograd.grad(ref, wrt_ref, dY)
    tols = [1e-9, 1e-9] if dtype == torch.float64 else [1e-5, 1e-3]  # see test_mappings.py
    for g1, g2, tol in zip(g_ours, g_ref, tols):
        assert g1.device.type == "cuda"
        torch.testing.assert_close(g1.double().cpu(), g2, atol=tol, rtol=0)


@pytest.mark.parametrize("alpha", [0.5, 1.01, 1.05, 1.2, 1.5, 1.95, 2.0])
def test_cuda_gradcheck_x_and_alpha(alpha):
    a = torch.full((3, 1), alpha, dtype=torch.float64)
    X = separated_input((3, 5), a, -1, int(alpha * 1000), device=CUDA).requires_grad_()
    a = a.to(CUDA).requires_grad_()
    assert gradcheck(lambda x, al: ss.entmax_bisect(x, al), (X, a))


@pytest.mark.parametrize("name", ["sparsemax", "entmax15", "sparsemax_bisect"])
def test_cuda_gradcheck_fixed_alpha(name):
    alpha = 1.5 if name == "entmax15" else 2.0
    X = separated_input((4, 6), alpha, 0, 17, device=CUDA).requires_grad_()
    assert gradcheck(lambda x: getattr(ss, name)(x, dim=0), (X,))


@pytest.mark.parametrize("name", ["sparsemax_loss", "entmax15_loss", "sparsemax_bisect_loss",
                                  "entmax_bisect_loss"])
def test_cuda_losses_match_package_and_gradcheck(name):
    X = scores((6, 9), 3)
    target = torch.tensor([0, 8, 3, 3, 1, 5])
    ours = getattr(ss, name)(X.to(CUDA), target.to(CUDA))
    torch.testing.assert_close(ours.cpu(), getattr(pkg, name)(X, target), atol=1e-9, rtol=0)
    alpha = 1.5 if name.startswith("entmax") else 2.0
    Xg = separated_input((4, 6), alpha, -1, 8, device=CUDA).requires_grad_()
    tg = torch.tensor([0, 5, 2, 3], device=CUDA)
    assert gradcheck(lambda x: getattr(ss, name)(x, tg), (Xg,))


def test_cuda_loss_module_negative_ignore_index():
    X = scores((5, 4), 4).to(CUDA).requires_grad_()
    target = torch.tensor([1, -1, 3, 0, -1], device=CUDA)
    loss = ss.Entmax15Loss(ignore_index=-1, reduction="mean")(X, target)
    keep = target != -1
    expected = ss.entmax15_loss(X.detach()[keep], target[keep]).mean()
    torch.testing.assert_close(loss.detach(), expected, atol=1e-12, rtol=0)
    loss.backward()
    assert torch.equal(X.grad[~keep], torch.zeros_like(X.grad[~keep]))


@pytest.mark.parametrize("dtype", [torch.float16, torch.bfloat16], ids=["f16", "bf16"])
@pytest.mark.parametrize("name", ["sparsemax", "entmax15", "entmax_bisect"])
def test_cuda_half_precision(name, dtype):
    X = scores((8, 64), 6, dtype).to(CUDA).requires_grad_()
    out = getattr(ss, name)(X)
    assert out.dtype == dtype
    unit = torch.finfo(dtype).eps
    torch.testing.assert_close(out.float(), getattr(ss, name)(X.detach().float()), atol=unit, rtol=unit)
    out.float().pow(2).sum().backward()
    assert X.grad.dtype == dtype and torch.isfinite(X.grad.float()).all()


@pytest.mark.parametrize("name", ["sparsemax", "entmax15", "sparsemax_bisect", "entmax_bisect"])
def test_cuda_all_minus_inf_row(name):
    X = scores((3, 7), 7).to(CUDA)
    X[1] = float("-inf")
    X[2, :3] = float("-inf")
    X.requires_grad_()
    out = getattr(ss, name)(X)
    assert torch.equal(out[1], torch.zeros_like(out[1]))
    assert torch.equal(out[2, :3], torch.zeros_like(out[2, :3]))
    torch.testing.assert_close(out[[0, 2]].sum(-1), torch.ones(2, device=CUDA, dtype=out.dtype))
    out.pow(2).sum().backward()
    assert torch.isfinite(X.grad).all()


def test_cuda_entmax_alpha_module():
    module = ss.EntmaxAlpha(4, alpha_init=1.4).to(CUDA)
    X = scores((2, 4, 3, 8), 9).float().to(CUDA).requires_grad_()
    out = module(X)
    torch.testing.assert_close(out.sum(-1), torch.ones(2, 4, 3, device=CUDA), atol=1e-5, rtol=0)
    (out * scores((2, 4, 3, 8), 10).float().to(CUDA)).sum().backward()
    assert module.alpha_logit.grad is not None and torch.isfinite(module.alpha_logit.grad).all()
    assert bool((module.alpha_logit.grad != 0).all())


@pytest.mark.parametrize("k", [2, 40])
def test_cuda_topk_sparsemax(k):
    X = scores((5, 30), 11, scale=0.3).to(CUDA)
    out = ss.topk_sparsemax(X, k)
    assert bool(((out > 0).sum(-1) <= k).all())
    torch.testing.assert_close(out.sum(-1), torch.ones(5, dtype=out.dtype, device=CUDA))
    if k >= 30:
        torch.testing.assert_close(out, ss.sparsemax(X), atol=1e-12, rtol=0)
