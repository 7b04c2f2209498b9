"""Gather what the heads of a trained fairseq model learned: α per head (from the model, or
straight from a checkpoint without any data) and attention statistics over a data subset.

The subset is run through the model with teacher forcing — the decoder reads the reference
translation, as in training — with every attention keeping its probabilities
(``keep_attention``). The statistics are those of :mod:`sparse_seq2seq.analysis.stats`;
one sentence's attention is kept for the heatmaps. fairseq is imported only inside the
functions that need it.
"""
from __future__ import annotations

import argparse
from dataclasses import dataclass, field
from pathlib import Path
from typing import Dict, Iterator, List, Optional, Tuple

import torch
from torch import Tensor, nn

from ..normalizers import build_normalizer
from .stats import HeadStatistics, valid_pairs

ATTENTION_TYPES = ("enc", "dec_self", "dec_cross")
TYPE_NAMES = {"enc": "encoder self-attention", "dec_self": "decoder self-attention",
              "dec_cross": "decoder-encoder (context) attention"}
# attention type -> (stack, attribute of the layer, normaliser option, layers option, heads option)
_LAYOUT = {"enc": ("encoder", "self_attn", "encoder_attn_normalizer", "encoder_layers",
                   "encoder_attention_heads"),
           "dec_self": ("decoder", "self_attn", "decoder_self_attn_normalizer", "decoder_layers",
                        "decoder_attention_heads"),
           "dec_cross": ("decoder", "encoder_attn", "decoder_cross_attn_normalizer", "decoder_layers",
                         "decoder_attention_heads")}

Key = Tuple[str, int]  # (attention type, layer)


@dataclass
class AttentionInfo:
    """One attention module: its type, layer, normaliser and α per head (1 for softmax)."""

    kind: str
    layer: int
    normalizer: str
    alphas: List[float]


@dataclass
class SentenceAttention:
    """Attention of every module for one sentence, without padding: (heads, rows, columns)."""

    index: int
    source: List[str]
    decoder_input: List[str]  # the reference shifted right: </s> w_1 … w_{m-1}
    target: List[str]  # w_1 … w_m </s>
    attention: Dict[Key, Tensor] = field(default_factory=dict)

    def labels(self, kind: str) -> Tuple[List[str], List[str]]:
        """Row (query) and column (key) labels of an attention type's matrices."""
        if kind == "enc":
            return self.source, self.source
        if kind == "dec_self":
            return self.decoder_input, self.decoder_input
        return self.target, self.source  # a context-attention row produces its target word


def _alpha_list(alpha: Optional[Tensor], num_heads: int) -> List[float]:
    if alpha is None:  # softmax is α-entmax at α = 1
        return [1.0] * num_heads
    return [float(a) for a in alpha.detach().float().cpu().expand(num_heads)]


def attention_infos(model: nn.Module) -> List[AttentionInfo]:
    """α per head of every attention of a loaded model, in type, layer order."""
    from ..fairseq_plugin.entmax_transformer import attention_modules

    infos = [AttentionInfo(kind, layer, module.normalizer.name, _alpha_list(module.alpha, module.num_heads))
             for kind, layer, module in attention_modules(model)]
    return sorted(infos, key=lambda info: (ATTENTION_TYPES.index(info.kind), info.layer))


def load_state(checkpoint: str) -> dict:
    """The checkpoint's state, read with torch's safe loader (the plugin allows the few
    classes fairseq checkpoints hold)."""
    import sparse_seq2seq.fairseq_plugin  # noqa: F401  (registration, safe globals)
    from fairseq import checkpoint_utils

    return checkpoint_utils.load_checkpoint_to_cpu(checkpoint)


def checkpoint_infos(state: dict) -> List[AttentionInfo]:
    """α per head read from a checkpoint's weights and configuration, without building the
    model or reading data. α-entmax heads get α from their ``alpha_logit`` through the
    normaliser's own parametrisation (α = 1 + sigmoid(a), §3.2)."""
    cfg = state.get("cfg")
    model_cfg = cfg.get("model") if cfg is not None else None
    model_cfg = model_cfg if model_cfg is not None else state.get("args")
    if model_cfg is None:
        raise ValueError("the checkpoint holds no model configuration")
    weights = state["model"]
    infos = []
    for kind in ATTENTION_TYPES:
        stack, attr, norm_option, layers_option, heads_option = _LAYOUT[kind]
        name = getattr(model_cfg, norm_option, None)
        if name is None:
            raise ValueError(f"the checkpoint's model has no {norm_option}: not an entmax_transformer")
        heads = int(getattr(model_cfg, heads_option))
        for layer in range(int(getattr(model_cfg, layers_option))):
            prefix = f"{stack}.layers.{layer}.{attr}."
            if not any(k.startswith(prefix) for k in weights):
                continue  # e.g. a decoder without context attention
            normalizer = build_normalizer(name, heads)
            own = {k[len(prefix) + len("normalizer."):]: v for k, v in weights.items()
                   if k.startswith(prefix + "normalizer.")}
            normalizer.load_state_dict(own)
            infos.append(AttentionInfo(kind, layer, name, _alpha_list(normalizer.alpha, heads)))
    return infos


