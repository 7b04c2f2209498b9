"""Let fairseq checkpoints load with torch's safe unpickler (``weights_only=True``, the
default since torch 2.6) by allowing the few plain classes they hold; nothing sets
``TORCH_FORCE_NO_WEIGHTS_ONLY_LOAD``, so any other global is still refused."""
from __future__ import annotations

import argparse

import torch

SAFE_GLOBALS = [argparse.Namespace]


def allow_fairseq_checkpoint_globals() -> None:
    torch.serialization.add_safe_globals(SAFE_GLOBALS)
