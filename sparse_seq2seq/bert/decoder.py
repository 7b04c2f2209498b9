"""The BERT decoder of the post-editing model: BERT with a causal mask and context attention.

Correia & Martins (ACL 2019, §3): the decoder is a BERT whose self-attention only looks at
earlier positions, with a context attention over the encoder output after each
self-attention. Its word, position and segment embeddings are the encoder's (tied), it
reads its input as segment B, and the output projection is the word embedding matrix.
Incremental decoding (one token at a time, keys and values cached by the attentions) gives
the same result as a full forward pass.
"""
from __future__ import annotations

from typing import List, Optional, Tuple, Union

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from ..attention import IncrementalState
from .config import BertSizes
from .encoder import SEGMENT_B
from .layers import BertDecoderLayer, BertEmbeddings, init_bert_weights


def causal_mask(length: int, like: Tensor) -> Tensor:
    """Additive (length × length) mask: −inf above the diagonal, 0 elsewhere."""
    mask = torch.full((length, length), float("-inf"), device=like.device, dtype=torch.float32)
    return torch.triu(mask, diagonal=1).to(like.dtype)


class BertDecoder(nn.Module):
    """A stack of :class:`BertDecoderLayer` on the encoder's embeddings (plain PyTorch)."""

    def __init__(self, sizes: BertSizes, embeddings: BertEmbeddings,
                 self_normalizer: str = "softmax", context_normalizer: str = "softmax",
                 alpha_init: Union[float, str] = 1.5):
        super().__init__()
        self.sizes = sizes
        self.layers = nn.ModuleList(
            BertDecoderLayer(sizes, self_normalizer, context_normalizer, alpha_init)
            for _ in range(sizes.num_layers))
        init_bert_weights(self.layers, sizes.initializer_range)
        self.embeddings = embeddings  # tied: assigned after initialisation, not re-initialised

    def forward(self, tokens: Tensor, encoder_out: Tensor, encoder_padding_mask: Optional[Tensor],
                incremental_state: Optional[IncrementalState] = None, need_attn: bool = False,
                return_all_hiddens: bool = False
                ) -> Tuple[Tensor, Optional[Tensor], List[Tensor]]:
        """tokens: batch × time, the whole prefix (only its last token is read when
        ``incremental_state`` is given); encoder_out: src × batch × C.

        Returns features (batch × time × C), the last layer's context attention averaged
        over heads (batch × time × src) if ``need_attn``, and every layer's output if asked.
        """
        length = tokens.size(1)
        if incremental_state is not None:
            tokens = tokens[:, -1:]
            positions = torch.full_like(tokens, length - 1)
            mask = None
        else:
            positions = torch.arange(length, device=tokens.device).unsqueeze(0).expand_as(tokens)
            mask = causal_mask(length, encoder_out) if length > 1 else None
        segments = torch.full_like(tokens, SEGMENT_B)
        x = self.embeddings(tokens, segments, positions).transpose(0, 1)
        if encoder_padding_mask is not None and not encoder_padding_mask.any():
            encoder_padding_mask = None
        states: List[Tensor] = [x] if return_all_hiddens else []
        attn: Optional[Tensor] = None
        for index, layer in enumerate(self.layers):
            last = index == len(self.layers) - 1
            x, weights = layer(x, encoder_out, encoder_padding_mask, mask, incremental_state,
                               need_attn=need_attn and last)
            if last:
                attn = weights  # (batch, time, src): the attention averages over heads
            if return_all_hiddens:
                states.append(x)
        return x.transpose(0, 1), attn, states

    def output_projection(self, features: Tensor) -> Tensor:
        """Logits over the vocabulary with the (tied) word embedding matrix."""
        return F.linear(features, self.embeddings.word_embeddings.weight)
