"""The model card (``README.md``) of an exported model folder: what it translates, the data
and command it was trained with, its test scores with their sacrebleu signatures, and the α
it learned for each attention head (Correia, Niculae & Martins 2019, §3.2).

The scores come from the recipes' score stage, one JSON file::

    {"test_set": "test_2016_flickr",
     "bleu": {"score": 39.0, "signature": "nrefs:1|case:mixed|eff:no|tok:13a|smooth:exp|version:2.6.0"},
     "ter":  {"score": 43.5, "signature": "..."},
     "chrf": {"score": 61.2, "signature": "..."}}
"""
from __future__ import annotations

import json
from dataclasses import dataclass, field
from typing import Dict, List, Optional, Sequence

METRICS = (("bleu", "BLEU"), ("ter", "TER"), ("chrf", "chrF"))


@dataclass
class Scores:
    test_set: str
    metrics: Dict[str, Dict[str, object]]  # "bleu" -> {"score": float, "signature": str}


def read_scores(path: str) -> Scores:
    """The scores file ``path`` (schema in the module docstring); errors name the file and key."""
    try:
        with open(path, encoding="utf-8") as handle:
            data = json.load(handle)
    except json.JSONDecodeError as error:
        raise ValueError(f"{path}: not JSON ({error})") from None
    if not isinstance(data, dict) or not isinstance(data.get("test_set"), str):
        raise ValueError(f'{path}: needs "test_set": a string')
    metrics = {}
    for key, _ in METRICS:
        entry = data.get(key)
        if not (isinstance(entry, dict) and isinstance(entry.get("score"), (int, float))
                and not isinstance(entry.get("score"), bool) and isinstance(entry.get("signature"), str)):
            raise ValueError(f'{path}: needs "{key}": {{"score": number, "signature": string}}')
        metrics[key] = {"score": float(entry["score"]), "signature": entry["signature"]}
    return Scores(data["test_set"], metrics)


@dataclass
class HeadAlphas:
    kind: str  # attention type key: enc, dec_self, dec_cross
    label: str  # for people: "encoder self-attention"
    layer: int
    normalizer: str
    alphas: List[float]


@dataclass
class CardInfo:
    name: str
    source_lang: str
    target_lang: str
    arch: str
    data: str
    updates: Optional[int]
    epoch: Optional[int]
    train_command: Optional[str]
    text_processing: str  # what raw text goes through, e.g. "Moses tokenizer (de), then sentencepiece"
    scores: Optional[Scores] = None
    heads: Sequence[HeadAlphas] = field(default_factory=list)


def _scores_section(scores: Optional[Scores]) -> List[str]:
    if scores is None:
        return ["Not scored at export (`--scores`)."]
    lines = [f"Test set `{scores.test_set}`, detokenised output against the raw references (sacrebleu):",
             "", "| metric | score | sacrebleu signature |", "| --- | ---: | --- |"]
    for key, label in METRICS:
        entry = scores.metrics[key]
        lines.append(f"| {label} | {entry['score']:.2f} | `{entry['signature']}` |")
    return lines


def _alpha_section(heads: Sequence[HeadAlphas]) -> List[str]:
    if not heads:
        return ["The checkpoint holds no attention with a learned α."]
    width = max(len(h.alphas) for h in heads)
    lines = ["α = 1 is softmax, 1.5 is 1.5-entmax, 2 is sparsemax; learned heads have α = 1 + sigmoid(a).",
             "", "| attention | layer | normaliser | " + " | ".join(f"head {i}" for i in range(width)) + " |",
             "| --- | ---: | --- |" + " ---: |" * width]
    for h in heads:
        values = [f"{a:.3f}" for a in h.alphas] + [""] * (width - len(h.alphas))
        lines.append(f"| {h.label} | {h.layer} | {h.normalizer} | " + " | ".join(values) + " |")
    return lines


def render_card(info: CardInfo) -> str:
    """The Markdown model card of an exported model folder."""
    s, t = info.source_lang, info.target_lang
    trained = ", ".join(x for x in (f"{info.updates} updates" if info.updates is not None else "",
                                    f"epoch {info.epoch}" if info.epoch is not None else "") if x)
    lines = [f"# {info.name}", "",
             f"A `{info.arch}` model (sparse_seq2seq, fairseq) translating {s} → {t}, "
             "with adaptively sparse attention.", "",
             "## Use", "", "Raw text in, raw text out; the tokenizer and sentencepiece settings are "
             "stored in the model's configuration:", "", "```bash",
             f"echo 'raw {s} text' | fairseq-interactive DIR --path DIR/model.pt --user-dir user_dir \\",
             f"    --task translation_sparse -s {s} -t {t}", "```", "", "```python",
             "from sparse_seq2seq.fairseq_plugin.entmax_transformer import EntmaxTransformerModel",
             "model = EntmaxTransformerModel.from_pretrained('DIR')",
             f"print(model.translate('raw {s} text'))", "```", "",
             f"Text processing: {info.text_processing}. With `fairseq-generate`, leave out "
             "`--remove-bpe` (the stored sentencepiece settings decode the output).", "",
             "## Data", "", f"- binarised training data: `{info.data}`",
             f"- dictionaries: `dict.{s}.txt`, `dict.{t}.txt` (in this folder)",
             f"- trained for: {trained or 'unknown'}", "",
             "## Training command", ""]
    lines += (["```bash", info.train_command, "```"] if info.train_command
              else ["Not recorded at export (`--train-command`)."])
    lines += ["", "## Scores", ""] + _scores_section(info.scores)
    lines += ["", "## Learned α per head", ""] + _alpha_section(info.heads)
    return "\n".join(lines) + "\n"
