"""The compiled (fused) kernels give the eager results, values and gradients in x and α."""
import pytest
import torch

from sparse_seq2seq import entmax15, entmax_bisect, fused, sparsemax


@pytest.fixture
def both_paths():
    def run(fn, x, alpha=None):
        results = []
        for enabled in (False, True):
            fused.configure(enabled=enabled, min_numel=1)
            xx = x.clone().requires_grad_()
            args = () if alpha is None else (alpha.clone().requires_grad_(),)
            y = fn(xx, *args)
            grad = torch.randn(y.shape, generator=torch.Generator().manual_seed(3), dtype=y.dtype)
            (y * grad).sum().backward()
            results.append((y.detach(), xx.grad, args[0].grad if args else None))
        return results

    yield run
    fused.configure(enabled=True, min_numel=1 << 13)


@pytest.mark.parametrize("mapping", (sparsemax, entmax15, lambda x: entmax_bisect(x, 1.3)))
def test_fused_equals_eager(both_paths, mapping):
    x = torch.randn(24, 7, 33) * 3
    x[0, 0] = float("-inf")  # a fully masked row
    x[1, :, 5:] = float("-inf")
    (y0, g0, _), (y1, g1, _) = both_paths(mapping, x)
    torch.testing.assert_close(y1, y0, atol=1e-6, rtol=0)
    torch.testing.assert_close(g1, g0, atol=1e-5, rtol=0)
    assert (y1[0, 0] == 0).all() and torch.isfinite(g1).all()


def test_fused_alpha_per_row_equals_eager(both_paths):
    x = torch.randn(16, 4, 20, 20) * 2
    alpha = torch.rand(16, 4, 1, 1) * 0.9 + 1.05
    (y0, g0, a0), (y1, g1, a1) = both_paths(lambda z, a: entmax_bisect(z, a, dim=-1), x, alpha)
    torch.testing.assert_close(y1, y0, atol=1e-6, rtol=0)
    torch.testing.assert_close(g1, g0, atol=1e-5, rtol=0)
    torch.testing.assert_close(a1, a0, atol=1e-3, rtol=1e-3)


def test_fused_along_a_middle_dim(both_paths):
    x = torch.randn(5, 40, 6) * 2
    (y0, g0, _), (y1, g1, _) = both_paths(lambda z: entmax15(z, dim=1), x)
    torch.testing.assert_close(y1, y0, atol=1e-6, rtol=0)
    torch.testing.assert_close(g1, g0, atol=1e-5, rtol=0)
