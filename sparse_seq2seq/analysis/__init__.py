"""What did the attention heads learn? Per-head α, support size, density, fully dense heads
and Jensen–Shannon head diversity (Correia, Niculae & Martins 2019, §5), figures, and the
``sparse-seq2seq-heads`` command.

:mod:`.stats` is plain PyTorch; :mod:`.training_log` reads α over training from fairseq's
text log or tensorboard events; :mod:`.collect` imports fairseq and :mod:`.plots`
matplotlib only when used.
"""
from .stats import HeadStatistics, available_keys, js_divergence, support_sizes, valid_pairs

__all__ = ["HeadStatistics", "available_keys", "js_divergence", "support_sizes", "valid_pairs"]
