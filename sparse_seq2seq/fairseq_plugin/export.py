"""``sparse-seq2seq-export``: a trained model as a folder that travels on its own.

    sparse-seq2seq-export CKPT --data BIN --spm spm.model --out DIR [--scores scores.json]
        [--tokenizer moses|none] [--name NAME] [--train-command "..."] [-s SRC -t TGT]

``DIR`` holds ``model.pt`` (the checkpoint without optimiser state), the dictionaries of
``BIN``, the sentencepiece model as ``sentencepiece.bpe.model`` and a model card
``README.md`` (:mod:`.model_card`). The tokenizer and sentencepiece settings are written
into the checkpoint's configuration — fairseq's own ``bpe`` / ``tokenizer`` entries, read by
``from_pretrained``, and the model's options, read by ``--task translation_sparse`` — so
``fairseq-interactive DIR --path DIR/model.pt --user-dir user_dir --task translation_sparse
-s de -t en`` and ``EntmaxTransformerModel.from_pretrained(DIR)`` translate raw text with no
further flags. ``--tokenizer moses`` matches the recipes' text stage (sacremoses, no HTML
escaping, no aggressive dash splits). The folder is built aside and swapped in whole.
"""
from __future__ import annotations

import argparse
import os
import shutil
import sys
import tempfile
from typing import Optional, Sequence

import torch

SPM_NAME = "sentencepiece.bpe.model"  # the name fairseq's from_pretrained looks for
MODEL_NAME = "model.pt"


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="sparse-seq2seq-export",
        description="Write a trained translation checkpoint as a self-contained folder: weights "
                    "without optimiser state, dictionaries, sentencepiece model, tokenizer settings "
                    "and a model card.")
    parser.add_argument("checkpoint", help="fairseq checkpoint (.pt) of a translation model")
    parser.add_argument("--data", required=True, help="the binarised data the model was trained on "
                                                      "(fairseq-preprocess output: dict.*.txt)")
    parser.add_argument("--spm", required=True, help="the sentencepiece model the data was encoded with")
    parser.add_argument("--out", required=True, help="folder to write (replaced whole if it exists)")
    parser.add_argument("--scores", help="test scores JSON of the recipes' score stage (BLEU/TER/chrF)")
    parser.add_argument("--tokenizer", choices=("moses", "none"), default="none",
                        help="tokenizer applied before sentencepiece (default: none)")
    parser.add_argument("--name", help="model name for the card (default: the --out folder's name)")
    parser.add_argument("--train-command", help="the fairseq-train command line, for the card")
    parser.add_argument("-s", "--source-lang", help="source language (default: the checkpoint's or BIN's)")
    parser.add_argument("-t", "--target-lang", help="target language (default: the checkpoint's or BIN's)")
    return parser


def _languages(task_cfg: dict, data: str, source: Optional[str], target: Optional[str]):
    from fairseq.data import data_utils

    source = source or task_cfg.get("source_lang")
    target = target or task_cfg.get("target_lang")
    if not (source and target):
        inferred = data_utils.infer_language_pair(data)
        if inferred == (None, None):
            raise ValueError(f"{data}: cannot tell the language pair (no train.SRC-TGT.SRC.idx); "
                             "give -s/--source-lang and -t/--target-lang")
        source, target = source or inferred[0], target or inferred[1]
    return source, target


def _check_sentencepiece(path: str) -> None:
    import sentencepiece

    if not os.path.isfile(path):
        raise FileNotFoundError(f"{path}: no such sentencepiece model")
    try:
        sentencepiece.SentencePieceProcessor(model_file=path)
    except (RuntimeError, OSError) as error:
        raise ValueError(f"{path}: not a sentencepiece model ({error})") from None


def portable_state(state: dict, source: str, target: str, tokenizer: str) -> dict:
    """The checkpoint ``state`` for inference only, its text settings stored in its config:
    no optimiser state, data found beside the model, sentencepiece read from ``SPM_NAME``."""
    cfg = dict(state["cfg"])
    moses = {"source_lang": source, "target_lang": target, "moses_no_dash_splits": True,
             "moses_no_escape": True}
    cfg["bpe"] = {"_name": "sentencepiece", "sentencepiece_model": SPM_NAME}
    cfg["tokenizer"] = {"_name": "moses", **moses} if tokenizer == "moses" else None
    cfg["task"] = dict(cfg["task"], data=".", source_lang=source, target_lang=target)
    model = argparse.Namespace(**vars(cfg["model"]))
    model.data, model.source_lang, model.target_lang = ".", source, target
    model.bpe, model.sentencepiece_model = "sentencepiece", SPM_NAME
    model.tokenizer = "moses" if tokenizer == "moses" else None
    if tokenizer == "moses":
        model.moses_no_dash_splits, model.moses_no_escape = True, True
    cfg["model"] = model
    history = state.get("optimizer_history") or [{}]
    return {"args": None, "cfg": cfg, "model": state["model"],
            "criterion": state.get("criterion", {}),
            "optimizer_history": [{k: v for k, v in history[-1].items() if k != "optimizer"}],
            "task_state": state.get("task_state", {}),
            "extra_state": {"train_iterator": (state.get("extra_state") or {}).get("train_iterator", {"epoch": 0}),
                            "val_loss": (state.get("extra_state") or {}).get("val_loss")},
            "last_optimizer_state": None}


