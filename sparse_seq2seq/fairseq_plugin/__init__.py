"""The fairseq side of sparse_seq2seq: importing this package registers the models,
architectures, criterion, task and scorer (``fairseq-train --user-dir user_dir``)."""
from .safe_loading import allow_fairseq_checkpoint_globals

allow_fairseq_checkpoint_globals()
from .fairseq_fixes import install as _install_fairseq_fixes; _install_fairseq_fixes()  # noqa: E402,E702

from . import entmax_loss, entmax_transformer, scoring, sparse_translation  # noqa: E402,F401
from . import ape_task, bert_ape  # noqa: E402,F401  (registration)
