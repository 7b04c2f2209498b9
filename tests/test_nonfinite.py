"""NaN and +inf scores follow one rule on every path (native, fused, eager), for every mapping,
loss and the attention: a NaN row is NaN, a +inf row is the limit (mass evenly on the +inf
entries, zero gradient), an all −inf row is zeros."""
from __future__ import annotations

import math

import entmax as pkg
import pytest
import torch

import sparse_seq2seq as ss
from sparse_seq2seq import fused, native, nonfinite
from sparse_seq2seq.attention import SparseMultiheadAttention

NAN, INF = math.nan, math.inf

MAPPINGS = {
    "sparsemax": lambda X, dim=-1: ss.sparsemax(X, dim),
    "entmax15": lambda X, dim=-1: ss.entmax15(X, dim),
    "sparsemax_bisect": lambda X, dim=-1: ss.sparsemax_bisect(X, dim),
    "entmax_bisect_0.7": lambda X, dim=-1: ss.entmax_bisect(X, 0.7, dim),
    "softmax_as_entmax_1": lambda X, dim=-1: ss.entmax_bisect(X, 1.0, dim),
    "entmax_bisect_1.3": lambda X, dim=-1: ss.entmax_bisect(X, 1.3, dim),
    "entmax_bisect_2": lambda X, dim=-1: ss.entmax_bisect(X, 2.0, dim),
    "topk_sparsemax_2": lambda X, dim=-1: ss.topk_sparsemax(X, 2, dim),
    "module_Entmax15": lambda X, dim=-1: ss.Entmax15(dim)(X),
}
# independent references for the finite rows and for the +inf limit
REFERENCE = {
    "sparsemax": pkg.sparsemax, "entmax15": pkg.entmax15, "sparsemax_bisect": pkg.sparsemax,
    "entmax_bisect_1.3": lambda X, dim=-1: pkg.entmax_bisect(X, 1.3, dim, n_iter=200),
    "entmax_bisect_2": pkg.sparsemax, "softmax_as_entmax_1": torch.softmax,
    "module_Entmax15": pkg.entmax15,
}


@pytest.fixture(params=["native", "fused", "eager"])
def path(request):
    """Every backend that runs on the CPU, one at a time."""
    native.configure(enabled=request.param == "native")
    fused.configure(enabled=request.param == "fused", min_numel=1)
    yield request.param
    native.configure(enabled=True)
    fused.configure(enabled=True, min_numel=1 << 13)


def rows_with_nonfinite(dtype=torch.float64):
    gen = torch.Generator().manual_seed(0)
    X = (torch.randn(8, 6, generator=gen, dtype=torch.float64) * 2).to(dtype)
    X[0, 2] = NAN                                   # one NaN
    X[1, 4] = INF                                   # one +inf
    X[2, [0, 3, 5]] = INF                           # three +inf
    X[3, 1], X[3, 2] = INF, -INF                    # +inf and −inf
    X[4, 0], X[4, 5] = NAN, INF                     # NaN wins over +inf
    X[5] = -INF                                     # fully masked
    X[6, [1, 2]] = -INF                             # partly masked, finite otherwise
    return X


EXPECTED_INF = {1: [4], 2: [0, 3, 5], 3: [1]}       # row -> its +inf entries
FINITE_ROWS = [6, 7]


@pytest.mark.parametrize("name", list(MAPPINGS))
def test_rule_on_every_path(path, name):
    X = rows_with_nonfinite().requires_grad_()
    out = MAPPINGS[name](X)
    for r in (0, 4):
        assert torch.isnan(out[r]).all(), (path, name, r, out[r])
    for r, cols in EXPECTED_INF.items():
        expected = torch.zeros(6, dtype=X.dtype)
        expected[cols] = 1.0 / len(cols)
        assert torch.equal(out[r], expected), (path, name, r, out[r])
    assert torch.equal(out[5], torch.zeros(6, dtype=X.dtype))
    assert (out[6, [1, 2]] == 0).all()
    # the other rows are what they would be alone
    alone = MAPPINGS[name](X.detach()[FINITE_ROWS])
    torch.testing.assert_close(out[FINITE_ROWS], alone, atol=1e-12, rtol=0)
    if name in REFERENCE:
        torch.testing.assert_close(out[FINITE_ROWS], REFERENCE[name](X.detach()[FINITE_ROWS], -1),
                                   atol=1e-7, rtol=0)
    # gradients: NaN rows NaN, +inf rows zero, the rest as alone
    dY = torch.randn(8, 6, generator=torch.Generator().manual_seed(1), dtype=X.dtype)
    (grad,) = torch.autograd.grad(out, X, dY)
    assert torch.isnan(grad[[0, 4]]).all()
    assert torch.equal(grad[[1, 2, 3, 5]], torch.zeros(4, 6, dtype=X.dtype))
    Xa = X.detach()[FINITE_ROWS].requires_grad_()
    (grad_alone,) = torch.autograd.grad(MAPPINGS[name](Xa), Xa, dY[FINITE_ROWS])
    torch.testing.assert_close(grad[FINITE_ROWS], grad_alone, atol=1e-12, rtol=0)


