"""The backend contract: the order in which backends are tried, the one "not here" signal
(None), the one convergence rule, and the Triton slot's calling convention (with a stand-in
module, on the CPU)."""
from __future__ import annotations

import types

import pytest
import torch

from sparse_seq2seq import backends, entmax_bisect, fused, sparsemax
from sparse_seq2seq.backends import Backend


def recording(name, log, applies=True, answer=True):
    """A backend that logs its calls and answers with a constant (or None)."""
    def forward(kind, rows, alpha, n_iter, ensure_sum_one):
        log.append((name, "forward", kind))
        return torch.full_like(rows, float(len(name))) if answer else None

    def backward(kind, p, grad, alpha, want_alpha):
        log.append((name, "backward", kind))
        if not answer:
            return None
        ga = torch.full_like(p[:, :1], 7.0) if want_alpha else None
        return torch.full_like(p, float(len(name))), ga

    return Backend(name, lambda rows: applies, forward, backward)


def test_default_order():
    assert [b.name for b in backends.BACKENDS] == ["triton", "native", "fused", "eager"]


def test_select_keeps_the_order_and_drops_what_does_not_apply():
    log = []
    chain = [recording("a", log, applies=False), recording("bb", log), recording("ccc", log),
             recording("dddd", log, applies=False)]
    assert [b.name for b in backends.select(torch.zeros(2, 3), chain)] == ["bb", "ccc"]


def test_first_answer_wins_and_none_falls_through():
    log = []
    chain = [recording("a", log, applies=False), recording("bb", log, answer=False),
             recording("ccc", log), recording("dddd", log)]
    X = torch.randn(4, 5, 6)
    p = backends.forward("sparsemax", X, 1, backends=chain)
    assert p.shape == X.shape and bool((p == 3).all())
    assert log == [("bb", "forward", "sparsemax"), ("ccc", "forward", "sparsemax")]
    log.clear()
    gx, ga = backends.backward("entmax", p, torch.ones_like(p), 1, alpha=1.5, want_alpha=True,
                               backends=chain)
    assert gx.shape == X.shape and bool((gx == 3).all())
    assert ga.shape == (4, 1, 6) and bool((ga == 7).all())  # one value per row, along dim 1
    assert log == [("bb", "backward", "entmax"), ("ccc", "backward", "entmax")]


def test_no_backend_answering_is_an_error():
    log = []
    with pytest.raises(RuntimeError, match="no backend"):
        backends.forward("entmax15", torch.randn(2, 3), -1, backends=[recording("a", log, answer=False)])


def test_rows_and_alpha_reach_the_backend_in_row_layout():
    seen = {}

    def forward(kind, rows, alpha, n_iter, ensure_sum_one):
        seen.update(rows=rows.clone(), alpha=alpha, n_iter=n_iter, ensure=ensure_sum_one)
        return rows

    X = torch.randn(2, 5, 3)
    alpha = torch.tensor([[[1.2, 1.4, 1.6]], [[1.8, 1.9, 2.0]]])  # (2, 1, 3): one α per row
    out = backends.forward("entmax", X, 1, alpha, 17, False,
                           backends=[Backend("probe", lambda r: True, forward, None)])
    assert torch.equal(out, X)  # from_rows undoes to_rows
    assert torch.equal(seen["rows"], X.movedim(1, -1).reshape(6, 5))
    assert torch.equal(seen["alpha"], alpha.movedim(1, -1).reshape(6, 1))
    assert (seen["n_iter"], seen["ensure"]) == (17, False)


def test_convergence_rule():
    eps = torch.finfo(torch.float32).eps
    assert backends.converged(torch.tensor(50 * eps), torch.float32)
    assert not backends.converged(torch.tensor(200 * eps), torch.float32)
    assert not backends.converged(torch.tensor(float("nan")), torch.float32)
    assert not backends.converged(torch.tensor(1e-10), torch.float64)


def test_unconverged_fused_answer_goes_to_eager(monkeypatch):
    """A fused kernel whose rows' mass is off by more than the rule allows is not used."""
    calls = []

    def unsettled(X):
        calls.append(X.shape)
        return torch.zeros_like(X), torch.tensor(1e-3)

    X = torch.randn(6, 9, dtype=torch.float64)
    expected = backends.forward("sparsemax", X, -1, backends=[backends.EAGER])
    monkeypatch.setitem(backends._FUSED_FORWARD, "sparsemax", unsettled)
    monkeypatch.setattr(fused, "_COMPILED", {"sparsemax": unsettled})
    fused.configure(min_numel=1)
    try:
        out = backends.forward("sparsemax", X, -1, backends=[backends.FUSED, backends.EAGER])
    finally:
        fused.configure(min_numel=1 << 13)
    assert calls and torch.equal(out, expected)


