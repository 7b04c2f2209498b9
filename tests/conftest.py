"""Fixtures and collection rules shared by every test file.

Helpers that tests import live in modules of their own (``helpers``: float64 references;
``fairseq_helpers``: tiny Multi30k corpora and fairseq commands; ``ape_helpers``: APE
triplets and tiny BERTs; ``recipe_helpers``: recipe runs on a Multi30k slice;
``data_prep_helpers``; ``hf_helpers``), never in this file or in a test module.

Markers (registered in pyproject.toml): ``slow`` is set by the files and tests that train,
run fairseq's commands, a recipe or a benchmark; every other test gets ``unit`` here, so
``pytest -m "not slow"`` and ``pytest -m unit`` are the quick loop. ``cuda`` tests are skipped
where torch sees no CUDA GPU.

Without a GPU the Triton kernels run under Triton's interpreter. ``TRITON_INTERPRET`` is read
when a kernel is decorated, i.e. when the first test module that imports
``sparse_seq2seq.kernels`` is collected, so it is set here, before any test module.
"""
from __future__ import annotations

import os

import pytest
import torch

if not torch.cuda.is_available():
    os.environ.setdefault("TRITON_INTERPRET", "1")

from helpers import reference_entmax  # noqa: E402


def pytest_collection_modifyitems(config: pytest.Config, items: list[pytest.Item]) -> None:
    no_gpu = pytest.mark.skip(reason="needs a CUDA GPU")
    for item in items:
        if item.get_closest_marker("slow") is None:
            item.add_marker(pytest.mark.unit)
        if item.get_closest_marker("cuda") is not None and not torch.cuda.is_available():
            item.add_marker(no_gpu)


@pytest.fixture
def float64_default():
    """Every tensor created in the test is float64; the global default is restored afterwards.

    Use it for a whole file with ``pytestmark = pytest.mark.usefixtures("float64_default")``.
    """
    previous = torch.get_default_dtype()
    torch.set_default_dtype(torch.float64)
    yield
    torch.set_default_dtype(previous)


@pytest.fixture
def ref():
    """The float64 NumPy reference α-entmax, applied to tensors; returns a float64 tensor."""

    def apply(x: torch.Tensor, alpha=1.5, dim: int = -1) -> torch.Tensor:
        a = alpha.detach().double().cpu().numpy() if isinstance(alpha, torch.Tensor) else alpha
        return torch.from_numpy(reference_entmax(x.detach().double().cpu().numpy(), a, dim))

    return apply
