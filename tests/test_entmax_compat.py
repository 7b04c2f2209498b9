"""Drop-in: every public function, module and loss of the ``entmax`` package (1.3) called with
the same arguments — positional or by keyword, defaults, numpy scalars, one-element tensors,
tensor α of several shapes — gives our result too, and the same one."""
from __future__ import annotations

import inspect

import entmax as pkg
import numpy as np
import pytest
import torch

import sparse_seq2seq as ss

NAMES = ["sparsemax", "entmax15", "sparsemax_bisect", "entmax_bisect", "Sparsemax", "Entmax15",
         "SparsemaxBisect", "EntmaxBisect", "sparsemax_loss", "entmax15_loss",
         "sparsemax_bisect_loss", "entmax_bisect_loss", "SparsemaxLoss", "Entmax15Loss",
         "SparsemaxBisectLoss", "EntmaxBisectLoss", "normmax_bisect", "budget_bisect",
         "NormmaxBisect", "BudgetBisect", "normmax_bisect_loss", "NormmaxBisectLoss"]


def _params(obj):
    fn = obj.__init__ if inspect.isclass(obj) else obj
    return [(p.name, p.default) for p in inspect.signature(fn).parameters.values() if p.name != "self"]


@pytest.mark.parametrize("name", NAMES)
def test_same_parameters_in_the_same_order_with_the_same_defaults(name):
    assert _params(getattr(ss, name)) == _params(getattr(pkg, name))


def scores(shape=(5, 7), seed=0):
    gen = torch.Generator().manual_seed(seed)
    return torch.randn(shape, generator=gen, dtype=torch.float64) * 2


TARGET = torch.tensor([0, 6, 2, 3, 3])
K_VALUES = [None, 1, 3, 7, 20, np.int64(3), torch.tensor(2)]
N_ITER_VALUES = [50, 100, np.int32(80), torch.tensor(60)]
ALPHAS = [1.5, 2, 1.25, np.float32(1.3), np.float64(1.7), np.array(1.4), torch.tensor(1.5),
          torch.tensor(2), torch.tensor([1.6]), torch.full((5, 1), 1.3, dtype=torch.float64),
          torch.tensor([[1.1], [1.3], [1.5], [1.7], [1.9]], dtype=torch.float64),
          np.full((5, 1), 1.8), torch.tensor([[2]])]


def close(ours, theirs, atol=1e-7):
    torch.testing.assert_close(torch.as_tensor(ours).double(), torch.as_tensor(theirs).double(),
                               atol=atol, rtol=0)


def both(call, grad=True):
    """call(module) for the package and for us, values and (when asked) gradients in X."""
    out = []
    for module in (pkg, ss):
        X = scores().requires_grad_()
        y = call(module, X)
        g = torch.autograd.grad(y.sum(), X)[0] if grad else None
        out.append((y.detach(), g))
    (y_theirs, g_theirs), (y_ours, g_ours) = out
    close(y_ours, y_theirs)
    if grad:
        close(g_ours, g_theirs, atol=1e-6)


@pytest.mark.parametrize("k", K_VALUES, ids=repr)
@pytest.mark.parametrize("name", ["sparsemax", "entmax15"])
def test_k_everywhere_it_is_taken(name, k):
    both(lambda m, X: getattr(m, name)(X, -1, k))
    both(lambda m, X: getattr(m, name)(X, dim=0, k=k))
    both(lambda m, X: getattr(m, name.capitalize() if name == "sparsemax" else "Entmax15")(-1, k)(X))
    both(lambda m, X: getattr(m, f"{name}_loss")(X, TARGET, k))
    both(lambda m, X: getattr(m, "SparsemaxLoss" if name == "sparsemax" else "Entmax15Loss")(k)(X, TARGET))


@pytest.mark.parametrize("n_iter", [None, 0, 5] + N_ITER_VALUES, ids=repr)
def test_n_iter_of_sparsemax_bisect_is_taken_and_ignored(n_iter):
    # the package solves sparsemax by bisection with its own 50 steps, whatever n_iter says
    both(lambda m, X: m.sparsemax_bisect(X, -1, n_iter))
    both(lambda m, X: m.sparsemax_bisect(X, dim=-1, n_iter=n_iter, ensure_sum_one=False))
    both(lambda m, X: m.SparsemaxBisect(-1, n_iter)(X))
    both(lambda m, X: m.sparsemax_bisect_loss(X, TARGET, n_iter))
    both(lambda m, X: m.SparsemaxBisectLoss(n_iter)(X, TARGET))


