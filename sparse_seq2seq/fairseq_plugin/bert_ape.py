"""fairseq model ``bert_ape``: BERT-initialised automatic post-editing (Correia & Martins,
ACL 2019, "A Simple and Effective Approach to Automatic Post-Editing with Transfer Learning").

The encoder is BERT reading ``[CLS] src [SEP] mt [SEP]`` (segments A/B, positions restarting
at the translation); the decoder is BERT with a causal mask and a context attention, reading
segment B, with embeddings and output projection tied to the encoder's. ``--bert-path``
names a Hugging Face BERT (local folder, or hub name with internet access) that initialises
both; the flags below reproduce the paper's ablation, and the defaults are its best set-up
(context attention initialised from self-attention, self-attention shared with the encoder).

Every attention is :class:`sparse_seq2seq.attention.SparseMultiheadAttention`, so the
``--*-attn-normalizer`` flags of ``entmax_transformer`` apply here too (default: softmax, as
BERT was pre-trained), α is logged the same way, and a model trained with the ``entmax_loss``
criterion decodes with entmax.
"""
from __future__ import annotations

import argparse
import logging
from typing import Dict, List, Optional, Tuple

from fairseq.models import (FairseqEncoder, FairseqEncoderDecoderModel, FairseqIncrementalDecoder,
                            register_model, register_model_architecture)
from torch import Tensor

from ..bert import BertDecoder, BertEmbeddings, BertEncoder, BertSizes, pair_segments_and_positions
from ..bert import checkpoint as bert_checkpoint
from ..bert import sharing
from ..registry import set_attention_defaults
from .model_common import SparseAttentionModelMixin, add_model_args

logger = logging.getLogger(__name__)

SIZE_FLAGS = {"bert_layers": "num_layers", "bert_hidden_size": "hidden_size",
              "bert_heads": "num_heads", "bert_ffn_size": "intermediate_size",
              "bert_max_positions": "max_positions"}


def _bool(text: str) -> bool:
    if str(text).lower() in ("true", "1", "yes"):
        return True
    if str(text).lower() in ("false", "0", "no"):
        return False
    raise argparse.ArgumentTypeError(f"expected true or false, got {text!r}")


class ApeEncoder(FairseqEncoder):
    """fairseq face of :class:`BertEncoder`; segments and positions come from the tokens."""

    def __init__(self, dictionary, bert: BertEncoder):
        super().__init__(dictionary)
        self.bert = bert
        self.sep_index, self.pad_index = dictionary.eos(), dictionary.pad()

    @property
    def layers(self):
        return self.bert.layers

    def forward(self, src_tokens: Tensor, src_lengths: Optional[Tensor] = None,
                return_all_hiddens: bool = False, **unused) -> Dict[str, List[Tensor]]:
        segments, positions = pair_segments_and_positions(src_tokens, self.sep_index, self.pad_index)
        x, padding_mask, states = self.bert(src_tokens, segments, positions, return_all_hiddens)
        return {"encoder_out": [x], "encoder_padding_mask": [padding_mask],
                "encoder_embedding": [], "encoder_states": states, "src_tokens": [],
                "src_lengths": [src_lengths] if src_lengths is not None else []}

    def reorder_encoder_out(self, encoder_out: Dict[str, List[Tensor]], new_order: Tensor):
        """The encoder output for batch rows ``new_order`` (beam search)."""
        return {
            "encoder_out": [x.index_select(1, new_order) for x in encoder_out["encoder_out"]],
            "encoder_padding_mask": [m.index_select(0, new_order)
                                     for m in encoder_out["encoder_padding_mask"]],
            "encoder_embedding": [],
            "encoder_states": [s.index_select(1, new_order) for s in encoder_out["encoder_states"]],
            "src_tokens": [],
            "src_lengths": [n.index_select(0, new_order) for n in encoder_out["src_lengths"]],
        }

    def max_positions(self) -> int:
        return 2 * self.bert.sizes.max_positions  # positions restart where mt begins


class ApeDecoder(FairseqIncrementalDecoder):
    """fairseq face of :class:`BertDecoder`, with incremental decoding for beam search."""

    def __init__(self, dictionary, bert: BertDecoder):
        super().__init__(dictionary)
        self.bert = bert

    @property
    def layers(self):
        return self.bert.layers

    def forward(self, prev_output_tokens: Tensor, encoder_out: Optional[Dict[str, List[Tensor]]] = None,
                incremental_state=None, features_only: bool = False,
                return_all_hiddens: bool = False, **unused) -> Tuple[Tensor, Dict]:
        x, extra = self.extract_features(prev_output_tokens, encoder_out, incremental_state,
                                         return_all_hiddens=return_all_hiddens)
        return (x if features_only else self.output_layer(x)), extra

    def extract_features(self, prev_output_tokens: Tensor,
                         encoder_out: Optional[Dict[str, List[Tensor]]] = None,
                         incremental_state=None, return_all_hiddens: bool = False, **unused):
        if encoder_out is None:
            raise ValueError("the post-editing decoder needs the encoder output")
        masks = encoder_out["encoder_padding_mask"]
        x, attn, states = self.bert(prev_output_tokens, encoder_out["encoder_out"][0],
                                    masks[0] if masks else None, incremental_state,
                                    need_attn=True, return_all_hiddens=return_all_hiddens)
        return x, {"attn": [attn], "inner_states": states}

    def output_layer(self, features: Tensor) -> Tensor:
        return self.bert.output_projection(features)

    def max_positions(self) -> int:
        return self.bert.sizes.max_positions


