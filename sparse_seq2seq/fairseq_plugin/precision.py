"""``fairseq-train`` precision flags with the plugin's models: what works, and a clear error
where fairseq would fail deep inside.

Our models run in any precision fairseq gives them: every attention normaliser and the
entmax output layer compute in float32 and the ``entmax_loss`` sum is float32. fairseq 0.12
itself has three traps, handled when the flags are parsed (before any data is read):

* ``--bf16`` / ``--memory-efficient-bf16`` mean TPU training: fairseq sets ``--tpu`` and
  needs ``torch_xla``; without it training ends in ``AttributeError: 'NoneType' object has
  no attribute 'xla_device'``. Refused unless ``torch_xla`` is installed, naming
  ``--amp`` / ``--fp16`` instead.
* ``--fp16`` on CPU: fairseq's flattened fp16 optimizer puts its float32 copy on
  ``torch.cuda.current_device()``. Without CUDA (or with ``--cpu``) the plugin turns on
  ``--fp16-no-flatten-grads``, with which fairseq's fp16 optimizer runs on CPU.
* ``--amp`` on CPU: fairseq's autocast is CUDA's, so training runs in float32; said once.
"""
from __future__ import annotations

import argparse
import importlib.util
import logging

import torch

logger = logging.getLogger(__name__)

BF16_FLAGS = ("--bf16", "--memory-efficient-bf16")
GUARDED_FLAGS = BF16_FLAGS + ("--fp16", "--memory-efficient-fp16", "--amp", "--cpu")
BF16_REFUSAL = ("{flag} is TPU training in fairseq (it implies --tpu and needs torch_xla, which "
                "is not installed). For mixed precision on a CUDA GPU use --amp (float16 autocast) "
                "or --fp16; on CPU use --fp16 or no precision flag (float32). The sparse attention "
                "and the entmax output layer compute in float32 under every one of them.")
_AMP_ON_CPU_SAID = set()  # the namespaces already warned about


def _no_cuda(namespace: argparse.Namespace) -> bool:
    return bool(getattr(namespace, "cpu", False)) or not torch.cuda.is_available()


def check_precision(parser: argparse.ArgumentParser, namespace: argparse.Namespace) -> None:
    """Refuse bf16 without torch_xla; make fp16 work on CPU; warn that amp on CPU is float32."""
    for flag in BF16_FLAGS:
        if getattr(namespace, flag[2:].replace("-", "_"), False) and importlib.util.find_spec("torch_xla") is None:
            parser.error(BF16_REFUSAL.format(flag=flag))
    if not _no_cuda(namespace):
        return
    if getattr(namespace, "fp16", False) and not getattr(namespace, "memory_efficient_fp16", False) \
            and not getattr(namespace, "fp16_no_flatten_grads", False):
        namespace.fp16_no_flatten_grads = True
        logger.info("--fp16 without CUDA: using --fp16-no-flatten-grads (fairseq's flattened "
                    "fp16 optimizer is CUDA-only)")
    if getattr(namespace, "amp", False) and id(namespace) not in _AMP_ON_CPU_SAID:
        _AMP_ON_CPU_SAID.add(id(namespace))
        logger.warning("--amp without CUDA: fairseq's autocast is CUDA-only, so this trains in "
                       "float32; --fp16 gives half precision on CPU")


def _guarded(action_class: type) -> type:
    class Guarded(action_class):
        def __call__(self, parser, namespace, values, option_string=None):
            super().__call__(parser, namespace, values, option_string)
            check_precision(parser, namespace)

    Guarded.__name__ = f"PrecisionChecked{action_class.__name__}"
    return Guarded


def guard_precision_flags(parser: argparse.ArgumentParser) -> None:
    """Run :func:`check_precision` whenever a precision flag (or ``--cpu``) is parsed. A
    parser (or argument group) without these flags is left as it is (idempotent)."""
    for action in parser._actions:
        if set(action.option_strings) & set(GUARDED_FLAGS) and not action.__class__.__name__.startswith(
                "PrecisionChecked"):
            action.__class__ = _guarded(action.__class__)
