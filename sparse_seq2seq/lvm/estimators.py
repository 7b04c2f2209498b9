"""One registry for every estimator of E_π[ℓ]: ``build_estimator(name, latent, **options)``.

Names: sparse and exact marginalisation (``sparsemax``, ``topk_sparsemax``, ``sparsemap``,
``sparsemap_budget``, ``dense``) and the sampling baselines (``sfe``, ``sfe_plus``, ``nvil``,
``gumbel``, ``st_gumbel``, ``sum_and_sample``). Every estimator is called as
``estimator(scores, loss_fn, **context) -> Estimate`` (see :mod:`sparse_seq2seq.lvm.base`).
"""
from __future__ import annotations

from typing import Any, Dict

from .base import Estimator
from .marginalization import Dense, SparseMAP, Sparsemax, TopKSparsemax
from .monte_carlo import NVIL, SFE, STGumbel, Gumbel, SFEPlus, SumAndSample

__all__ = ["ESTIMATORS", "SPARSE", "build_estimator"]

ESTIMATORS = (
    "sparsemax", "topk_sparsemax", "sparsemap", "sparsemap_budget", "dense",
    "sfe", "sfe_plus", "nvil", "gumbel", "st_gumbel", "sum_and_sample",
)
SPARSE = ("sparsemax", "topk_sparsemax", "sparsemap", "sparsemap_budget")


def build_estimator(name: str, latent: str = "categorical", **options: Any) -> Estimator:
    """Build estimator ``name`` for latent space ``latent`` ('categorical' or 'bitvector').

    Options: ``k`` (topk_sparsemax, sum_and_sample), ``budget`` (sparsemap_budget),
    ``encoding`` (sparsemap, sparsemap_budget: ``states`` or ``bits``), ``temperature``
    (gumbel, st_gumbel). Options an estimator does not use are ignored.
    """
    if latent not in ("categorical", "bitvector"):
        raise ValueError(f"unknown latent space {latent!r}")
    opts: Dict[str, Any] = {key: val for key, val in options.items() if val is not None}
    if name == "dense":
        return Dense(latent)
    if name == "sparsemax":
        return Sparsemax(latent)
    if name == "topk_sparsemax":
        return TopKSparsemax(latent, k=int(opts.get("k", 10)))
    encoding = str(opts.get("encoding", "states"))
    if name == "sparsemap":
        return SparseMAP(latent, encoding=encoding)
    if name == "sparsemap_budget":
        if "budget" not in opts:
            raise ValueError("sparsemap_budget needs budget=<B>")
        est = SparseMAP(latent, budget=int(opts["budget"]), encoding=encoding)
        est.name = "sparsemap_budget"
        return est
    if name == "sfe":
        return SFE(latent)
    if name == "sfe_plus":
        return SFEPlus(latent)
    if name == "nvil":
        return NVIL(latent)
    if name == "gumbel":
        return Gumbel(latent, temperature=float(opts.get("temperature", 1.0)))
    if name == "st_gumbel":
        return STGumbel(latent, temperature=float(opts.get("temperature", 1.0)))
    if name == "sum_and_sample":
        return SumAndSample(latent, k=int(opts.get("k", 1)))
    raise ValueError(f"unknown estimator {name!r}; choose from {', '.join(ESTIMATORS)}")