@register_model("bert_ape")
class BertApeModel(SparseAttentionModelMixin, FairseqEncoderDecoderModel):
    """BERT encoder-decoder for post-editing (task ``ape``), initialised from ``--bert-path``."""

    @staticmethod
    def add_args(parser) -> None:
        parser.add_argument("--bert-path", metavar="PATH",
                            help="Hugging Face BERT: a local folder (config.json, vocab.txt, "
                                 "weights) or a hub name; gives sizes, vocabulary and weights")
        parser.add_argument("--bert-weights", choices=("pretrained", "random"),
                            help="start from the checkpoint's weights or from random ones "
                                 "with its sizes (default: pretrained)")
        parser.add_argument("--bert-decoder-init", choices=("bert", "random"),
                            help="decoder layers from BERT's layers or random (default: bert)")
        parser.add_argument("--bert-ctx-attn-init", choices=("self", "random"),
                            help="context attention initialised from the self-attention of "
                                 "the same layer, or random (default: self)")
        parser.add_argument("--bert-share-self-attn", type=_bool, metavar="BOOL",
                            help="decoder self-attention is the encoder's (default: true)")
        parser.add_argument("--bert-tie-ctx-attn", type=_bool, metavar="BOOL",
                            help="context attention is the decoder self-attention (default: false)")
        parser.add_argument("--bert-share-ffn", type=_bool, metavar="BOOL",
                            help="decoder feed-forward blocks are the encoder's (default: false)")
        for flag, what in (("layers", "layers"), ("hidden-size", "model width"),
                           ("heads", "attention heads"), ("ffn-size", "feed-forward width"),
                           ("max-positions", "positions per segment")):
            parser.add_argument(f"--bert-{flag}", type=int, metavar="N",
                                help=f"{what} (set by the architecture; must match --bert-path)")
        parser.add_argument("--dropout", type=float, metavar="D",
                            help="dropout (default: the checkpoint's hidden_dropout_prob)")
        parser.add_argument("--attention-dropout", type=float, metavar="D",
                            help="attention dropout (default: the checkpoint's)")
        add_model_args(parser)

    @classmethod
    def build_model(cls, args, task, from_checkpoint: bool = False) -> "BertApeModel":
        bert_ape(args)
        from_checkpoint = from_checkpoint or getattr(task, "building_from_checkpoint", False)
        dictionary = task.source_dictionary
        if task.target_dictionary is not dictionary and task.target_dictionary != dictionary:
            raise ValueError("bert_ape needs one dictionary for source and target")
        sizes = _resolve_sizes(args, len(dictionary), dictionary.pad())
        embeddings = BertEmbeddings(sizes)
        encoder = BertEncoder(sizes, args.encoder_attn_normalizer, args.attn_alpha_init, embeddings)
        decoder = BertDecoder(sizes, embeddings, args.decoder_self_attn_normalizer,
                              args.decoder_cross_attn_normalizer, args.attn_alpha_init)
        if args.bert_path and args.bert_weights == "pretrained" and not from_checkpoint:
            _load_pretrained(args.bert_path, dictionary, encoder, decoder,
                             args.bert_decoder_init == "bert")
        if args.bert_share_self_attn:
            sharing.share_self_attention(decoder, encoder)
        if args.bert_ctx_attn_init == "self":
            sharing.init_context_from_self(decoder)
        if args.bert_tie_ctx_attn:
            sharing.tie_context_attention(decoder)
        if args.bert_share_ffn:
            sharing.share_feed_forward(decoder, encoder)
        return cls(args, ApeEncoder(dictionary, encoder), ApeDecoder(dictionary, decoder))

    def __init__(self, args, encoder: ApeEncoder, decoder: ApeDecoder):
        super().__init__(encoder, decoder)
        self.args = args

    def max_positions(self) -> Tuple[int, int]:
        return self.encoder.max_positions(), self.decoder.max_positions()


