"""What the plugin's models (``entmax_transformer``, ``bert_ape``) share: per-head scalars
logged in training, the output layer that follows the training loss, and the options of one
attention.

* In training, every forward logs α of each α-entmax head (``alpha/<type>_l<i>_h<j>``,
  α = 1 + sigmoid(a), Correia et al. 2019, §3.2) and the attention density of each sparse
  head (``density/<type>_l<i>_h<j>``: the mean share of the unmasked keys a query gives
  non-zero probability, measured on that forward's batch). Validation logs neither.
* A model trained with the ``entmax_loss`` criterion decodes with the same α-entmax
  (Peters et al. 2019, §3); ``--output-alpha`` overrides it.
"""
from __future__ import annotations

from dataclasses import dataclass
from typing import Dict, List, Optional, Tuple, Union

import torch
from fairseq.logging import metrics
from torch import Tensor

from ..attention import SparseMultiheadAttention
from ..registry import (ALPHA_INIT_DEFAULT, add_attention_args, alpha_scalar_name, attention_modules,
                        attention_type, density_scalar_name)
from .output_layer import normalized_output
from .precision import guard_precision_flags


@dataclass(frozen=True)
class AttentionOptions:
    """The normaliser of one attention type and the initial α of its α-entmax heads."""

    normalizer: str
    alpha_init: Union[float, str] = ALPHA_INIT_DEFAULT

    @classmethod
    def from_args(cls, args, kind: str) -> "AttentionOptions":
        """The options of attention type ``kind`` ("enc", "dec_self", "dec_cross") in ``args``."""
        return cls(getattr(args, attention_type(kind).option), args.attn_alpha_init)

    def build(self, embed_dim: int, num_heads: int, dropout: float, **kwargs) -> SparseMultiheadAttention:
        return SparseMultiheadAttention(embed_dim, num_heads, dropout=dropout, normalizer=self.normalizer,
                                        alpha_init=self.alpha_init, **kwargs)


def add_model_args(parser) -> None:
    """The flags every model of the plugin adds: the attention flags of
    :mod:`sparse_seq2seq.registry`, and the precision flags checked (:mod:`.precision`)."""
    add_attention_args(parser)
    guard_precision_flags(parser)


def log_head_scalars(model: torch.nn.Module) -> None:
    """Log α of every α-entmax head and the last density of every sparse head."""
    names: List[str] = []
    values: List[Tensor] = []
    for kind, layer, module in attention_modules(model):
        normalizer = module.normalizer
        if normalizer.name == "alpha_entmax":
            names += [alpha_scalar_name(kind, layer, h) for h in range(module.num_heads)]
            values.append(module.alpha.detach().float().reshape(-1))
        density = getattr(normalizer, "last_density", None)
        if normalizer.name != "softmax" and density is not None:
            names += [density_scalar_name(kind, layer, h) for h in range(module.num_heads)]
            values.append(density.float().reshape(-1))
            normalizer.last_density = None
    if not values:
        return
    for name, value in zip(names, torch.cat(values).cpu().tolist()):  # one device sync
        metrics.log_scalar(name, value, weight=1, round=3)


def output_alpha(args) -> float:
    """α of the output layer: ``--output-alpha``, else the ``entmax_loss`` α, else 1 (softmax)."""
    explicit = getattr(args, "output_alpha", None)
    if explicit is not None:
        return float(explicit)
    if getattr(args, "criterion", None) == "entmax_loss":
        return float(getattr(args, "loss_alpha", 1.5))
    return 1.0


class SparseAttentionModelMixin:
    """Put first among the bases of a fairseq encoder-decoder model that keeps ``self.args``
    and whose attentions are :class:`SparseMultiheadAttention`."""

    args: object

    def forward(self, *args, **kwargs):
        if not self.training:
            return super().forward(*args, **kwargs)
        for _, _, module in attention_modules(self):
            module.normalizer.record_density = True
        out = super().forward(*args, **kwargs)
        log_head_scalars(self)
        return out

    @property
    def output_alpha(self) -> float:
        return output_alpha(self.args)

    def get_normalized_probs(self, net_output: Tuple[Tensor, Optional[Dict[str, List[Optional[Tensor]]]]],
                             log_probs: bool, sample: Optional[Dict[str, Tensor]] = None) -> Tensor:
        """Softmax, or the entmax the model was trained with; log 0 = −inf."""
        alpha = self.output_alpha
        if alpha == 1:
            return super().get_normalized_probs(net_output, log_probs, sample)
        return normalized_output(net_output[0], alpha, log_probs)