@pytest.mark.parametrize("n_iter", N_ITER_VALUES, ids=repr)
def test_n_iter_of_entmax_bisect(n_iter):
    both(lambda m, X: m.entmax_bisect(X, 1.5, -1, n_iter))
    both(lambda m, X: m.EntmaxBisect(1.5, -1, n_iter)(X))
    both(lambda m, X: m.entmax_bisect_loss(X, TARGET, 1.5, n_iter))
    both(lambda m, X: m.EntmaxBisectLoss(1.5, n_iter)(X, TARGET))


@pytest.mark.parametrize("alpha", ALPHAS, ids=lambda a: f"{type(a).__name__}{tuple(np.shape(a))}")
def test_alpha_of_every_kind(alpha):
    both(lambda m, X: m.entmax_bisect(X, alpha))
    both(lambda m, X: m.entmax_bisect(X, alpha=alpha, dim=-1, n_iter=50, ensure_sum_one=False))
    both(lambda m, X: m.EntmaxBisect(alpha, -1, 50)(X))
    if len(np.shape(alpha)) == 2:
        # α as a column: the package's loss broadcasts its entropy (n,) against α (n, 1) into an
        # (n, n) matrix (and fails in backward for (1, 1)); ours is per row, so compare each row
        # with the package at that row's α
        ours = ss.entmax_bisect_loss(scores(), TARGET, alpha)
        column = np.broadcast_to(np.asarray(alpha, dtype=np.float64), (5, 1))
        for r in range(5):
            a = float(column[r, 0])
            close(ours[r], pkg.entmax_bisect_loss(scores()[r:r + 1], TARGET[r:r + 1], a)[0])
        return
    both(lambda m, X: m.entmax_bisect_loss(X, TARGET, alpha))
    both(lambda m, X: m.EntmaxBisectLoss(alpha, 50, -100, "sum")(X, TARGET))


@pytest.mark.parametrize("shape,dim", [((2, 1, 1), -1), ((3, 1), -1), ((2, 1, 7), 1), ((1,), -1),
                                       ((2, 3, 1), 2), ((), 0)])
def test_alpha_tensor_shapes_on_three_dims(shape, dim):
    X3 = scores((2, 3, 7), 4)
    alpha = (1.2 + 0.7 * torch.rand(shape, generator=torch.Generator().manual_seed(5),
                                    dtype=torch.float64))
    if dim == 0:
        X3 = X3.transpose(0, 2).contiguous()
    close(ss.entmax_bisect(X3, alpha, dim), pkg.entmax_bisect(X3, alpha, dim))
    a = alpha.clone().requires_grad_()
    b = alpha.clone().requires_grad_()
    dY = scores(X3.shape, 6)
    (ga_ours,) = torch.autograd.grad(ss.entmax_bisect(X3, a, dim), a, dY)
    (ga_theirs,) = torch.autograd.grad(pkg.entmax_bisect(X3, b, dim, n_iter=100), b, dY)
    close(ga_ours, ga_theirs, atol=1e-6)


IGNORE = [-100, 3, torch.tensor(3), torch.tensor(-100), np.int64(2), torch.tensor([3]), 2.0,
          torch.tensor(3.0)]


@pytest.mark.parametrize("reduction", ["elementwise_mean", "sum", "none"])
@pytest.mark.parametrize("ignore_index", IGNORE, ids=repr)
@pytest.mark.parametrize("cls", ["SparsemaxLoss", "Entmax15Loss", "SparsemaxBisectLoss", "EntmaxBisectLoss"])
def test_ignore_index_and_reduction(cls, ignore_index, reduction):
    both(lambda m, X: getattr(m, cls)(ignore_index=ignore_index, reduction=reduction)(X, TARGET).sum())
    ours = getattr(ss, cls)(ignore_index=ignore_index)
    assert type(ours.ignore_index) is int


def test_ignore_index_like_torch_nn():
    """A 0-dim integer tensor is what torch.nn losses take as well."""
    X = scores()
    torch.nn.CrossEntropyLoss(ignore_index=torch.tensor(3))(X, TARGET)
    close(ss.Entmax15Loss(ignore_index=torch.tensor(3))(X, TARGET),
          ss.Entmax15Loss(ignore_index=3)(X, TARGET))


@pytest.mark.parametrize("bad", [2.5, "3", torch.tensor([1, 2]), True, None])
def test_non_integer_ignore_index_is_refused_by_name(bad):
    with pytest.raises(TypeError, match="ignore_index"):
        ss.SparsemaxLoss(ignore_index=bad)


def test_dim_as_numpy_integer():
    both(lambda m, X: m.sparsemax(X, dim=np.int64(0)))
    both(lambda m, X: m.entmax_bisect(X, 1.5, np.int64(-1)))


def test_int32_targets():
    both(lambda m, X: m.sparsemax_loss(X, TARGET.int()) if m is ss else m.sparsemax_loss(X, TARGET))
