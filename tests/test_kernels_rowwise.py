"""Row-wise Triton mappings (the CUDA backend of the sparse mappings) against the library's
eager mappings, on CPU through Triton's interpreter, float32."""
import os

import pytest
import torch

if not torch.cuda.is_available():
    os.environ["TRITON_INTERPRET"] = "1"

import triton  # noqa: E402,F401  (CI installs triton: a missing triton fails these tests)

from sparse_seq2seq import backends  # noqa: E402
from sparse_seq2seq.kernels import rowwise  # noqa: E402

DEVICE = "cuda" if torch.cuda.is_available() else "cpu"
SHAPES = [(1, 1), (5, 7), (3, 100), (2, 1000)]


def _eager(kind, x, alpha=None):
    return backends.EAGER.forward(kind, x.double(), alpha, 100, True).float()


def _eager_grad(kind, p, g, alpha=None):
    gx, ga = backends.EAGER.backward(kind, p.double(), g.double(), alpha, alpha is not None)
    return gx.float(), None if ga is None else ga.float().view(-1)


def _scores(n, d, seed):
    gen = torch.Generator().manual_seed(seed)
    return (torch.randn(n, d, generator=gen) * 2).to(DEVICE)


@pytest.mark.parametrize("shape", SHAPES)
@pytest.mark.parametrize("kind", ["sparsemax", "entmax15"])
def test_fixed_mappings_match_eager(kind, shape):
    x = _scores(*shape, seed=shape[1])
    p = getattr(rowwise, f"{kind}_fwd")(x)
    ref = _eager(kind, x.cpu()).to(DEVICE)
    torch.testing.assert_close(p, ref, atol=1e-6, rtol=1e-5)
    g = _scores(*shape, seed=7)
    gx = getattr(rowwise, f"{kind}_bwd")(ref, g)
    torch.testing.assert_close(gx, _eager_grad(kind, ref.cpu(), g.cpu())[0].to(DEVICE),
                               atol=1e-5, rtol=1e-5)


@pytest.mark.parametrize("shape", SHAPES)
def test_alpha_entmax_per_row_matches_eager(shape):
    n, d = shape
    x = _scores(n, d, seed=d + 1)
    alpha = torch.linspace(1.05, 2.0, n).to(DEVICE)
    p = rowwise.entmax_alpha_fwd(x, alpha)
    col = alpha.cpu().double().view(-1, 1)
    ref = _eager("entmax", x.cpu(), col).to(DEVICE)
    torch.testing.assert_close(p, ref, atol=1e-6, rtol=1e-5)
    g = _scores(n, d, seed=3)
    gx, ga = rowwise.entmax_alpha_bwd(ref, g, alpha)
    want_x, want_a = _eager_grad("entmax", ref.cpu(), g.cpu(), col)
    torch.testing.assert_close(gx, want_x.to(DEVICE), atol=1e-5, rtol=1e-5)
    torch.testing.assert_close(ga, want_a.to(DEVICE), atol=1e-4, rtol=1e-4)


def test_special_rows():
    """NaN row → NaN; +inf entries share the mass; all −inf → zeros; −inf entries get 0."""
    inf = float("inf")
    x = torch.tensor([[1.0, float("nan"), 0.0, 2.0],
                      [inf, 0.0, inf, -1.0],
                      [-inf, -inf, -inf, -inf],
                      [0.5, -inf, 0.4, -inf]], device=DEVICE)
    for p in (rowwise.sparsemax_fwd(x), rowwise.entmax15_fwd(x),
              rowwise.entmax_alpha_fwd(x, torch.full((4,), 1.3, device=DEVICE))):
        assert torch.isnan(p[0]).all()
        torch.testing.assert_close(p[1], torch.tensor([0.5, 0.0, 0.5, 0.0], device=DEVICE))
        assert torch.equal(p[2], torch.zeros(4, device=DEVICE))
        assert p[3, 1] == 0 and p[3, 3] == 0
        torch.testing.assert_close(p[3].sum(), torch.tensor(1.0, device=DEVICE))


def test_half_precision_rows_are_computed_in_float32():
    x = _scores(4, 50, seed=9)
    p = rowwise.entmax15_fwd(x.to(torch.bfloat16))
    assert p.dtype == torch.bfloat16
    ref = _eager("entmax15", x.to(torch.bfloat16).float().cpu())
    torch.testing.assert_close(p.float().cpu(), ref, atol=1e-2, rtol=1e-2)


def test_applies_and_errors():
    assert rowwise.applies(torch.zeros(3, 5, device=DEVICE))
    assert not rowwise.applies(torch.zeros(3, 5, device=DEVICE, dtype=torch.float64))
    assert not rowwise.applies(torch.zeros(2, rowwise.MAX_BLOCK + 1, device=DEVICE))
    with pytest.raises(ValueError, match="one α per row"):
        rowwise.entmax_alpha_fwd(torch.zeros(3, 5, device=DEVICE), torch.ones(2, device=DEVICE))
    with pytest.raises(ValueError, match=r"\(N, d\)"):
        rowwise.sparsemax_fwd(torch.zeros(5, device=DEVICE))