def load_model(checkpoint: str, data: str, user_dir: Optional[str] = None):
    """Model (eval mode) and task of a fairseq checkpoint, dictionaries read from ``data``."""
    import sparse_seq2seq.fairseq_plugin  # noqa: F401  (registration, safe globals)
    from fairseq import checkpoint_utils, utils

    if user_dir:
        utils.import_user_module(argparse.Namespace(user_dir=user_dir))
    if not Path(checkpoint).is_file():
        raise FileNotFoundError(f"no checkpoint at {checkpoint}")
    models, _cfg, task = checkpoint_utils.load_model_ensemble_and_task(
        [checkpoint], arg_overrides={"data": data})
    return models[0].eval(), task


def _batches(dataset, count: int, batch_size: int) -> Iterator[dict]:
    for start in range(0, count, batch_size):
        yield dataset.collater([dataset[i] for i in range(start, min(start + batch_size, count))])


def collect_statistics(model: nn.Module, task, subset: str = "valid",
                       max_sentences: Optional[int] = None, sentence: Optional[int] = 0,
                       batch_size: int = 16) -> Tuple[Dict[Key, HeadStatistics],
                                                      Optional[SentenceAttention], int]:
    """Head statistics over the first ``max_sentences`` sentences of ``subset`` (all when
    None), and the attention of sentence number ``sentence`` of the subset (if analysed).

    Returns (statistics per (type, layer), that sentence's attention or None, sentences)."""
    task.load_dataset(subset)
    dataset = task.dataset(subset)
    count = len(dataset) if max_sentences is None else min(max_sentences, len(dataset))
    if count == 0:
        raise ValueError(f"subset {subset!r} is empty")
    src_dict, tgt_dict = task.source_dictionary, task.target_dictionary
    from ..fairseq_plugin.entmax_transformer import attention_modules

    modules = list(attention_modules(model))
    stats = {(kind, layer): HeadStatistics(m.num_heads) for kind, layer, m in modules}
    device = next(model.parameters()).device
    kept: Optional[SentenceAttention] = None
    for _, _, module in modules:
        module.keep_attention = True
    try:
        with torch.no_grad():
            for sample in _batches(dataset, count, batch_size):
                net_input = {k: v.to(device) if torch.is_tensor(v) else v
                             for k, v in sample["net_input"].items()}
                model(**net_input)
                src_real = net_input["src_tokens"].ne(src_dict.pad())
                tgt_real = net_input["prev_output_tokens"].ne(tgt_dict.pad())
                masks = {"enc": valid_pairs(src_real, src_real),
                         "dec_self": valid_pairs(tgt_real, tgt_real, causal=True),
                         "dec_cross": valid_pairs(tgt_real, src_real)}
                for kind, layer, module in modules:
                    stats[(kind, layer)].update(module.last_attention, masks[kind])
                ids = sample["id"].tolist()
                if sentence is not None and sentence in ids:
                    kept = _sentence(sample, ids.index(sentence), modules, src_dict, tgt_dict)
    finally:
        for _, _, module in modules:
            module.keep_attention, module.last_attention = False, None
    return stats, kept, count


def _sentence(sample: dict, row: int, modules, src_dict, tgt_dict) -> SentenceAttention:
    src = sample["net_input"]["src_tokens"][row]
    prev = sample["net_input"]["prev_output_tokens"][row]
    tgt = sample["target"][row]
    src_keep, tgt_keep = src.ne(src_dict.pad()), prev.ne(tgt_dict.pad())
    kept = SentenceAttention(
        index=int(sample["id"][row]),
        source=[src_dict[int(t)] for t in src[src_keep]],
        decoder_input=[tgt_dict[int(t)] for t in prev[tgt_keep]],
        target=[tgt_dict[int(t)] for t in tgt[tgt.ne(tgt_dict.pad())]])
    rows = {"enc": src_keep, "dec_self": tgt_keep, "dec_cross": tgt_keep}
    cols = {"enc": src_keep, "dec_self": tgt_keep, "dec_cross": src_keep}
    for kind, layer, module in modules:
        attn = module.last_attention[row].cpu()
        kept.attention[(kind, layer)] = attn[:, rows[kind].cpu()][:, :, cols[kind].cpu()]
    return kept