@pytest.mark.parametrize("name", [n for n in REFERENCE])
def test_inf_row_is_the_limit_of_growing_scores(name):
    """+inf entries as one large finite score C (the same for all): the reference mapping gives
    the same output, evenly on them."""
    X = rows_with_nonfinite()[[1, 2, 3]]
    big = torch.where(torch.isposinf(X), torch.full_like(X, 1e4), X)
    torch.testing.assert_close(MAPPINGS[name](X), REFERENCE[name](big, -1), atol=1e-9, rtol=0)


def test_sparsemax_of_the_reported_inputs():
    nan_out = ss.sparsemax(torch.tensor([0.1, NAN, 0.5]))
    inf_out = ss.sparsemax(torch.tensor([0.1, INF, 0.5]))
    assert torch.isnan(nan_out).all() and torch.isnan(torch.softmax(torch.tensor([0.1, NAN, 0.5]), 0)).all()
    assert torch.equal(inf_out, torch.tensor([0.0, 1.0, 0.0]))


@pytest.mark.parametrize("dtype", [torch.float16, torch.bfloat16, torch.float32])
def test_rule_in_every_dtype(path, dtype):
    X = rows_with_nonfinite(dtype)
    for fn in (ss.sparsemax, ss.entmax15, lambda z: ss.entmax_bisect(z, 1.5)):
        out = fn(X)
        assert out.dtype == dtype
        assert torch.isnan(out[[0, 4]]).all()
        assert torch.equal(out[1], torch.tensor([0, 0, 0, 0, 1, 0], dtype=dtype))
        assert torch.isfinite(out[[1, 2, 3, 5, 6, 7]]).all()


def test_rule_along_a_middle_dim(path):
    X = rows_with_nonfinite().T.contiguous()  # rows along dim 0
    ref = ss.sparsemax(rows_with_nonfinite(), -1).T
    torch.testing.assert_close(ss.sparsemax(X, 0), ref, atol=0, rtol=0, equal_nan=True)
    X3 = rows_with_nonfinite().view(2, 4, 6).transpose(1, 2)  # (2, 6, 4), rows along dim 1
    torch.testing.assert_close(ss.entmax15(X3, 1), ss.entmax15(rows_with_nonfinite()).view(2, 4, 6)
                               .transpose(1, 2), atol=1e-12, rtol=0, equal_nan=True)


def test_alpha_gradient_per_row(path):
    """α per row: NaN where its row has NaN, zero where its row has +inf, as alone elsewhere."""
    X = rows_with_nonfinite().requires_grad_()
    alpha = torch.linspace(1.1, 1.9, 8, dtype=torch.float64).unsqueeze(1).requires_grad_()
    out = ss.entmax_bisect(X, alpha)
    dY = torch.randn(8, 6, generator=torch.Generator().manual_seed(2), dtype=X.dtype)
    gx, ga = torch.autograd.grad(out, (X, alpha), dY)
    assert torch.isnan(ga[[0, 4]]).all() and torch.isnan(gx[[0, 4]]).all()
    assert torch.equal(ga[[1, 2, 3, 5]], torch.zeros(4, 1, dtype=X.dtype))
    Xa, aa = X.detach()[FINITE_ROWS].requires_grad_(), alpha.detach()[FINITE_ROWS].requires_grad_()
    ga_alone = torch.autograd.grad(ss.entmax_bisect(Xa, aa), aa, dY[FINITE_ROWS])[0]
    torch.testing.assert_close(ga[FINITE_ROWS], ga_alone, atol=1e-12, rtol=0)
    # one α shared by all rows (a head): any NaN row makes its gradient NaN
    shared = torch.tensor(1.4, dtype=torch.float64, requires_grad=True)
    (g_shared,) = torch.autograd.grad(ss.entmax_bisect(X, shared), shared, dY)
    assert torch.isnan(g_shared)
    (g_clean,) = torch.autograd.grad(ss.entmax_bisect(X[[1, 2, 3, 6, 7]], shared), shared, dY[[1, 2, 3, 6, 7]])
    assert torch.isfinite(g_clean)


