"""What the heads of a transformers model do on a list of sentences: α per head, support
size, density, fully dense heads and Jensen–Shannon diversity (Correia, Niculae & Martins
2019, §5), with the same definitions, report and figures as ``sparse-seq2seq-heads``
(:mod:`sparse_seq2seq.analysis`).

The sentences run through the model in eval mode with every attention keeping its
probabilities; an encoder-decoder reads ``targets`` with teacher forcing (the decoder input
is the target shifted right). A model with softmax attention (``eager``/``sdpa``) is run
through the same attention code with softmax for the duration, so it is analysed too.
"""
from __future__ import annotations

from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Dict, Iterator, List, Optional, Sequence, Tuple, Union

import torch
from torch import Tensor, nn

from ..analysis.cli import build_report
from ..analysis.collect import AttentionInfo, Key, SentenceAttention
from ..analysis.stats import HeadStatistics, valid_pairs
from ..registry import ATTENTION_KEYS, normalizer_spec
from .attention import ALPHA_MODULE, KEEP_FLAG, KEPT
from .modules import attention_kind, attention_modules, layer_index, num_heads
from .sparsify import IMPLEMENTATIONS, SOFTMAX

__all__ = ["HeadAnalysis", "alpha_infos", "collect_heads", "head_statistics", "plot_heads"]

Located = Tuple[str, int, nn.Module]  # (attention type, layer, module)


@dataclass
class HeadAnalysis:
    """α per head, statistics per (type, layer), one sentence's attention, sentences read."""

    infos: List[AttentionInfo]
    stats: Dict[Key, HeadStatistics]
    sentence: Optional[SentenceAttention]
    sentences: int


def _located(model: nn.Module) -> List[Located]:
    found: Dict[Key, Located] = {}
    for name, module in attention_modules(model):
        kind, layer = attention_kind(name, module), layer_index(name, module)
        if (kind, layer) in found:
            raise ValueError(f"two {kind} attention modules claim layer {layer} (the second is {name})")
        found[(kind, layer)] = (kind, layer, module)
    return sorted(found.values(), key=lambda item: (ATTENTION_KEYS.index(item[0]), item[1]))


def _normalizer_name(model: nn.Module) -> str:
    name = getattr(model.config, "_attn_implementation", None)
    return name if name in IMPLEMENTATIONS else "softmax"


def _alphas(module: nn.Module, normalizer: str) -> List[float]:
    heads = num_heads(module)
    fixed = normalizer_spec(normalizer).alpha
    if fixed is not None:
        return [float(fixed)] * heads
    return [float(a) for a in getattr(module, ALPHA_MODULE).alpha.detach().float().cpu()]


def alpha_infos(model: nn.Module) -> List[AttentionInfo]:
    """α per head of every attention module (1 for softmax), in type, layer order."""
    normalizer = _normalizer_name(model)
    return [AttentionInfo(kind, layer, normalizer, _alphas(module, normalizer))
            for kind, layer, module in _located(model)]


@contextmanager
def _keeping(model: nn.Module, modules: Sequence[nn.Module]) -> Iterator[None]:
    """Eval mode, our attention code (softmax for eager/sdpa models), probabilities kept."""
    implementation, training = model.config._attn_implementation, model.training
    if implementation not in IMPLEMENTATIONS + (SOFTMAX,):
        model.set_attn_implementation(SOFTMAX)
    model.eval()
    for module in modules:
        setattr(module, KEEP_FLAG, True)
    try:
        yield
    finally:
        for module in modules:
            setattr(module, KEEP_FLAG, False)
            setattr(module, KEPT, None)
        if model.config._attn_implementation != implementation:
            model.set_attn_implementation(implementation)
        model.train(training)


def _decoder_inputs(model: nn.Module, labels: Tensor, label_real: Tensor) -> Tuple[Tensor, Tensor]:
    """Teacher forcing: the targets shifted right behind the decoder start token, and which
    decoder positions are real (those that predict a real target token)."""
    config = model.config
    start = getattr(config, "decoder_start_token_id", None)
    pad = getattr(config, "pad_token_id", None)
    if start is None or pad is None:
        raise ValueError("the model config needs decoder_start_token_id and pad_token_id for teacher forcing")
    shifted = torch.cat([torch.full_like(labels[:, :1], start), labels[:, :-1]], dim=1)
    return shifted.masked_fill(~label_real, pad), label_real


def _tokens(tokenizer, ids: Tensor, keep: Tensor) -> List[str]:
    return tokenizer.convert_ids_to_tokens(ids[keep].tolist())


