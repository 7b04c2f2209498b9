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
import sys
from dataclasses import dataclass, field
from pathlib import Path
from typing import Dict, Iterator, List, Optional, Tuple

import torch
from torch import Tensor, nn
from tqdm import tqdm

from ..normalizers import build_normalizer
from ..registry import ATTENTION_KEYS, ATTENTION_TYPES, attention_modules
from .stats import HeadStatistics, valid_pairs

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
    infos = [AttentionInfo(kind, layer, module.normalizer.name, _alpha_list(module.alpha, module.num_heads))
             for kind, layer, module in attention_modules(model)]
    return sorted(infos, key=lambda info: (ATTENTION_KEYS.index(info.kind), info.layer))


def load_state(checkpoint: str) -> dict:
    """The checkpoint's state, read with torch's safe loader (the plugin allows the few
    classes fairseq checkpoints hold). An empty, truncated or damaged file raises a
    ``ValueError`` (:class:`~sparse_seq2seq.fairseq_plugin.safe_loading.CheckpointError`)
    whose one line names it."""
    from ..fairseq_plugin.safe_loading import load_checkpoint_or_explain

    return load_checkpoint_or_explain(checkpoint)


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
        name = getattr(model_cfg, kind.option, None)
        if name is None:
            raise ValueError(f"the checkpoint's model has no {kind.option}: not an entmax_transformer")
        heads = int(getattr(model_cfg, kind.heads_option))
        for layer in range(int(getattr(model_cfg, kind.layers_option))):
            prefix = f"{kind.stack}.layers.{layer}.{kind.module}."
            if not any(k.startswith(prefix) for k in weights):
                continue  # e.g. a decoder without context attention
            normalizer = build_normalizer(name, heads)
            own = {k[len(prefix) + len("normalizer."):]: v for k, v in weights.items()
                   if k.startswith(prefix + "normalizer.")}
            normalizer.load_state_dict(own)
            infos.append(AttentionInfo(kind.key, layer, name, _alpha_list(normalizer.alpha, heads)))
    return infos


def load_model(checkpoint: str, data: str, user_dir: Optional[str] = None):
    """Model (eval mode) and task of a fairseq checkpoint, dictionaries read from ``data``."""
    import sparse_seq2seq.fairseq_plugin  # noqa: F401  (registration, safe globals)
    from fairseq import checkpoint_utils, utils

    from ..fairseq_plugin.safe_loading import explain_damage

    if user_dir:
        utils.import_user_module(argparse.Namespace(user_dir=user_dir))
    if not Path(checkpoint).is_file():
        raise FileNotFoundError(f"no checkpoint at {checkpoint}")
    explain_damage(checkpoint)
    models, _cfg, task = checkpoint_utils.load_model_ensemble_and_task(
        [checkpoint], arg_overrides={"data": data})
    return models[0].eval(), task


def _batches(dataset, count: int, batch_size: int) -> Iterator[dict]:
    for start in range(0, count, batch_size):
        yield dataset.collater([dataset[i] for i in range(start, min(start + batch_size, count))])


def collect_statistics(model: nn.Module, task, subset: str = "valid",
                       max_sentences: Optional[int] = None, sentence: Optional[int] = 0,
                       batch_size: int = 16, progress: bool = False) -> Tuple[Dict[Key, HeadStatistics],
                                                                              Optional[SentenceAttention], int]:
    """Head statistics over the first ``max_sentences`` sentences of ``subset`` (all when
    None), and the attention of sentence number ``sentence`` of the subset (if analysed).
    ``progress`` shows a progress bar (sentences done, rate, time left) on stderr.

    Returns (statistics per (type, layer), that sentence's attention or None, sentences)."""
    task.load_dataset(subset)
    dataset = task.dataset(subset)
    count = len(dataset) if max_sentences is None else min(max_sentences, len(dataset))
    if count == 0:
        raise ValueError(f"subset {subset!r} is empty")
    src_dict, tgt_dict = task.source_dictionary, task.target_dictionary
    modules = list(attention_modules(model))
    stats = {(kind, layer): HeadStatistics(m.num_heads) for kind, layer, m in modules}
    device = next(model.parameters()).device
    kept: Optional[SentenceAttention] = None
    for _, _, module in modules:
        module.keep_attention = True
    bar = tqdm(total=count, unit="sentence", desc=f"heads on {subset}", disable=not progress,
               file=sys.stderr, dynamic_ncols=True)
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
                bar.update(len(ids))
    finally:
        bar.close()
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
