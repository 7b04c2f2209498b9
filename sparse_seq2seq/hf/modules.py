"""Find the attention modules of a transformers model, their heads, type and layer.

An attention module is one whose ``forward`` calls transformers' attention interface
(``ALL_ATTENTION_FUNCTIONS``): ``BertSelfAttention``, ``GPT2Attention``, ``LlamaAttention``,
``BartAttention``, ``MarianAttention`` and the like. Its type is one of the project's
attention types (:data:`sparse_seq2seq.registry.ATTENTION_KEYS`): cross-attention
(``dec_cross``), causal self-attention (``dec_self``) or bidirectional self-attention (``enc``).
"""
from __future__ import annotations

import inspect
import re
from typing import Dict, Iterator, List, Tuple

from torch import nn

__all__ = ["attention_modules", "num_heads", "attention_kind", "layer_index"]

_CALLS_INTERFACE: Dict[type, bool] = {}
_CROSS_NAMES = ("encoder_attn", "crossattention", "cross_attn", "cross_attention", "encdecattention")


def _calls_interface(cls: type) -> bool:
    if cls not in _CALLS_INTERFACE:
        try:
            source = inspect.getsource(cls.forward)
        except (OSError, TypeError):
            source = ""
        _CALLS_INTERFACE[cls] = "ALL_ATTENTION_FUNCTIONS" in source
    return _CALLS_INTERFACE[cls]


def attention_modules(model: nn.Module) -> Iterator[Tuple[str, nn.Module]]:
    """(qualified name, module) of every attention module of ``model``, in module order."""
    for name, module in model.named_modules():
        if _calls_interface(type(module)):
            yield name, module


def num_heads(module: nn.Module) -> int:
    """The number of query heads of an attention module."""
    for owner, attr in ((module, "num_heads"), (module, "num_attention_heads"),
                        (getattr(module, "config", None), "num_attention_heads")):
        value = getattr(owner, attr, None) if owner is not None else None
        if isinstance(value, int) and value > 0:
            return value
    raise ValueError(f"cannot tell the number of heads of {type(module).__name__} "
                     "(no num_heads, num_attention_heads or config.num_attention_heads)")


def attention_kind(name: str, module: nn.Module) -> str:
    """``dec_cross`` for cross-attention, ``dec_self`` for causal self-attention, ``enc``
    for bidirectional self-attention."""
    parts = [p.lower() for p in name.split(".")]
    if getattr(module, "is_cross_attention", False) or any(p in _CROSS_NAMES for p in parts):
        return "dec_cross"
    return "dec_self" if getattr(module, "is_causal", False) else "enc"


def layer_index(name: str, module: nn.Module) -> int:
    """The module's ``layer_idx``, else the first number in its qualified name, else 0."""
    index = getattr(module, "layer_idx", None)
    if isinstance(index, int):
        return index
    numbers: List[str] = re.findall(r"(?:^|\.)(\d+)(?:\.|$)", name)
    return int(numbers[0]) if numbers else 0