def collect_heads(model: nn.Module, tokenizer, sentences: Sequence[str],
                  targets: Optional[Sequence[str]] = None, batch_size: int = 16,
                  sentence: Optional[int] = 0) -> HeadAnalysis:
    """Run ``sentences`` (and, for an encoder-decoder, ``targets``) through the model and
    gather the statistics of every head, and the attention of sentence number ``sentence``."""
    sentences = list(sentences)
    if not sentences:
        raise ValueError("no sentences to analyse")
    if batch_size < 1:
        raise ValueError(f"batch_size must be at least 1, got {batch_size}")
    seq2seq = bool(getattr(model.config, "is_encoder_decoder", False))
    if seq2seq and (targets is None or len(targets) != len(sentences)):
        raise ValueError("an encoder-decoder model needs one target per sentence (targets=...) "
                         "for teacher forcing")
    located = _located(model)
    if not located:
        raise ValueError(f"{type(model).__name__} has no attention module that calls transformers' "
                         "attention interface")
    infos = alpha_infos(model)
    stats = {(kind, layer): HeadStatistics(num_heads(module)) for kind, layer, module in located}
    device = next(model.parameters()).device
    kept: Optional[SentenceAttention] = None
    with _keeping(model, [module for _, _, module in located]), torch.no_grad():
        for start in range(0, len(sentences), batch_size):
            batch = tokenizer(sentences[start:start + batch_size], padding=True, truncation=True,
                              return_tensors="pt")
            ids, src_real = batch["input_ids"].to(device), batch["attention_mask"].to(device).bool()
            inputs = dict(input_ids=ids, attention_mask=src_real.long())
            tgt_ids = labels = label_real = None
            if seq2seq:
                target = tokenizer(text_target=list(targets[start:start + batch_size]), padding=True,
                                   truncation=True, return_tensors="pt")
                labels, label_real = target["input_ids"].to(device), target["attention_mask"].to(device).bool()
                tgt_ids, tgt_real = _decoder_inputs(model, labels, label_real)
                inputs.update(decoder_input_ids=tgt_ids, decoder_attention_mask=tgt_real.long())
            else:
                tgt_real = src_real
            if hasattr(model.config, "use_cache"):
                inputs["use_cache"] = False
            model(**inputs)
            masks = {"enc": valid_pairs(src_real, src_real),
                     "dec_self": valid_pairs(tgt_real, tgt_real, causal=True),
                     "dec_cross": valid_pairs(tgt_real, src_real)}
            for kind, layer, module in located:
                stats[(kind, layer)].update(getattr(module, KEPT), masks[kind])
            if sentence is not None and start <= sentence < start + ids.size(0):
                row = sentence - start
                source = _tokens(tokenizer, ids[row], src_real[row])
                if seq2seq:
                    decoder_input = _tokens(tokenizer, tgt_ids[row], tgt_real[row])
                    target_tokens = _tokens(tokenizer, labels[row], label_real[row])
                else:
                    decoder_input, target_tokens = source, source[1:]
                kept = SentenceAttention(sentence, source, decoder_input, target_tokens)
                rows = {"enc": src_real[row], "dec_self": tgt_real[row], "dec_cross": tgt_real[row]}
                cols = {"enc": src_real[row], "dec_self": tgt_real[row], "dec_cross": src_real[row]}
                for kind, layer, module in located:
                    attn = getattr(module, KEPT)[row][:, rows[kind]][:, :, cols[kind]]
                    kept.attention[(kind, layer)] = attn.cpu()
    return HeadAnalysis(infos, stats, kept, len(sentences))


def head_statistics(model: nn.Module, tokenizer, sentences: Sequence[str],
                    targets: Optional[Sequence[str]] = None, batch_size: int = 16) -> dict:
    """The report of ``sparse-seq2seq-heads`` for a transformers model: per attention
    module (type, layer, normaliser, JS diversity) its heads (α, mean support, density, dense
    fraction, fully dense), and a summary per attention type."""
    analysis = collect_heads(model, tokenizer, sentences, targets, batch_size, sentence=None)
    report = build_report(analysis.infos, analysis.stats)
    report["sentences"] = analysis.sentences
    return report


def plot_heads(model: nn.Module, tokenizer, sentences: Sequence[str], out: Union[str, Path],
               targets: Optional[Sequence[str]] = None, sentence: int = 0) -> List[Path]:
    """The figures of ``sparse-seq2seq-heads`` in folder ``out``: α per head
    (``alpha_per_head.png``) and the attention maps of ``sentences[sentence]`` with their
    support outlined (``attention_<type>_sentence<i>.png``). Returns their paths."""
    from ..analysis import plots  # matplotlib only when drawing

    if not 0 <= sentence < len(sentences):
        raise ValueError(f"sentence {sentence} is not among the {len(sentences)} sentences")
    one = [sentences[sentence]]
    analysis = collect_heads(model, tokenizer, one, [targets[sentence]] if targets is not None else None,
                             sentence=0)
    kept = analysis.sentence
    kept.index = sentence
    out = Path(out)
    figures = [plots.plot_alphas(analysis.infos, out / "alpha_per_head.png")]
    alphas = {(info.kind, info.layer): info.alphas for info in analysis.infos}
    for kind in ATTENTION_KEYS:
        if any(k == kind for k, _ in kept.attention):
            figures.append(plots.plot_attention(kept, kind, out / f"attention_{kind}_sentence{sentence}.png",
                                                alphas))
    return figures
