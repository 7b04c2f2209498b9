"""Every sentence gets a batch, whatever ``--required-batch-size-multiple`` says.

fairseq's batcher (``fairseq.data.data_utils.batch_by_size``) leaves out the sentences after
the last batch whose size is a multiple of ``--required-batch-size-multiple`` (default 8):
``fairseq-generate`` on 101 sentences with ``--batch-size 8`` translates 96 and exits 0, and
training never sees the longest few sentences of its corpus (batches are built over indices
sorted by length). With the plugin loaded the sentences it left out are batched again with
multiple 1 under the same ``--max-tokens`` / ``--batch-size`` limits and appended, so the
batches fairseq builds stay as they are and none of the sentences is lost.
"""
from __future__ import annotations

from typing import Callable, List, Optional

import numpy as np
from fairseq.data import data_utils

_fairseq_batch_by_size = data_utils.batch_by_size


def batch_every_sentence(indices, num_tokens_fn: Callable[[int], int], num_tokens_vec=None,
                         max_tokens: Optional[int] = None, max_sentences: Optional[int] = None,
                         required_batch_size_multiple: int = 1,
                         fixed_shapes=None) -> List[np.ndarray]:
    """fairseq's ``batch_by_size`` (same arguments), plus batches for what it left out."""
    batches = _fairseq_batch_by_size(
        indices, num_tokens_fn, num_tokens_vec=num_tokens_vec, max_tokens=max_tokens,
        max_sentences=max_sentences, required_batch_size_multiple=required_batch_size_multiple,
        fixed_shapes=fixed_shapes)
    if required_batch_size_multiple <= 1 or fixed_shapes is not None:
        return batches
    indices = np.fromiter(indices, dtype=np.int64) if not isinstance(indices, np.ndarray) else indices
    placed = sum(len(batch) for batch in batches)
    if placed == len(indices):
        return batches
    left = ~np.isin(indices, np.concatenate(batches) if batches else indices[:0])
    vec = None if num_tokens_vec is None else np.asarray(num_tokens_vec)[left]
    rest = _fairseq_batch_by_size(indices[left], num_tokens_fn, num_tokens_vec=vec,
                                  max_tokens=max_tokens, max_sentences=max_sentences,
                                  required_batch_size_multiple=1)
    return list(batches) + list(rest)


def install() -> None:
    """Make fairseq's datasets batch with :func:`batch_every_sentence` (idempotent)."""
    data_utils.batch_by_size = batch_every_sentence
