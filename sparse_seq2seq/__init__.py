"""sparse_seq2seq: learnable sparsity for PyTorch models and fairseq.

The library imports no fairseq; ``sparse_seq2seq.fairseq_plugin`` registers the fairseq
components (load it with ``fairseq-train --user-dir user_dir``).
"""
from .mappings import (Entmax15, EntmaxAlpha, EntmaxBisect, Sparsemax, SparsemaxBisect,
                       entmax15, entmax_bisect, sparsemax, sparsemax_bisect, topk_sparsemax)
from .normmax import NormmaxBisect, normmax_bisect
from .budget import BudgetBisect, budget_bisect
from .losses import (Entmax15Loss, EntmaxBisectLoss, NormmaxBisectLoss, SparsemaxBisectLoss,
                     SparsemaxLoss, entmax15_loss, entmax_bisect_loss, normmax_bisect_loss,
                     sparsemax_bisect_loss, sparsemax_loss)

__version__ = "0.1.0"
