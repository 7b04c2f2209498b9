"""The BERT encoder of the post-editing model: it reads ``[CLS] src [SEP] mt [SEP]``.

Correia & Martins (ACL 2019, §3) feed the source and the machine translation to one BERT
encoder as a sentence pair: segment A for ``[CLS] src [SEP]``, segment B for ``mt [SEP]``,
and positions that restart at 0 where the translation begins, so that each part uses the
positions BERT was pre-trained with. :func:`pair_segments_and_positions` derives both from
the token ids alone (the first ``[SEP]`` closes segment A), so any padding side works.
"""
from __future__ import annotations

from typing import List, Optional, Tuple, Union

import torch
from torch import Tensor, nn

from .config import BertSizes
from .layers import BertEmbeddings, BertEncoderLayer, init_bert_weights

SEGMENT_A, SEGMENT_B = 0, 1


def pair_segments_and_positions(tokens: Tensor, sep_id: int, pad_id: int) -> Tuple[Tensor, Tensor]:
    """Segment ids and positions of a batch of ``[CLS] src [SEP] mt [SEP]`` (batch × time).

    Tokens up to and including the first ``[SEP]`` are segment A with positions 0, 1, …;
    the rest is segment B with positions restarting at 0. Padding gets segment A, position 0.
    A row without ``[SEP]`` is all segment A.
    """
    real = tokens.ne(pad_id)
    is_sep = tokens.eq(sep_id) & real
    seps_before = torch.cumsum(is_sep.long(), dim=1) - is_sep.long()  # [SEP]s strictly before
    segments = (seps_before > 0).long()
    count = torch.cumsum(real.long(), dim=1) - 1  # index among the real tokens
    length_a = (real & segments.eq(SEGMENT_A)).sum(dim=1, keepdim=True)
    positions = torch.where(segments.eq(SEGMENT_B), count - length_a, count)
    positions = positions.masked_fill(~real, 0)
    segments = segments.masked_fill(~real, SEGMENT_A)
    return segments, positions


class BertEncoder(nn.Module):
    """Embeddings and a stack of :class:`BertEncoderLayer` (plain PyTorch)."""

    def __init__(self, sizes: BertSizes, normalizer: str = "softmax",
                 alpha_init: Union[float, str] = 1.5,
                 embeddings: Optional[BertEmbeddings] = None):
        super().__init__()
        self.sizes = sizes
        self.embeddings = embeddings if embeddings is not None else BertEmbeddings(sizes)
        self.layers = nn.ModuleList(BertEncoderLayer(sizes, normalizer, alpha_init)
                                    for _ in range(sizes.num_layers))
        init_bert_weights(self, sizes.initializer_range)

    def forward(self, tokens: Tensor, segments: Tensor, positions: Tensor,
                return_all_hiddens: bool = False) -> Tuple[Tensor, Tensor, List[Tensor]]:
        """tokens, segments, positions: batch × time. Returns the output (time × batch × C),
        the padding mask (batch × time, true at pads) and, if asked, every layer's output."""
        padding_mask = tokens.eq(self.sizes.pad_token_id)
        x = self.embeddings(tokens, segments, positions)
        x = x.transpose(0, 1)
        states: List[Tensor] = [x] if return_all_hiddens else []
        mask = padding_mask if padding_mask.any() else None
        for layer in self.layers:
            x = layer(x, mask)
            if return_all_hiddens:
                states.append(x)
        return x, padding_mask, states
