"""Sparse attention as a transformers attention implementation, and learned α per head.

:func:`register` adds ``sparsemax``, ``entmax15`` and ``alpha_entmax`` (and
``sparse_seq2seq_softmax``, the same code with softmax, for comparisons) to transformers'
``AttentionInterface``, each with ``sdpa_mask`` as its ``AttentionMaskInterface`` entry (a
boolean mask, or None for plain causal or unmasked attention), so that
``from_pretrained(..., attn_implementation="entmax15")`` works.

α-entmax learns one α per head, α = 1 + sigmoid(a) ∈ (1, 2] (Correia, Niculae & Martins 2019,
§3.2): every attention module gets an :class:`~sparse_seq2seq.normalizers.AlphaEntmaxNormalizer`
(an :class:`~sparse_seq2seq.mappings.EntmaxAlpha`) as its ``entmax_alpha`` child, so the logits
``…entmax_alpha.alpha_logit`` are model parameters, trained, saved and loaded with the rest.
The config records ``attn_implementation`` (the key transformers reads back on loading) and
``entmax_alpha_init``; a model built from such a config — ``from_pretrained`` of a saved folder,
or any model built with ``attn_implementation="alpha_entmax"`` — gets its α modules in
``post_init`` (wrapped once, on import of :mod:`sparse_seq2seq.hf`), before its weights are read.
"""
from __future__ import annotations

from functools import partial
from typing import Union

import torch
from torch import nn
from transformers import AttentionInterface, PreTrainedModel
from transformers import initialization as init
from transformers.masking_utils import AttentionMaskInterface, sdpa_mask

from ..mappings import alpha_logits
from ..normalizers import AlphaEntmaxNormalizer
from ..registry import ALPHA_INIT_DEFAULT, normalizer_spec
from .attention import ALPHA_MODULE, attention_forward
from .modules import attention_modules, num_heads

__all__ = ["IMPLEMENTATIONS", "SOFTMAX", "register", "sparsify", "attach_alpha"]

IMPLEMENTATIONS = ("sparsemax", "entmax15", "alpha_entmax")
SOFTMAX = "sparse_seq2seq_softmax"
_NORMALIZER = {**{name: name for name in IMPLEMENTATIONS}, SOFTMAX: "softmax"}
ALPHA_INIT_KEY = "entmax_alpha_init"


def register() -> None:
    """Register the attention implementations and their masks (idempotent) and make models
    built with ``alpha_entmax`` get their α modules."""
    for name, normalizer in _NORMALIZER.items():
        fn = partial(attention_forward, normalizer=normalizer)
        fn.__name__ = f"{name}_attention_forward"  # type: ignore[attr-defined]
        AttentionInterface.register(name, fn)
        AttentionMaskInterface.register(name, sdpa_mask)
    if not getattr(PreTrainedModel.post_init, "_sparse_seq2seq", False):
        original = PreTrainedModel.post_init

        def post_init(self: PreTrainedModel) -> None:
            original(self)
            _restore(self)

        post_init._sparse_seq2seq = True  # type: ignore[attr-defined]
        post_init.__doc__ = original.__doc__
        PreTrainedModel.post_init = post_init


def _alpha_init(config) -> Union[float, str]:
    value = getattr(config, ALPHA_INIT_KEY, None)
    return ALPHA_INIT_DEFAULT if value is None else value


def _restore(model: PreTrainedModel) -> None:
    """After ``post_init``: record one of our implementations in the config and give every
    attention module its α when the implementation learns α."""
    config = model.config
    name = getattr(config, "_attn_implementation", None)
    if not isinstance(name, str) or name not in IMPLEMENTATIONS:
        return
    config.attn_implementation = name
    if normalizer_spec(name).learned:
        with torch.device("cpu"):  # real values, also inside from_pretrained's meta-device init
            attach_alpha(model, _alpha_init(config), replace=False)
        _initialise_missing_alpha(model)


def _initialise_missing_alpha(model: PreTrainedModel) -> None:
    """from_pretrained empties the parameters the checkpoint lacks and asks the model's
    ``_init_weights`` to fill them: this model's (not its class's) also fills α with its init."""
    init_weights = model._init_weights
    if getattr(init_weights, "_sparse_seq2seq", False):
        return

    def _init_weights(module: nn.Module) -> None:
        if isinstance(module, AlphaEntmaxNormalizer):  # skips logits read from the checkpoint
            init.copy_(module.alpha_logit, alpha_logits(module.num_heads, _alpha_init(model.config)))
        else:
            init_weights(module)

    _init_weights._sparse_seq2seq = True  # type: ignore[attr-defined]
    model._init_weights = _init_weights


def attach_alpha(model: nn.Module, alpha_init: Union[float, str] = 1.5, replace: bool = True) -> int:
    """Give every attention module of ``model`` a learned α per head (α = 1 + sigmoid(a),
    initialised at ``alpha_init``: a number in (1, 2] or ``"random"``); with ``replace=False``
    modules that have one keep it. Returns the number of modules that got one."""
    count = 0
    for _, module in attention_modules(model):
        if not replace and isinstance(getattr(module, ALPHA_MODULE, None), AlphaEntmaxNormalizer):
            continue
        alpha = AlphaEntmaxNormalizer(num_heads(module), alpha_init)
        reference = next(module.parameters(), None)
        if reference is not None and reference.device.type != "meta":
            alpha = alpha.to(reference.device)
        setattr(module, ALPHA_MODULE, alpha)
        count += 1
    return count


def _drop_alpha(model: nn.Module) -> None:
    for _, module in attention_modules(model):
        if hasattr(module, ALPHA_MODULE):
            delattr(module, ALPHA_MODULE)


def sparsify(model: PreTrainedModel, normalizer: str = "alpha_entmax",
             alpha_init: Union[float, str] = 1.5) -> PreTrainedModel:
    """Make every attention of a transformers model use ``normalizer``: ``sparsemax``,
    ``entmax15``, ``alpha_entmax`` (a learned α per head, initialised at ``alpha_init``, a
    number in (1, 2] or ``"random"``; any α the heads had is replaced) or ``softmax`` (back to
    transformers' eager attention, α removed). The choice is stored in the config, so
    ``save_pretrained`` / ``from_pretrained`` keep it. Returns the model, changed in place."""
    if normalizer not in IMPLEMENTATIONS + ("softmax",):
        raise ValueError(f"normalizer must be one of {IMPLEMENTATIONS + ('softmax',)}, got {normalizer!r}")
    if not isinstance(model, PreTrainedModel):
        raise TypeError(f"sparsify needs a transformers PreTrainedModel, got {type(model).__name__}")
    if not any(True for _ in attention_modules(model)):
        raise ValueError(f"{type(model).__name__} has no attention module that calls transformers' "
                         "attention interface")
    register()
    config = model.config
    if normalizer == "softmax":
        _drop_alpha(model)
        for key in ("attn_implementation", ALPHA_INIT_KEY):
            if hasattr(config, key):
                delattr(config, key)
        model.set_attn_implementation("eager")
        return model
    if normalizer_spec(normalizer).learned:
        attach_alpha(model, alpha_init)
        setattr(config, ALPHA_INIT_KEY, alpha_init)
    else:
        _drop_alpha(model)
        if hasattr(config, ALPHA_INIT_KEY):
            delattr(config, ALPHA_INIT_KEY)
    model.set_attn_implementation(normalizer)
    config.attn_implementation = normalizer
    return model
