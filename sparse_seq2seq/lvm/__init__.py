"""Marginalising discrete and structured latent variables, sparsely or by sampling.

Correia, Niculae, Aziz & Martins, "Efficient Marginalization of Discrete and Structured Latent
Variables via Sparsity", NeurIPS 2020. ``build_estimator(name, latent)`` returns an estimator;
``estimator(scores, loss_fn) -> Estimate`` gives the objective to back-propagate and the number
of decoder calls. The paper's experiments, with their data and reporting, live in
:mod:`sparse_seq2seq.lvm.experiments`.
"""
from .base import Estimate, Estimator, LossFn, expect_over_support, sparse_entropy
from .estimators import ESTIMATORS, SPARSE, build_estimator

__all__ = [
    "ESTIMATORS", "SPARSE", "Estimate", "Estimator", "LossFn",
    "build_estimator", "expect_over_support", "sparse_entropy",
]
