"""Load a Hugging Face BERT checkpoint into :class:`BertEncoder` / :class:`BertDecoder`.

Correia & Martins (ACL 2019) initialise both the encoder and the decoder of their
post-editing model from one pre-trained BERT: the encoder takes BERT as it is, decoder
layer i takes BERT layer i's self-attention and feed-forward block. ``transformers`` reads
the checkpoint (a local folder with ``config.json`` and weights, or a hub name for users
with internet access); the weights are then copied by name, with every shape checked.
"""
from __future__ import annotations

import contextlib
from typing import Dict, Iterator, List, Tuple

import torch
from torch import Tensor, nn

from .config import BertSizes
from .decoder import BertDecoder
from .encoder import BertEncoder

EMBEDDINGS = (("word_embeddings.weight", "embeddings.word_embeddings.weight"),
              ("position_embeddings.weight", "embeddings.position_embeddings.weight"),
              ("segment_embeddings.weight", "embeddings.token_type_embeddings.weight"),
              ("layer_norm.weight", "embeddings.LayerNorm.weight"),
              ("layer_norm.bias", "embeddings.LayerNorm.bias"))
SELF_ATTENTION = (("self_attn.q_proj", "attention.self.query"),
                  ("self_attn.k_proj", "attention.self.key"),
                  ("self_attn.v_proj", "attention.self.value"),
                  ("self_attn.out_proj", "attention.output.dense"),
                  ("self_attn_layer_norm", "attention.output.LayerNorm"))
FEED_FORWARD = (("fc1", "intermediate.dense"), ("fc2", "output.dense"),
                ("final_layer_norm", "output.LayerNorm"))


class BertLoadError(RuntimeError):
    """The BERT checkpoint cannot be read or does not fit the model."""


@contextlib.contextmanager
def _quiet_transformers() -> Iterator[None]:
    from transformers.utils import logging as hf_logging
    level = hf_logging.get_verbosity()
    bars = hf_logging.is_progress_bar_enabled()
    hf_logging.set_verbosity_error()
    hf_logging.disable_progress_bar()
    try:
        yield
    finally:
        hf_logging.set_verbosity(level)
        if bars:
            hf_logging.enable_progress_bar()


def _explain(name_or_path: str, err: Exception) -> BertLoadError:
    return BertLoadError(
        f"cannot load BERT {name_or_path!r}: {err}. Give a local folder holding config.json, "
        "vocab.txt and the weights (model.safetensors or pytorch_model.bin), or a hub name "
        "with internet access (HF_HUB_OFFLINE unset).")


def load_sizes(name_or_path: str) -> BertSizes:
    """The sizes in a checkpoint's ``config.json``."""
    from transformers import BertConfig
    try:
        with _quiet_transformers():
            config = BertConfig.from_pretrained(name_or_path)
    except (OSError, ValueError) as err:
        raise _explain(name_or_path, err) from None
    return BertSizes.from_hf_config(config)


def load_state(name_or_path: str) -> Dict[str, Tensor]:
    """The checkpoint's ``BertModel`` weights (CPU), keys without a ``bert.`` prefix; they are
    cast to the model's dtype when copied."""
    from transformers import BertModel
    try:
        with _quiet_transformers():
            model = BertModel.from_pretrained(name_or_path, add_pooling_layer=False)
    except (OSError, ValueError) as err:
        raise _explain(name_or_path, err) from None
    return {k: v.detach().clone() for k, v in model.state_dict().items()}


def load_vocabulary(name_or_path: str) -> List[str]:
    """The checkpoint's WordPiece vocabulary, in id order."""
    from transformers import AutoTokenizer
    try:
        with _quiet_transformers():
            tokenizer = AutoTokenizer.from_pretrained(name_or_path)
    except (OSError, ValueError) as err:
        raise _explain(name_or_path, err) from None
    vocab = tokenizer.get_vocab()
    ordered = sorted(vocab.items(), key=lambda item: item[1])
    if [i for _, i in ordered] != list(range(len(ordered))):
        raise BertLoadError(f"{name_or_path}: vocabulary ids are not 0..{len(ordered) - 1}")
    return [token for token, _ in ordered]


def _pairs(prefix: str, hf_prefix: str, table: Tuple[Tuple[str, str], ...]) -> Iterator[Tuple[str, str]]:
    for ours, theirs in table:
        if ours.endswith((".weight", ".bias")):
            yield prefix + ours, hf_prefix + theirs
        else:
            for leaf in ("weight", "bias"):
                yield f"{prefix}{ours}.{leaf}", f"{hf_prefix}{theirs}.{leaf}"


def _copy(module: nn.Module, pairs: Iterator[Tuple[str, str]], state: Dict[str, Tensor]) -> int:
    params = dict(module.named_parameters(remove_duplicate=False))
    copied = 0
    with torch.no_grad():
        for ours, theirs in pairs:
            if theirs not in state:
                raise BertLoadError(f"the BERT checkpoint has no tensor {theirs!r}")
            source, target = state[theirs], params[ours]
            if source.shape != target.shape:
                raise BertLoadError(f"{theirs} has shape {tuple(source.shape)} but {ours} "
                                    f"has {tuple(target.shape)}")
            target.copy_(source)
            copied += 1
    return copied


def load_encoder(encoder: BertEncoder, state: Dict[str, Tensor]) -> int:
    """Copy the embeddings and every layer into ``encoder``; return the tensors copied."""
    copied = _copy(encoder.embeddings, _pairs("", "", EMBEDDINGS), state)
    for i, _ in enumerate(encoder.layers):
        hf = f"encoder.layer.{i}."
        copied += _copy(encoder, _pairs(f"layers.{i}.", hf, SELF_ATTENTION + FEED_FORWARD), state)
    return copied


def load_decoder(decoder: BertDecoder, state: Dict[str, Tensor]) -> int:
    """Copy BERT layer i's self-attention and feed-forward block into decoder layer i."""
    copied = 0
    for i, _ in enumerate(decoder.layers):
        hf = f"encoder.layer.{i}."
        copied += _copy(decoder, _pairs(f"layers.{i}.", hf, SELF_ATTENTION + FEED_FORWARD), state)
    return copied
