"""BERT's building blocks in plain PyTorch, every attention a :class:`SparseMultiheadAttention`.

Post-layer-norm blocks as in BERT (Devlin et al. 2019): ``LN(x + dropout(sublayer(x)))``.
The decoder layer adds a context (encoder-decoder) attention between the self-attention and
the feed-forward block, as in the post-editing model of Correia & Martins (ACL 2019, §3).
Parameter names follow fairseq (``self_attn``, ``self_attn_layer_norm``, ``encoder_attn``,
``encoder_attn_layer_norm``, ``fc1``, ``fc2``, ``final_layer_norm``), so fairseq tools that
walk a model's layers find the attentions where they expect them.
"""
from __future__ import annotations

from typing import Callable, Dict, Optional, Tuple, Union

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from ..attention import IncrementalState, SparseMultiheadAttention
from .config import BertSizes

AlphaInit = Union[float, str]


def activation(name: str) -> Callable[[Tensor], Tensor]:
    """BERT's ``hidden_act`` as a function ("gelu" is the exact, erf-based GELU)."""
    table: Dict[str, Callable[[Tensor], Tensor]] = {
        "gelu": F.gelu,
        "gelu_new": lambda x: F.gelu(x, approximate="tanh"),
        "gelu_pytorch_tanh": lambda x: F.gelu(x, approximate="tanh"),
        "relu": F.relu, "silu": F.silu, "swish": F.silu,
    }
    return table[name]


def init_bert_weights(module: nn.Module, std: float) -> None:
    """BERT's initialisation: N(0, std) weights, zero biases, unit layer norms, zero pad row."""
    for sub in module.modules():
        if isinstance(sub, nn.Linear):
            nn.init.normal_(sub.weight, mean=0.0, std=std)
            if sub.bias is not None:
                nn.init.zeros_(sub.bias)
        elif isinstance(sub, nn.Embedding):
            nn.init.normal_(sub.weight, mean=0.0, std=std)
            if sub.padding_idx is not None:
                with torch.no_grad():
                    sub.weight[sub.padding_idx].zero_()
        elif isinstance(sub, nn.LayerNorm):
            nn.init.ones_(sub.weight)
            nn.init.zeros_(sub.bias)


class BertEmbeddings(nn.Module):
    """Word + position + segment embeddings, then layer norm and dropout (batch × time)."""

    def __init__(self, sizes: BertSizes):
        super().__init__()
        self.word_embeddings = nn.Embedding(sizes.vocab_size, sizes.hidden_size,
                                            padding_idx=sizes.pad_token_id)
        self.position_embeddings = nn.Embedding(sizes.max_positions, sizes.hidden_size)
        self.segment_embeddings = nn.Embedding(sizes.type_vocab_size, sizes.hidden_size)
        self.layer_norm = nn.LayerNorm(sizes.hidden_size, eps=sizes.layer_norm_eps)
        self.dropout = nn.Dropout(sizes.hidden_dropout)

    def forward(self, tokens: Tensor, segments: Tensor, positions: Tensor) -> Tensor:
        if positions.numel() and int(positions.max()) >= self.position_embeddings.num_embeddings:
            raise ValueError(f"position {int(positions.max())} is beyond the "
                             f"{self.position_embeddings.num_embeddings} positions of this BERT")
        x = (self.word_embeddings(tokens) + self.position_embeddings(positions)
             + self.segment_embeddings(segments))
        return self.dropout(self.layer_norm(x))


def _attention(sizes: BertSizes, normalizer: str, alpha_init: AlphaInit,
               **kind: bool) -> SparseMultiheadAttention:
    return SparseMultiheadAttention(sizes.hidden_size, sizes.num_heads,
                                    dropout=sizes.attention_dropout, normalizer=normalizer,
                                    alpha_init=alpha_init, **kind)


class _FeedForward(nn.Module):
    """The position-wise feed-forward block shared by both layer types."""

    def __init__(self, sizes: BertSizes):
        super().__init__()
        self.fc1 = nn.Linear(sizes.hidden_size, sizes.intermediate_size)
        self.fc2 = nn.Linear(sizes.intermediate_size, sizes.hidden_size)
        self.final_layer_norm = nn.LayerNorm(sizes.hidden_size, eps=sizes.layer_norm_eps)
        self.activation = activation(sizes.hidden_act)
        self.dropout = nn.Dropout(sizes.hidden_dropout)

    def feed_forward(self, x: Tensor) -> Tensor:
        return self.final_layer_norm(x + self.dropout(self.fc2(self.activation(self.fc1(x)))))


class BertEncoderLayer(_FeedForward):
    """Self-attention over the whole input, then the feed-forward block (time × batch × C)."""

    def __init__(self, sizes: BertSizes, normalizer: str = "softmax", alpha_init: AlphaInit = 1.5):
        super().__init__(sizes)
        self.self_attn = _attention(sizes, normalizer, alpha_init, self_attention=True)
        self.self_attn_layer_norm = nn.LayerNorm(sizes.hidden_size, eps=sizes.layer_norm_eps)

    def forward(self, x: Tensor, padding_mask: Optional[Tensor]) -> Tensor:
        attn, _ = self.self_attn(x, x, x, key_padding_mask=padding_mask, need_weights=False)
        x = self.self_attn_layer_norm(x + self.dropout(attn))
        return self.feed_forward(x)


class BertDecoderLayer(_FeedForward):
    """Causal self-attention, context attention over the encoder output, feed-forward."""

    def __init__(self, sizes: BertSizes, self_normalizer: str = "softmax",
                 context_normalizer: str = "softmax", alpha_init: AlphaInit = 1.5):
        super().__init__(sizes)
        self.self_attn = _attention(sizes, self_normalizer, alpha_init, self_attention=True)
        self.self_attn_layer_norm = nn.LayerNorm(sizes.hidden_size, eps=sizes.layer_norm_eps)
        self.encoder_attn = _attention(sizes, context_normalizer, alpha_init,
                                       encoder_decoder_attention=True)
        self.encoder_attn_layer_norm = nn.LayerNorm(sizes.hidden_size, eps=sizes.layer_norm_eps)

    def forward(self, x: Tensor, encoder_out: Tensor, encoder_padding_mask: Optional[Tensor],
                self_attn_mask: Optional[Tensor] = None,
                incremental_state: Optional[IncrementalState] = None,
                need_attn: bool = False) -> Tuple[Tensor, Optional[Tensor]]:
        """Returns the output and, with ``need_attn``, the context attention averaged over heads."""
        attn, _ = self.self_attn(x, x, x, attn_mask=self_attn_mask,
                                 incremental_state=incremental_state, need_weights=False)
        x = self.self_attn_layer_norm(x + self.dropout(attn))
        attn, weights = self.encoder_attn(x, encoder_out, encoder_out,
                                          key_padding_mask=encoder_padding_mask,
                                          incremental_state=incremental_state, static_kv=True,
                                          need_weights=need_attn)
        x = self.encoder_attn_layer_norm(x + self.dropout(attn))
        return self.feed_forward(x), weights
