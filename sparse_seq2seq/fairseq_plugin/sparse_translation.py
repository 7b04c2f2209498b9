"""Task ``translation_sparse``: fairseq's translation task whose beam search copes with an
entmax output layer (see :mod:`.generator`). Train and decode entmax_transformer models with
``--task translation_sparse`` (the options are those of ``translation``).

A model folder written by ``sparse-seq2seq-export`` stores its tokenizer and sentencepiece
settings in the model's configuration: when the command line names no ``--tokenizer`` /
``--bpe``, this task builds them from there (a relative ``sentencepiece_model`` is read from
the data folder, which is the model folder), so ``fairseq-interactive DIR --path
DIR/model.pt`` translates raw text with no further flags.
"""
from __future__ import annotations

import argparse
import os
from typing import Optional

from fairseq.data import encoders
from fairseq.tasks import register_task
from fairseq.tasks.translation import TranslationConfig, TranslationTask

from .generator import SparseSequenceGenerator


def _chosen(cfg, name: str) -> bool:
    """Did the command line choose a ``--tokenizer`` / ``--bpe`` (``name``)?"""
    return cfg is not None and bool(getattr(cfg, "_name", None) or getattr(cfg, name, None))


@register_task("translation_sparse", dataclass=TranslationConfig)
class SparseTranslationTask(TranslationTask):
    model_text_cfg: Optional[argparse.Namespace] = None  # the last model built: its text settings

    def build_generator(self, models, args, seq_gen_cls=None, extra_gen_cls_kwargs=None, **kwargs):
        return super().build_generator(models, args, seq_gen_cls=seq_gen_cls or SparseSequenceGenerator,
                                       extra_gen_cls_kwargs=extra_gen_cls_kwargs, **kwargs)

    def build_model(self, cfg, from_checkpoint: bool = False):
        if isinstance(cfg, argparse.Namespace):
            self.model_text_cfg = cfg
        return super().build_model(cfg, from_checkpoint)

    def build_tokenizer(self, args):
        if _chosen(args, "tokenizer") or getattr(self.model_text_cfg, "tokenizer", None) is None:
            return super().build_tokenizer(args)
        return encoders.build_tokenizer(self.model_text_cfg)

    def build_bpe(self, args):
        if _chosen(args, "bpe") or getattr(self.model_text_cfg, "bpe", None) is None:
            return super().build_bpe(args)
        stored = argparse.Namespace(**vars(self.model_text_cfg))
        model = getattr(stored, "sentencepiece_model", None)
        if model and not os.path.isabs(model) and self.cfg.data:
            stored.sentencepiece_model = os.path.join(self.cfg.data.split(os.pathsep)[0], model)
        return encoders.build_bpe(stored)
