"""Parameter sharing between the BERT encoder and decoder (Correia & Martins, ACL 2019, §3.1).

The paper's variants, each a function here:

- :func:`init_context_from_self` — the context attention starts as a copy of the same
  layer's self-attention (the paper's best set-up); the copies then train apart.
- :func:`share_self_attention` — the decoder's self-attention *is* the encoder's (same
  tensors), the paper's best set-up as well.
- :func:`tie_context_attention` — the context attention *is* the decoder's self-attention.
- :func:`share_feed_forward` — the decoder's feed-forward block *is* the encoder's.

A shared or tied attention block means the four projections (``q_proj``, ``k_proj``,
``v_proj``, ``out_proj``) and the layer norm after it. Each attention keeps its own
normaliser — and its own learned α with ``alpha_entmax`` — since the normaliser is chosen
per attention type.
"""
from __future__ import annotations

from collections import defaultdict
from typing import Dict, List

import torch
from torch import nn

from ..attention import SparseMultiheadAttention
from .decoder import BertDecoder
from .encoder import BertEncoder

PROJECTIONS = ("q_proj", "k_proj", "v_proj", "out_proj")


def _check_depth(decoder: BertDecoder, encoder: BertEncoder) -> None:
    if len(decoder.layers) != len(encoder.layers):
        raise ValueError(f"cannot share layers between a {len(encoder.layers)}-layer encoder "
                         f"and a {len(decoder.layers)}-layer decoder")


def share_projections(target: SparseMultiheadAttention, source: SparseMultiheadAttention) -> None:
    """Make ``target`` use ``source``'s projection modules (one set of tensors)."""
    for name in PROJECTIONS:
        setattr(target, name, getattr(source, name))


def copy_projections(target: SparseMultiheadAttention, source: SparseMultiheadAttention) -> None:
    """Copy ``source``'s projection weights into ``target``'s own tensors."""
    with torch.no_grad():
        for name in PROJECTIONS:
            getattr(target, name).load_state_dict(getattr(source, name).state_dict())


def init_context_from_self(decoder: BertDecoder) -> None:
    """Initialise every context attention (and its layer norm) from the self-attention."""
    with torch.no_grad():
        for layer in decoder.layers:
            copy_projections(layer.encoder_attn, layer.self_attn)
            layer.encoder_attn_layer_norm.load_state_dict(layer.self_attn_layer_norm.state_dict())


def share_self_attention(decoder: BertDecoder, encoder: BertEncoder) -> None:
    """Decoder layer i's self-attention block becomes encoder layer i's."""
    _check_depth(decoder, encoder)
    for dec, enc in zip(decoder.layers, encoder.layers):
        share_projections(dec.self_attn, enc.self_attn)
        dec.self_attn_layer_norm = enc.self_attn_layer_norm


def tie_context_attention(decoder: BertDecoder) -> None:
    """Each context attention block becomes its layer's self-attention block."""
    for layer in decoder.layers:
        share_projections(layer.encoder_attn, layer.self_attn)
        layer.encoder_attn_layer_norm = layer.self_attn_layer_norm


def share_feed_forward(decoder: BertDecoder, encoder: BertEncoder) -> None:
    """Decoder layer i's feed-forward block (fc1, fc2, layer norm) becomes encoder layer i's."""
    _check_depth(decoder, encoder)
    for dec, enc in zip(decoder.layers, encoder.layers):
        dec.fc1, dec.fc2, dec.final_layer_norm = enc.fc1, enc.fc2, enc.final_layer_norm


def shared_parameters(module: nn.Module) -> List[List[str]]:
    """Groups of parameter names that are one tensor (only groups of two or more)."""
    groups: Dict[int, List[str]] = defaultdict(list)
    for name, param in module.named_parameters(remove_duplicate=False):
        groups[id(param)].append(name)
    return [names for names in groups.values() if len(names) > 1]