LOSSES = {
    "sparsemax": (ss.sparsemax_loss, pkg.sparsemax_loss, 2.0),
    "entmax15": (ss.entmax15_loss, pkg.entmax15_loss, 1.5),
    "sparsemax_bisect": (ss.sparsemax_bisect_loss, pkg.sparsemax_bisect_loss, 2.0),
    "entmax_bisect_1.3": (lambda X, t: ss.entmax_bisect_loss(X, t, 1.3),
                          lambda X, t: pkg.entmax_bisect_loss(X, t, 1.3, 200), 1.3),
}


def tsallis_uniform(m, alpha):
    return (1 - m ** (1 - alpha)) / (alpha * (alpha - 1))


@pytest.mark.parametrize("name", list(LOSSES))
def test_loss_rule(path, name):
    ours, theirs, alpha = LOSSES[name]
    X = rows_with_nonfinite()[[0, 1, 2, 1, 7, 4]].clone().requires_grad_()
    target = torch.tensor([3, 4, 3, 0, 2, 5])
    loss = ours(X, target)
    assert torch.isnan(loss[[0, 5]]).all()                 # NaN scores: NaN loss
    assert float(loss[1]) == 0.0                            # the one +inf is the gold
    torch.testing.assert_close(loss[2], torch.tensor(tsallis_uniform(3, alpha), dtype=X.dtype))
    assert float(loss[3]) == INF                            # +inf elsewhere than the gold
    big = torch.where(torch.isposinf(X[2]), torch.full_like(X[2], 1e4), X[2])
    torch.testing.assert_close(loss[2], theirs(big[None], target[2:3])[0], atol=1e-9, rtol=0)
    torch.testing.assert_close(loss[4], theirs(X.detach()[4:5], target[4:5])[0], atol=1e-9, rtol=0)
    (grad,) = torch.autograd.grad(loss.sum(), X)
    assert torch.isnan(grad[[0, 5]]).all()
    assert torch.equal(grad[1], torch.zeros(6, dtype=X.dtype))  # p = e_gold: nothing to move
    assert torch.isfinite(grad[[1, 2, 3, 4]]).all()


def test_loss_modules_reduce_nan_and_ignore_it_where_ignored():
    X = rows_with_nonfinite()[[0, 6, 7]]
    target = torch.tensor([1, 0, 2])
    assert torch.isnan(ss.SparsemaxLoss()(X, target))
    assert torch.isnan(ss.EntmaxBisectLoss(alpha=1.5, reduction="sum")(X, target))
    ignored = torch.tensor([-100, 0, 2])
    out = ss.Entmax15Loss()(X, ignored)
    assert torch.isfinite(out)
    torch.testing.assert_close(out, ss.Entmax15Loss()(X[1:], ignored[1:]), atol=1e-12, rtol=0)
    # the package (no −inf in this row) agrees
    torch.testing.assert_close(ss.Entmax15Loss()(X[2:], ignored[2:]),
                               pkg.Entmax15Loss()(X[2:], ignored[2:]), atol=1e-9, rtol=0)


@pytest.mark.parametrize("normalizer", ["sparsemax", "entmax15", "alpha_entmax"])
def test_attention_nan_query_gives_nan_in_that_row_only(normalizer):
    torch.manual_seed(0)
    attn = SparseMultiheadAttention(16, 4, encoder_decoder_attention=True, normalizer=normalizer)
    query = torch.randn(5, 2, 16)
    key = torch.randn(7, 2, 16)
    pad = torch.zeros(2, 7, dtype=torch.bool)
    pad[1, 5:] = True
    clean, clean_w = attn(query, key, key, key_padding_mask=pad, need_head_weights=True)
    bad_query = query.clone()
    bad_query[3, 1, 0] = NAN
    out, weights = attn(bad_query, key, key, key_padding_mask=pad, need_head_weights=True)
    assert torch.isnan(out[3, 1]).all()                     # not a silent number
    keep = torch.ones(5, 2, dtype=torch.bool)
    keep[3, 1] = False
    torch.testing.assert_close(out[keep], clean[keep], atol=1e-6, rtol=0)
    assert torch.isnan(weights[:, 1, 3]).all()              # (heads, bsz, tgt, src)
    assert torch.equal(weights[:, 1, :3, 5:], torch.zeros(4, 3, 2))  # masked keys: exact zeros
    assert torch.equal(clean_w[:, 1, :, 5:], torch.zeros(4, 5, 2))


def test_finite_scores_whose_sum_overflows_are_not_taken_for_inf():
    X = torch.tensor([[3e38, 3e38, 0.0], [1.0, 2.0, -5.0]])
    assert float(X.sum()) == INF
    assert nonfinite.find(X, -1) is None
    torch.testing.assert_close(ss.sparsemax(X), torch.tensor([[0.5, 0.5, 0.0], [0.0, 1.0, 0.0]]))
