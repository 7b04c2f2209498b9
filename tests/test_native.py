"""The native (C++) CPU kernels give the eager results, values and gradients in x and α.

These tests do not skip: the native kernels must build here (g++ and ninja present).
"""
import pytest
import torch

from sparse_seq2seq import entmax15, entmax_bisect, fused, native, sparsemax

SHAPES = [(7, 1), (5, 3), (33, 15), (64, 200)]
ALPHAS = (1.01, 1.2, 1.5, 1.95, 2.0)
ATOL = {torch.float32: 1e-6, torch.float64: 1e-12}


@pytest.fixture
def paths():
    """run(fn, *args) -> (eager result, native result); native and fused restored after."""
    def run(fn, *args):
        native.configure(enabled=False)
        fused.configure(enabled=False)
        try:
            eager = fn(*args)
        finally:
            native.configure(enabled=True)
        return eager, fn(*args)

    yield run
    native.configure(enabled=True)
    fused.configure(enabled=True, min_numel=1 << 13)


def test_native_builds():
    assert native.available(), "the native CPU kernels failed to build"


def _scores(shape, dtype, seed=0):
    gen = torch.Generator().manual_seed(seed)
    x = torch.randn(shape, generator=gen, dtype=torch.float64).mul_(3).to(dtype)
    n, d = shape
    if n >= 5 and d >= 3:
        x[0] = float("-inf")  # all −inf
        x[1, ::2] = float("-inf")  # partly −inf
        x[2] = torch.round(x[2])  # ties
        x[3, : d // 2] = x[3, 0]  # more ties, including the max
        x[4] *= 1e4  # large scores
    if n >= 6 and d >= 3:
        x[5] = x[5] / 3 + 1e4  # large offset, O(1) differences
    return x


def _alpha_rows(n, dtype):
    return torch.tensor(ALPHAS, dtype=dtype)[torch.arange(n) % len(ALPHAS)].unsqueeze(1)


MAPPINGS = {
    "sparsemax": lambda x: sparsemax(x, -1),
    "entmax15": lambda x: entmax15(x, -1),
    "entmax_bisect_1.3": lambda x: entmax_bisect(x, 1.3, -1),
    "entmax_bisect_2": lambda x: entmax_bisect(x, 2.0, -1),
    "entmax_bisect_rows": lambda x: entmax_bisect(x, _alpha_rows(x.shape[0], x.dtype), -1),
}


@pytest.mark.parametrize("dtype", (torch.float32, torch.float64))
@pytest.mark.parametrize("shape", SHAPES)
@pytest.mark.parametrize("name", sorted(MAPPINGS))
def test_native_forward_equals_eager(paths, name, shape, dtype):
    x = _scores(shape, dtype)
    eager, ours = paths(MAPPINGS[name], x)
    assert ours.dtype == dtype and ours.shape == x.shape
    if dtype == torch.float32:
        # at α = 1.01 the eager float32 code (log of 1 + (α−1)(z−τ)) is itself ~1e-6 off;
        # the native one (log1p) is ~1e-7 off: compare with both, the float64 one tighter
        torch.testing.assert_close(ours, eager, atol=2e-6, rtol=0)
        exact = paths(MAPPINGS[name], x.double())[0]
        torch.testing.assert_close(ours.double(), exact, atol=ATOL[dtype], rtol=0)
    else:
        torch.testing.assert_close(ours, eager, atol=ATOL[dtype], rtol=0)
    assert torch.isfinite(ours).all()
    if shape[0] >= 5 and shape[1] >= 3:
        assert (ours[0] == 0).all()  # all −inf row: zeros, no NaN
        assert (ours[1, ::2] == 0).all()  # −inf scores: exact zeros
    live = torch.isfinite(x).any(-1)
    torch.testing.assert_close(ours.sum(-1)[live], torch.ones_like(ours.sum(-1)[live]),
                               atol=10 * ATOL[dtype] * shape[1], rtol=0)


@pytest.mark.parametrize("dtype", (torch.float32, torch.float64))
@pytest.mark.parametrize("alpha", ALPHAS)
def test_native_entmax_single_alpha(paths, alpha, dtype):
    x = _scores((64, 200), dtype, seed=1)
    eager, ours = paths(lambda z: entmax_bisect(z, alpha, -1), x)
    torch.testing.assert_close(ours, eager, atol=2 * ATOL[dtype], rtol=0)
    exact = paths(lambda z: entmax_bisect(z, alpha, -1), x.double())[0]
    torch.testing.assert_close(ours.double(), exact, atol=ATOL[dtype], rtol=0)


def test_native_kernels_are_used():
    """The wrappers return results (not None) for CPU float rows, also along a middle dim."""
    x = torch.randn(4, 9, 6, dtype=torch.float64)
    assert native.forward("sparsemax", x, 1) is not None
    assert native.forward("entmax15", x, 1) is not None
    alpha = torch.full((4, 1, 6), 1.4, dtype=torch.float64)
    assert native.entmax_forward(x, alpha, 1, 50, True) is not None
    assert native.entmax_forward(x, 1.4, 1, 50, True) is not None
    # α − 1 outside (0, 1] is left to the eager code
    assert native.entmax_forward(x, 2.5, 1, 50, True) is None
    assert native.entmax_forward(x, torch.full((4, 1, 6), 0.7, dtype=torch.float64), 1, 50, True) is None


def test_native_along_a_middle_dim(paths):
    x = torch.randn(5, 40, 6, generator=torch.Generator().manual_seed(2)) * 2
    alpha = 1 + torch.rand(5, 1, 6, generator=torch.Generator().manual_seed(3))
    for fn in (lambda z: sparsemax(z, 1), lambda z: entmax15(z, 1),
               lambda z: entmax_bisect(z, alpha, 1)):
        eager, ours = paths(fn, x)
        exact = paths(fn, x.double())[0]
        # α close to 1 here: the eager float32 result is the less accurate one
        torch.testing.assert_close(ours, eager, atol=1e-5, rtol=0)
        torch.testing.assert_close(ours.double(), exact, atol=1e-6, rtol=0)


def test_native_alpha_outside_range_falls_back(paths):
    x = torch.randn(6, 10, generator=torch.Generator().manual_seed(4))
    for alpha in (0.7, 2.5, torch.tensor([[1.5], [2.5], [1.2], [1.1], [1.9], [3.0]])):
        eager, ours = paths(lambda z: entmax_bisect(z, alpha, -1), x)
        torch.testing.assert_close(ours, eager, atol=1e-6, rtol=0)
    # the kernels themselves refuse such α, forward and backward alike (one range check, in C++)
    p = native.entmax_forward(x, 1.5, -1, 50, True)
    assert p is not None and native.entmax_backward(p, torch.ones_like(p), 1.5, -1, True) is not None
    for alpha in (0.7, 2.5, torch.tensor([[1.5], [2.5], [1.2], [1.1], [1.9], [3.0]])):
        assert native.entmax_forward(x, alpha, -1, 50, True) is None
        assert native.entmax_backward(p, torch.ones_like(p), alpha, -1, True) is None


@pytest.mark.parametrize("name", ("sparsemax", "entmax15", "entmax_bisect"))
def test_native_gradients_equal_eager(paths, name):
    x = _scores((33, 15), torch.float64, seed=5)
    x[4] /= 1e4  # keep the gradient comparison away from saturated rows
    grad = torch.randn(33, 15, generator=torch.Generator().manual_seed(6), dtype=torch.float64)
    alpha = _alpha_rows(33, torch.float64)

    def fn(z):
        zz = z.clone().requires_grad_()
        aa = alpha.clone().requires_grad_()
        y = {"sparsemax": lambda: sparsemax(zz), "entmax15": lambda: entmax15(zz),
             "entmax_bisect": lambda: entmax_bisect(zz, aa)}[name]()
        (y * grad).sum().backward()
        return zz.grad, (aa.grad if name == "entmax_bisect" else torch.zeros(()))

    (gx0, ga0), (gx1, ga1) = paths(fn, x)
    torch.testing.assert_close(gx1, gx0, atol=1e-10, rtol=0)
    torch.testing.assert_close(ga1, ga0, atol=1e-8, rtol=1e-8)
    assert torch.isfinite(gx1).all()


def test_native_gradcheck():
    assert native.available()
    gen = torch.Generator().manual_seed(7)
    x = (torch.randn(6, 5, generator=gen, dtype=torch.float64) * 2).requires_grad_()
    alpha = (1.05 + 0.9 * torch.rand(6, 1, generator=gen, dtype=torch.float64)).requires_grad_()
    assert torch.autograd.gradcheck(lambda z: sparsemax(z), (x,))
    assert torch.autograd.gradcheck(lambda z: entmax15(z), (x,))
    assert torch.autograd.gradcheck(lambda z: entmax_bisect(z, 1.3), (x,))
    assert torch.autograd.gradcheck(lambda z, a: entmax_bisect(z, a), (x, alpha))


def test_native_disabled_by_configure():
    native.configure(enabled=False)
    try:
        assert native.forward("sparsemax", torch.randn(3, 4), 1) is None
        assert not native.available()
    finally:
        native.configure(enabled=True)
    assert native.available()


def test_ninja_of_this_environment_is_found_without_activation(monkeypatch, tmp_path):
    """make setup pip-installs ninja into .venv/bin, which need not be on PATH."""
    import os
    import shutil
    import sys

    from sparse_seq2seq import native as native_module

    monkeypatch.setenv("PATH", str(tmp_path))
    assert shutil.which("ninja") is None
    native_module._find_ninja()
    found = shutil.which("ninja")
    assert found is not None and os.path.dirname(found) == os.path.dirname(sys.executable)
