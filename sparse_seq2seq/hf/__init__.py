"""Sparse attention for Hugging Face transformers models.

Importing this package registers ``sparsemax``, ``entmax15`` and ``alpha_entmax`` as
transformers attention implementations (it imports transformers; ``import sparse_seq2seq``
alone does not)::

    import sparse_seq2seq.hf
    model = AutoModel.from_pretrained(path, attn_implementation="entmax15")
    sparse_seq2seq.hf.sparsify(model, "alpha_entmax", alpha_init=1.5)  # α learned per head
    report = sparse_seq2seq.hf.head_statistics(model, tokenizer, sentences)

Composite models (``EncoderDecoderModel`` of two BERTs, T5) are sparsified as a whole: every
config in them records the choice, and a part that bypasses the attention interface is refused.
One assembled from two halves sparsified alike records their choice too (halves sparsified
differently are refused), so it saves and loads back sparse.

See :mod:`.attention` (the attention function), :mod:`.sparsify` (registration, learned α,
saving) and :mod:`.heads` (head statistics and figures).
"""
from .attention import attention_forward
from .heads import collect_heads, head_statistics, plot_heads
from .modules import attention_modules
from .sparsify import IMPLEMENTATIONS, SOFTMAX, attach_alpha, model_configs, register, sparsify

register()

__all__ = ["IMPLEMENTATIONS", "SOFTMAX", "attention_forward", "attention_modules", "attach_alpha",
           "collect_heads", "head_statistics", "model_configs", "plot_heads", "register", "sparsify"]
