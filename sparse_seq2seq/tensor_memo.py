"""Answers about a tensor's values (is this mask causal? is it plain padding?) computed once
per tensor and version, not once per attention call: each computation reads values, so on
a GPU it waits for the device.

An answer is kept for the tensor that owns the storage (a view such as fairseq's
``_future_mask[:T, :T]``, new on every call, shares its owner), with the view's offset,
shape and strides and the storage's version, and only while that owner is alive, so a new
tensor at a freed address is never taken for an old one. Inference tensors have no version
counter: their answers are computed every time.
"""
from __future__ import annotations

import weakref
from typing import Callable, Dict, Hashable, Tuple, TypeVar

from torch import Tensor

T = TypeVar("T")


class TensorMemo:
    """A bounded memo of ``compute()`` per (live tensor, version, ``extra``)."""

    def __init__(self, size: int = 64):
        self.size = size
        self._entries: Dict[tuple, Tuple[weakref.ref, object]] = {}

    def get(self, tensor: Tensor, extra: Hashable, compute: Callable[[], T]) -> T:
        owner = tensor._base if tensor._base is not None else tensor
        try:
            version = tensor._version
        except RuntimeError:  # an inference tensor: no version, so nothing can be kept
            return compute()
        key = (id(owner), tensor.data_ptr(), tuple(tensor.shape), tensor.stride(), version,
               str(tensor.device), extra)
        kept = self._entries.get(key)
        if kept is not None and kept[0]() is owner:
            return kept[1]
        value = compute()
        if len(self._entries) >= self.size:
            self._entries.clear()
        self._entries[key] = (weakref.ref(owner), value)
        return value
