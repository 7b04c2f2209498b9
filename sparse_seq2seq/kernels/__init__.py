"""Triton kernels: fused α-entmax attention and row-wise sparse mappings.

Importing this package does not import triton; the kernels are loaded on first use. On a
CPU they run only under Triton's interpreter (``TRITON_INTERPRET=1`` set before triton is
imported), which the tests use.
"""
from .attention import (kernel_applies, kernel_unavailable_reason, materialised_attention,
                        sparse_attention)

__all__ = ["sparse_attention", "materialised_attention", "kernel_applies",
           "kernel_unavailable_reason"]