def _head_alphas(state: dict):
    from ..analysis.collect import checkpoint_infos
    from ..registry import attention_type
    from .model_card import HeadAlphas

    try:
        infos = checkpoint_infos(state)
    except ValueError:  # not a model with sparse attention
        return []
    return [HeadAlphas(i.kind, attention_type(i.kind).label, i.layer, i.normalizer, list(i.alphas)) for i in infos]


def _swap_in(folder: str, out: str) -> None:
    """Replace ``out`` by the finished ``folder`` (same parent), never leaving a mix."""
    old = None
    if os.path.exists(out):
        old = tempfile.mkdtemp(dir=os.path.dirname(out), prefix=os.path.basename(out) + ".old-")
        os.rmdir(old)
        os.rename(out, old)
    os.rename(folder, out)
    if old:
        shutil.rmtree(old)


def export(checkpoint: str, data: str, spm: str, out: str, scores: Optional[str] = None,
           tokenizer: str = "none", name: Optional[str] = None, train_command: Optional[str] = None,
           source_lang: Optional[str] = None, target_lang: Optional[str] = None) -> str:
    """Write the model folder ``out`` (see the module docstring); returns its path."""
    import sparse_seq2seq.fairseq_plugin  # noqa: F401  (safe globals, registrations)
    from .model_card import CardInfo, read_scores, render_card
    from .safe_loading import explain_damage

    if not os.path.isfile(checkpoint):
        raise FileNotFoundError(f"{checkpoint}: no such checkpoint")
    explain_damage(checkpoint)
    state = torch.load(checkpoint, map_location="cpu", weights_only=True)
    if not isinstance(state, dict) or not isinstance(state.get("cfg"), dict) or "model" not in state:
        raise ValueError(f"{checkpoint}: not a fairseq checkpoint with a configuration")
    source, target = _languages(state["cfg"]["task"], data, source_lang, target_lang)
    dictionaries = [os.path.join(data, f"dict.{lang}.txt") for lang in (source, target)]
    for path in dictionaries:
        if not os.path.isfile(path):
            raise FileNotFoundError(f"{path}: no such dictionary (--data must be the binarised data)")
    _check_sentencepiece(spm)
    card_scores = read_scores(scores) if scores else None

    out = os.path.abspath(out)
    os.makedirs(os.path.dirname(out), exist_ok=True)
    work = tempfile.mkdtemp(dir=os.path.dirname(out), prefix=os.path.basename(out) + ".partial-")
    try:
        torch.save(portable_state(state, source, target, tokenizer), os.path.join(work, MODEL_NAME))
        for path in dictionaries:
            shutil.copyfile(path, os.path.join(work, os.path.basename(path)))
        shutil.copyfile(spm, os.path.join(work, SPM_NAME))
        history = (state.get("optimizer_history") or [{}])[-1]
        processing = (f"Moses tokenizer ({source}; sacremoses, no escaping), then sentencepiece"
                      if tokenizer == "moses" else "sentencepiece")
        info = CardInfo(name=name or os.path.basename(out), source_lang=source, target_lang=target,
                        arch=getattr(state["cfg"]["model"], "arch", "?"), data=os.path.abspath(data),
                        updates=history.get("num_updates"),
                        epoch=((state.get("extra_state") or {}).get("train_iterator") or {}).get("epoch"),
                        train_command=train_command, text_processing=processing, scores=card_scores,
                        heads=_head_alphas(state))
        with open(os.path.join(work, "README.md"), "w", encoding="utf-8") as handle:
            handle.write(render_card(info))
        _swap_in(work, out)
    except BaseException:
        shutil.rmtree(work, ignore_errors=True)
        raise
    return out


def main(argv: Optional[Sequence[str]] = None) -> int:
    args = build_parser().parse_args(argv)
    try:
        out = export(args.checkpoint, args.data, args.spm, args.out, scores=args.scores,
                     tokenizer=args.tokenizer, name=args.name, train_command=args.train_command,
                     source_lang=args.source_lang, target_lang=args.target_lang)
    except (OSError, ValueError) as error:
        print(f"sparse-seq2seq-export: error: {error}", file=sys.stderr)
        return 1
    print(f"exported {args.checkpoint} to {out}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
