"""Task ``translation_sparse``: fairseq's translation task whose beam search copes with an
entmax output layer (see :mod:`.generator`). Train and decode entmax_transformer models with
``--task translation_sparse`` (the options are those of ``translation``)."""
from fairseq.tasks import register_task
from fairseq.tasks.translation import TranslationConfig, TranslationTask

from .generator import SparseSequenceGenerator


@register_task("translation_sparse", dataclass=TranslationConfig)
class SparseTranslationTask(TranslationTask):
    def build_generator(self, models, args, seq_gen_cls=None, extra_gen_cls_kwargs=None, **kwargs):
        return super().build_generator(models, args, seq_gen_cls=seq_gen_cls or SparseSequenceGenerator,
                                       extra_gen_cls_kwargs=extra_gen_cls_kwargs, **kwargs)
