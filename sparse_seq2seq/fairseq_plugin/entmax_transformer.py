"""fairseq model ``entmax_transformer``: a Transformer whose attention normaliser is chosen
per attention type — softmax, sparsemax, 1.5-entmax or α-entmax with α learned per head
(Correia, Niculae & Martins 2019) — and whose output layer follows the training loss.

Every attention is :class:`sparse_seq2seq.attention.SparseMultiheadAttention`; the layers
only override fairseq's ``build_*_attention`` hooks.
"""
from __future__ import annotations

from typing import Dict, Iterator, List, Optional, Tuple

import torch
from fairseq.distributed import fsdp_wrap
from fairseq.logging import metrics
from fairseq.models import register_model, register_model_architecture
from fairseq.models.transformer import TransformerConfig
from fairseq.models.transformer.transformer_legacy import (
    TransformerModel, base_architecture, transformer_iwslt_de_en, transformer_wmt_en_de)
from fairseq.models.transformer import TransformerDecoder, TransformerEncoder
from fairseq.modules.transformer_layer import TransformerDecoderLayerBase, TransformerEncoderLayerBase
from fairseq.modules.checkpoint_activations import checkpoint_wrapper
from torch import Tensor

from ..attention import SparseMultiheadAttention
from ..normalizers import NORMALIZERS
from .output_layer import normalized_output

ATTENTION_TYPES = {"enc": "encoder_attn_normalizer", "dec_self": "decoder_self_attn_normalizer",
                   "dec_cross": "decoder_cross_attn_normalizer"}


def add_attention_args(parser) -> None:
    """The attention flags, shared by every model of the plugin."""
    for flag, what in (("encoder-attn-normalizer", "encoder self-attention"),
                       ("decoder-self-attn-normalizer", "decoder self-attention"),
                       ("decoder-cross-attn-normalizer", "decoder-encoder (context) attention")):
        parser.add_argument(f"--{flag}", choices=NORMALIZERS, help=f"normaliser of the {what}")
    parser.add_argument("--attn-alpha-init", type=str, metavar="A",
                        help="initial α of alpha_entmax heads: a number in (1, 2] or 'random'")
    parser.add_argument("--output-alpha", type=float, metavar="A",
                        help="α of the output layer at decoding (default: --loss-alpha of the "
                             "entmax_loss criterion the model was trained with, else 1 = softmax)")


def _attention(embed_dim, heads, dropout, normalizer, alpha_init, **kwargs):
    return SparseMultiheadAttention(embed_dim, heads, dropout=dropout, normalizer=normalizer,
                                    alpha_init=alpha_init, **kwargs)


class EntmaxEncoderLayer(TransformerEncoderLayerBase):
    def __init__(self, cfg, normalizer: str, alpha_init):
        object.__setattr__(self, "_attn_options", (normalizer, alpha_init))
        super().__init__(cfg)

    def build_self_attention(self, embed_dim, cfg):
        return _attention(embed_dim, cfg.encoder.attention_heads, cfg.attention_dropout,
                          *self._attn_options, self_attention=True)


class EntmaxDecoderLayer(TransformerDecoderLayerBase):
    def __init__(self, cfg, self_normalizer: str, cross_normalizer: str, alpha_init,
                 no_encoder_attn: bool = False):
        object.__setattr__(self, "_attn_options", (self_normalizer, cross_normalizer, alpha_init))
        super().__init__(cfg, no_encoder_attn)

    def build_self_attention(self, embed_dim, cfg, add_bias_kv=False, add_zero_attn=False):
        if add_bias_kv or add_zero_attn:
            raise ValueError("add_bias_kv / add_zero_attn are not supported by sparse attention")
        self_norm, _, alpha_init = self._attn_options
        return _attention(embed_dim, cfg.decoder.attention_heads, cfg.attention_dropout,
                          self_norm, alpha_init, self_attention=not cfg.cross_self_attention)

    def build_encoder_attention(self, embed_dim, cfg):
        _, cross_norm, alpha_init = self._attn_options
        return _attention(embed_dim, cfg.decoder.attention_heads, cfg.attention_dropout,
                          cross_norm, alpha_init, kdim=cfg.encoder.embed_dim,
                          vdim=cfg.encoder.embed_dim, encoder_decoder_attention=True)


def _wrap(layer, cfg):
    if cfg.checkpoint_activations:
        layer = checkpoint_wrapper(layer, offload_to_cpu=cfg.offload_activations)
    return fsdp_wrap(layer, min_num_params=cfg.min_params_to_wrap if not cfg.checkpoint_activations else 0)


class EntmaxTransformerEncoder(TransformerEncoder):
    def build_encoder_layer(self, args):
        cfg = TransformerConfig.from_namespace(self.args)
        return _wrap(EntmaxEncoderLayer(cfg, self.args.encoder_attn_normalizer,
                                        self.args.attn_alpha_init), cfg)