def _resolve_sizes(args, vocab_size: int, pad_index: int) -> BertSizes:
    """Sizes from the checkpoint this model was saved in, the BERT checkpoint, or the arch.

    The resolved sizes are kept in ``args.bert_sizes_json`` so that a saved model is rebuilt
    without the BERT folder.
    """
    arch_sizes = {field: getattr(args, flag, None) for flag, field in SIZE_FLAGS.items()}
    if getattr(args, "bert_sizes_json", None):
        sizes = BertSizes.from_json(args.bert_sizes_json)
    elif args.bert_path:
        sizes = bert_checkpoint.load_sizes(args.bert_path)
        clash = {k: (v, getattr(sizes, k)) for k, v in arch_sizes.items()
                 if v is not None and v != getattr(sizes, k)}
        if clash:
            detail = ", ".join(f"{k} {a} vs {b}" for k, (a, b) in clash.items())
            raise ValueError(f"--arch {args.arch} does not match {args.bert_path} ({detail}); "
                             "use --arch bert_ape to take every size from the checkpoint")
    else:
        missing = [flag for flag, field in SIZE_FLAGS.items() if arch_sizes[field] is None]
        if missing:
            raise ValueError("no --bert-path: give an architecture with sizes (bert_ape_base, "
                             f"bert_ape_tiny) or set {', '.join('--' + m.replace('_', '-') for m in missing)}")
        sizes = BertSizes(vocab_size=vocab_size, pad_token_id=pad_index,
                          **{k: v for k, v in arch_sizes.items()})
    sizes = sizes.replace(hidden_dropout=args.dropout, attention_dropout=args.attention_dropout)
    if sizes.vocab_size != vocab_size:
        raise ValueError(f"the data's dictionary has {vocab_size} entries but BERT's vocabulary "
                         f"has {sizes.vocab_size}: binarise the data with the same BERT")
    if sizes.pad_token_id != pad_index:
        raise ValueError(f"BERT pads with id {sizes.pad_token_id}, the dictionary with {pad_index}")
    args.bert_sizes_json = sizes.to_json()
    return sizes


def _load_pretrained(path: str, dictionary, encoder: BertEncoder, decoder: BertDecoder,
                     decoder_from_bert: bool) -> None:
    vocabulary = bert_checkpoint.load_vocabulary(path)
    if list(dictionary.symbols) != vocabulary:
        first = next((i for i, (a, b) in enumerate(zip(dictionary.symbols, vocabulary)) if a != b),
                     min(len(vocabulary), len(dictionary)))
        raise ValueError(f"the data were binarised with another vocabulary than {path} "
                         f"(first difference at id {first})")
    state = bert_checkpoint.load_state(path)
    copied = bert_checkpoint.load_encoder(encoder, state)
    if decoder_from_bert:
        copied += bert_checkpoint.load_decoder(decoder, state)
    logger.info(f"initialised {copied} tensors from BERT {path} "
                f"(decoder {'from BERT' if decoder_from_bert else 'random'})")


@register_model_architecture("bert_ape", "bert_ape")
def bert_ape(args) -> None:
    """Sizes from ``--bert-path``; the paper's best sharing set-up."""
    set_attention_defaults(args, "softmax")
    args.bert_path = getattr(args, "bert_path", None)
    args.bert_weights = getattr(args, "bert_weights", None) or "pretrained"
    args.bert_decoder_init = getattr(args, "bert_decoder_init", None) or "bert"
    args.bert_ctx_attn_init = getattr(args, "bert_ctx_attn_init", None) or "self"
    for name, default in (("bert_share_self_attn", True), ("bert_tie_ctx_attn", False),
                          ("bert_share_ffn", False)):
        if getattr(args, name, None) is None:
            setattr(args, name, default)
    for flag in SIZE_FLAGS:
        setattr(args, flag, getattr(args, flag, None))
    args.dropout = getattr(args, "dropout", None)
    args.attention_dropout = getattr(args, "attention_dropout", None)


@register_model_architecture("bert_ape", "bert_ape_base")
def bert_ape_base(args) -> None:
    """BERT-base sizes: 12 layers, 768 wide, 12 heads, feed-forward 3072, 512 positions."""
    for flag, value in (("bert_layers", 12), ("bert_hidden_size", 768), ("bert_heads", 12),
                        ("bert_ffn_size", 3072), ("bert_max_positions", 512)):
        setattr(args, flag, getattr(args, flag, None) or value)
    bert_ape(args)


@register_model_architecture("bert_ape", "bert_ape_tiny")
def bert_ape_tiny(args) -> None:
    """Tiny sizes for tests: 2 layers, 64 wide, 4 heads, feed-forward 128, 64 positions."""
    for flag, value in (("bert_layers", 2), ("bert_hidden_size", 64), ("bert_heads", 4),
                        ("bert_ffn_size", 128), ("bert_max_positions", 64)):
        setattr(args, flag, getattr(args, flag, None) or value)
    bert_ape(args)
