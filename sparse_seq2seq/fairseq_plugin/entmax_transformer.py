"""fairseq model ``entmax_transformer``: a Transformer whose attention normaliser is chosen
per attention type — softmax, sparsemax, 1.5-entmax or α-entmax with α learned per head
(Correia, Niculae & Martins 2019) — and whose output layer follows the training loss.

Every attention is :class:`sparse_seq2seq.attention.SparseMultiheadAttention`; the layers
only override fairseq's ``build_*_attention`` hooks.
"""
from __future__ import annotations

from fairseq.distributed import fsdp_wrap
from fairseq.models import register_model, register_model_architecture
from fairseq.models.transformer import TransformerConfig, TransformerDecoder, TransformerEncoder
from fairseq.models.transformer.transformer_legacy import (
    TransformerModel, base_architecture, transformer_iwslt_de_en, transformer_wmt_en_de)
from fairseq.modules.checkpoint_activations import checkpoint_wrapper
from fairseq.modules.transformer_layer import TransformerDecoderLayerBase, TransformerEncoderLayerBase

from ..registry import attention_modules, set_attention_defaults  # noqa: F401
from .model_common import AttentionOptions, SparseAttentionModelMixin, add_model_args, output_alpha  # noqa: F401

# ``attention_modules`` and ``output_alpha`` are re-exported for code that imported them here.


class EntmaxEncoderLayer(TransformerEncoderLayerBase):
    def __init__(self, cfg, attention: AttentionOptions):
        object.__setattr__(self, "attention_options", attention)  # read by the build hook in super().__init__
        super().__init__(cfg)

    def build_self_attention(self, embed_dim, cfg):
        return self.attention_options.build(embed_dim, cfg.encoder.attention_heads, cfg.attention_dropout,
                                            self_attention=True)


class EntmaxDecoderLayer(TransformerDecoderLayerBase):
    def __init__(self, cfg, self_attention: AttentionOptions, cross_attention: AttentionOptions,
                 no_encoder_attn: bool = False):
        object.__setattr__(self, "self_attention_options", self_attention)
        object.__setattr__(self, "cross_attention_options", cross_attention)
        super().__init__(cfg, no_encoder_attn)

    def build_self_attention(self, embed_dim, cfg, add_bias_kv=False, add_zero_attn=False):
        if add_bias_kv or add_zero_attn:
            raise ValueError("add_bias_kv / add_zero_attn are not supported by sparse attention")
        return self.self_attention_options.build(embed_dim, cfg.decoder.attention_heads, cfg.attention_dropout,
                                                 self_attention=not cfg.cross_self_attention)

    def build_encoder_attention(self, embed_dim, cfg):
        return self.cross_attention_options.build(embed_dim, cfg.decoder.attention_heads, cfg.attention_dropout,
                                                  kdim=cfg.encoder.embed_dim, vdim=cfg.encoder.embed_dim,
                                                  encoder_decoder_attention=True)


def _wrap(layer, cfg):
    if cfg.checkpoint_activations:
        layer = checkpoint_wrapper(layer, offload_to_cpu=cfg.offload_activations)
    return fsdp_wrap(layer, min_num_params=cfg.min_params_to_wrap if not cfg.checkpoint_activations else 0)


class EntmaxTransformerEncoder(TransformerEncoder):
    def build_encoder_layer(self, args):
        cfg = TransformerConfig.from_namespace(self.args)
        return _wrap(EntmaxEncoderLayer(cfg, AttentionOptions.from_args(self.args, "enc")), cfg)


class EntmaxTransformerDecoder(TransformerDecoder):
    def build_decoder_layer(self, args, no_encoder_attn=False):
        cfg = TransformerConfig.from_namespace(self.args)
        layer = EntmaxDecoderLayer(cfg, AttentionOptions.from_args(self.args, "dec_self"),
                                   AttentionOptions.from_args(self.args, "dec_cross"), no_encoder_attn)
        return _wrap(layer, cfg)


@register_model("entmax_transformer")
class EntmaxTransformerModel(SparseAttentionModelMixin, TransformerModel):
    """Transformer with sparse attention (``--*-attn-normalizer``) and an entmax output layer."""

    @classmethod
    def add_args(cls, parser):
        super().add_args(parser)
        add_model_args(parser)

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


@register_model_architecture("entmax_transformer", "entmax_transformer")
def entmax_base_architecture(args):
    set_attention_defaults(args, "alpha_entmax")
    base_architecture(args)


# The attention defaults first, then fairseq's namesake: it sets its sizes before calling
# ``base_architecture``, whose defaults would otherwise take their place.
@register_model_architecture("entmax_transformer", "entmax_transformer_iwslt_de_en")
def entmax_transformer_iwslt_de_en(args):
    set_attention_defaults(args, "alpha_entmax")
    transformer_iwslt_de_en(args)


@register_model_architecture("entmax_transformer", "entmax_transformer_wmt_en_de")
def entmax_transformer_wmt_en_de(args):
    set_attention_defaults(args, "alpha_entmax")
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