class EntmaxTransformerDecoder(TransformerDecoder):
    def build_decoder_layer(self, args, no_encoder_attn=False):
        cfg = TransformerConfig.from_namespace(self.args)
        layer = EntmaxDecoderLayer(cfg, self.args.decoder_self_attn_normalizer,
                                   self.args.decoder_cross_attn_normalizer,
                                   self.args.attn_alpha_init, no_encoder_attn)
        return _wrap(layer, cfg)


def attention_modules(model: torch.nn.Module) -> Iterator[Tuple[str, int, SparseMultiheadAttention]]:
    """(attention type, layer index, module) for every attention of an encoder-decoder."""
    for kind, stack, attr in (("enc", "encoder", "self_attn"), ("dec_self", "decoder", "self_attn"),
                              ("dec_cross", "decoder", "encoder_attn")):
        layers = getattr(getattr(model, stack, None), "layers", [])
        for index, layer in enumerate(layers):
            module = getattr(layer, attr, None)
            if isinstance(module, SparseMultiheadAttention):
                yield kind, index, module


def log_alphas(model: torch.nn.Module) -> None:
    """Log α per head as scalars ``alpha/<type>_l<layer>_h<head>`` (training only)."""
    learned = [(f"{kind}_l{i}", m.alpha) for kind, i, m in attention_modules(model)
               if m.normalizer.name == "alpha_entmax"]
    if not learned:
        return
    values = torch.stack([a for _, a in learned]).detach().float().cpu().tolist()
    for (name, _), heads in zip(learned, values):
        for h, value in enumerate(heads):
            metrics.log_scalar(f"alpha/{name}_h{h}", value, weight=1, round=3)


@register_model("entmax_transformer")
class EntmaxTransformerModel(TransformerModel):
    """Transformer with sparse attention (``--*-attn-normalizer``) and an entmax output layer."""

    @classmethod
    def add_args(cls, parser):
        super().add_args(parser)
        add_attention_args(parser)

    @classmethod
    def build_model(cls, args, task):
        entmax_base_architecture(args)
        return super().build_model(args, task)

    @classmethod
    def build_encoder(cls, args, src_dict, embed_tokens):
        return EntmaxTransformerEncoder(args, src_dict, embed_tokens)

    @classmethod
    def build_decoder(cls, args, tgt_dict, embed_tokens):
        return EntmaxTransformerDecoder(args, tgt_dict, embed_tokens,
                                        no_encoder_attn=getattr(args, "no_cross_attention", False))

    def forward(self, *args, **kwargs):
        if self.training:
            log_alphas(self)
        return super().forward(*args, **kwargs)

    @property
    def output_alpha(self) -> float:
        return output_alpha(self.args)

    def get_normalized_probs(self, net_output: Tuple[Tensor, Optional[Dict[str, List[Optional[Tensor]]]]],
                             log_probs: bool, sample: Optional[Dict[str, Tensor]] = None):
        """Softmax, or the entmax the model was trained with; log 0 = −inf."""
        if self.output_alpha == 1:
            return super().get_normalized_probs(net_output, log_probs, sample)
        return normalized_output(net_output[0], self.output_alpha, log_probs)


def output_alpha(args) -> float:
    explicit = getattr(args, "output_alpha", None)
    if explicit is not None:
        return float(explicit)
    if getattr(args, "criterion", None) == "entmax_loss":
        return float(getattr(args, "loss_alpha", 1.5))
    return 1.0


@register_model_architecture("entmax_transformer", "entmax_transformer")
def entmax_base_architecture(args):
    for name in ATTENTION_TYPES.values():
        setattr(args, name, getattr(args, name, None) or "alpha_entmax")
    args.attn_alpha_init = getattr(args, "attn_alpha_init", None) or "1.5"
    base_architecture(args)


@register_model_architecture("entmax_transformer", "entmax_transformer_iwslt_de_en")
def entmax_transformer_iwslt_de_en(args):
    entmax_base_architecture(args)
    transformer_iwslt_de_en(args)


@register_model_architecture("entmax_transformer", "entmax_transformer_wmt_en_de")
def entmax_transformer_wmt_en_de(args):
    entmax_base_architecture(args)
    transformer_wmt_en_de(args)


@register_model_architecture("entmax_transformer", "entmax_transformer_tiny")
def entmax_transformer_tiny(args):
    """Small and fast: 2+2 layers, 128 dims, 4 heads (tests and the CPU demo)."""
    args.encoder_embed_dim = getattr(args, "encoder_embed_dim", 128)
    args.encoder_ffn_embed_dim = getattr(args, "encoder_ffn_embed_dim", 256)
    args.encoder_layers = getattr(args, "encoder_layers", 2)
    args.encoder_attention_heads = getattr(args, "encoder_attention_heads", 4)
    args.decoder_embed_dim = getattr(args, "decoder_embed_dim", args.encoder_embed_dim)
    args.decoder_ffn_embed_dim = getattr(args, "decoder_ffn_embed_dim", args.encoder_ffn_embed_dim)
    args.decoder_layers = getattr(args, "decoder_layers", 2)
    args.decoder_attention_heads = getattr(args, "decoder_attention_heads", 4)
    entmax_base_architecture(args)