def fake_rowwise(log):
    """A stand-in for sparse_seq2seq.kernels.rowwise that records how it is called."""
    def fwd(name):
        def run(x2d, *rest):
            log.append((name, x2d.shape, [(r.dtype, tuple(r.shape)) for r in rest]))
            return torch.softmax(x2d, -1)
        return run

    def bwd(name):
        def run(p2d, g2d, *rest):
            log.append((name, p2d.shape, [(r.dtype, tuple(r.shape)) for r in rest]))
            gx = g2d * p2d
            return (gx, torch.arange(p2d.shape[0], dtype=torch.float32)) if rest else gx
        return run

    return types.SimpleNamespace(
        applies=lambda x2d: True,
        sparsemax_fwd=fwd("sparsemax_fwd"), entmax15_fwd=fwd("entmax15_fwd"),
        entmax_alpha_fwd=fwd("entmax_alpha_fwd"), sparsemax_bwd=bwd("sparsemax_bwd"),
        entmax15_bwd=bwd("entmax15_bwd"), entmax_alpha_bwd=bwd("entmax_alpha_bwd"))


def test_triton_slot_calling_convention(monkeypatch):
    log = []
    monkeypatch.setattr(backends, "_TRITON", {"module": fake_rowwise(log), "tried": True})
    rows = torch.randn(4, 6)
    # CPU rows: the slot never applies, whatever the module says
    assert not backends.TRITON.applies(rows)
    assert backends.select(rows)[0].name != "triton"
    # the calls it makes on CUDA rows, made here on CPU rows
    assert torch.equal(backends._triton_forward("sparsemax", rows, None, 50, True), torch.softmax(rows, -1))
    backends._triton_forward("entmax15", rows, None, 50, True)
    backends._triton_forward("entmax", rows, 1.25, 50, True)
    backends._triton_forward("entmax", rows, torch.full((4, 1), 1.5, dtype=torch.float64), 50, True)
    assert backends._triton_forward("entmax", rows, 2.5, 50, True) is None  # α outside (1, 2]
    assert backends._triton_forward("entmax", rows, 1.5, 50, False) is None  # unnormalised: elsewhere
    gx, ga = backends._triton_backward("entmax", rows, rows, 1.5, True)
    assert ga.shape == (4, 1) and ga.dtype == rows.dtype and torch.equal(ga[:, 0], torch.arange(4.0))
    assert backends._triton_backward("sparsemax", rows, rows, None, False)[1] is None
    assert [entry[0] for entry in log] == ["sparsemax_fwd", "entmax15_fwd", "entmax_alpha_fwd",
                                           "entmax_alpha_fwd", "entmax_alpha_bwd", "sparsemax_bwd"]
    alpha_args = [entry[2] for entry in log if entry[0].startswith("entmax_alpha")]
    assert all(args == [(torch.float32, (4,))] for args in alpha_args)  # α per row, float32 (N,)


def test_triton_slot_is_empty_without_triton(monkeypatch):
    monkeypatch.setattr(backends, "_TRITON", {"module": None, "tried": False})
    monkeypatch.setattr(backends.importlib.util, "find_spec", lambda name: None)
    assert backends._triton_module() is None
    monkeypatch.setattr(backends, "_TRITON", {"module": None, "tried": False})
    monkeypatch.setattr(backends.importlib.util, "find_spec", lambda name: object())

    def broken(name):
        raise ImportError("no GPU kernels here")

    monkeypatch.setattr(backends.importlib, "import_module", broken)
    assert backends._triton_module() is None  # silently: the next backend runs


@pytest.mark.parametrize("kind", ["sparsemax", "entmax15", "entmax"])
def test_every_backend_on_cpu_agrees_with_eager(kind):
    """The CPU backends (native, fused) answer, and with the eager result."""
    gen = torch.Generator().manual_seed(0)
    X = torch.randn(300, 40, generator=gen, dtype=torch.float64) * 2
    alpha = None if kind != "entmax" else 1.05 + 0.9 * torch.rand(300, 1, generator=gen, dtype=torch.float64)
    eager = backends.forward(kind, X, -1, alpha, backends=[backends.EAGER])
    fused.configure(min_numel=1)
    try:
        for backend in (backends.NATIVE, backends.FUSED):
            p = backend.forward(kind, X, alpha, 50, True)
            assert p is not None, backend.name
            torch.testing.assert_close(p, eager, atol=1e-10, rtol=0)
    finally:
        fused.configure(min_numel=1 << 13)


def test_public_functions_go_through_the_dispatcher(monkeypatch):
    calls = []
    real = backends.forward

    def spy(kind, *args, **kwargs):
        calls.append(kind)
        return real(kind, *args, **kwargs)

    monkeypatch.setattr(backends, "forward", spy)
    x = torch.randn(3, 4, requires_grad=True)
    sparsemax(x).sum().backward()
    entmax_bisect(x.detach(), 1.3)
    assert calls == ["sparsemax", "entmax"]
