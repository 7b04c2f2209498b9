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

Composite models (``EncoderDecoderModel`` of two BERTs, T5 with its two stacks): the choice is
recorded in every config of the model — the top one, its sub-configs (``config.encoder``,
``config.decoder``) and the config of every nested ``PreTrainedModel`` — so the whole model and
each half saved alone load back sparse; every nested model's ``post_init`` gives its own
attention modules their α and its own ``_init_weights`` (the one ``from_pretrained`` calls on
it) fills missing α. A model any part of which computes attention without transformers'
attention interface is refused, naming that part. A composite assembled from halves sparsified
on their own (``EncoderDecoderModel(encoder=…, decoder=…)``, ``from_encoder_decoder_pretrained``)
takes their implementation (and their α init, where they share one) into its own config; halves
with different implementations are refused.
"""
from __future__ import annotations

from functools import partial
from typing import Dict, List, Union

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

__all__ = ["IMPLEMENTATIONS", "SOFTMAX", "register", "sparsify", "attach_alpha", "model_configs"]

IMPLEMENTATIONS = ("sparsemax", "entmax15", "alpha_entmax")
SOFTMAX = "sparse_seq2seq_softmax"
_NORMALIZER = {**{name: name for name in IMPLEMENTATIONS}, SOFTMAX: "softmax"}
ALPHA_INIT_KEY = "entmax_alpha_init"
RESTORED_INIT = "_restored_init"  # on α given in post_init: the init it was given at


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


def _halves(config) -> Dict[str, object]:
    """The sub-configs of a composite config (``encoder``, ``decoder``, …) by key."""
    keys = getattr(config, "sub_configs", {}) or {}
    return {key: getattr(config, key) for key in keys if getattr(config, key, None) is not None}


def _adopt_halves(model: PreTrainedModel) -> None:
    """A composite assembled from sparse halves (``EncoderDecoderModel(encoder=…, decoder=…)``,
    ``from_encoder_decoder_pretrained``) takes their attention implementation, and their α init
    where they agree on one, into its own config, so that saving it records them. Halves that
    disagree (one sparse, the other another normaliser or softmax) are refused: one model, one
    normaliser."""
    config = model.config
    subs = _halves(config)
    halves = {key: getattr(sub, "_attn_implementation", None) for key, sub in subs.items()}
    if not any(name in IMPLEMENTATIONS for name in halves.values()):
        return
    names = set(halves.values())
    if len(names) > 1:
        settings = ", ".join(f"its {key} {name!r}" for key, name in halves.items())
        raise ValueError(f"{type(model).__name__} is assembled from halves with different attention "
                         f"implementations ({settings}): sparse attention needs one for the whole model; "
                         "sparsify the halves alike before assembling them, or assemble plain halves and "
                         "call sparse_seq2seq.hf.sparsify on the composite")
    name = names.pop()
    if config._attn_implementation == name:
        return
    config._attn_implementation_internal = name  # the halves have it already
    inits = {getattr(sub, ALPHA_INIT_KEY, None) for sub in subs.values()}
    if normalizer_spec(name).learned and len(inits) == 1 and None not in inits \
            and getattr(config, ALPHA_INIT_KEY, None) is None:
        setattr(config, ALPHA_INIT_KEY, inits.pop())  # halves with different inits keep their own


def _restore(model: PreTrainedModel) -> None:
    """After ``post_init``: record one of our implementations in the config and give every
    attention module its α when the implementation learns α. A composite model runs this after
    its nested models did: their configs inherit its ``entmax_alpha_init`` where they lack one,
    and α that a nested model gave at another init is given again at the inherited one."""
    _adopt_halves(model)
    config = model.config
    name = getattr(config, "_attn_implementation", None)
    if not isinstance(name, str) or name not in IMPLEMENTATIONS:
        return
    for each in model_configs(model):
        if getattr(each, "_attn_implementation", None) == name:
            each.attn_implementation = name
    if not normalizer_spec(name).learned:
        return
    nested = [m for m in model.modules() if isinstance(m, PreTrainedModel)]  # outer before inner
    for sub in nested:
        inherited = getattr(config, ALPHA_INIT_KEY, None)
        if inherited is not None and getattr(sub.config, ALPHA_INIT_KEY, None) is None:
            setattr(sub.config, ALPHA_INIT_KEY, inherited)
    wanted = {}  # attention module → the α init of the innermost model holding it
    for sub in nested:
        for _, module in attention_modules(sub):
            wanted[id(module)] = _alpha_init(sub.config)
    with torch.device("cpu"):  # real values, also inside from_pretrained's meta-device init
        for _, module in attention_modules(model):
            init_value = wanted[id(module)]
            alpha = getattr(module, ALPHA_MODULE, None)
            given = getattr(alpha, RESTORED_INIT, None)
            if isinstance(alpha, AlphaEntmaxNormalizer) and (given is None or given == init_value):
                continue  # α of sparsify / attach_alpha, or already at this init
            _attach(module, init_value)
            setattr(getattr(module, ALPHA_MODULE), RESTORED_INIT, init_value)
    for sub in nested:
        _initialise_missing_alpha(sub)


def _initialise_missing_alpha(model: PreTrainedModel) -> None:
    """from_pretrained empties the parameters the checkpoint lacks and asks each (nested) model's
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


def _attach(module: nn.Module, alpha_init: Union[float, str]) -> None:
    alpha = AlphaEntmaxNormalizer(num_heads(module), alpha_init)
    reference = next(module.parameters(), None)
    if reference is not None and reference.device.type != "meta":
        alpha = alpha.to(reference.device)
    setattr(module, ALPHA_MODULE, alpha)


def attach_alpha(model: nn.Module, alpha_init: Union[float, str] = 1.5, replace: bool = True) -> int:
    """Give every attention module of ``model`` a learned α per head (α = 1 + sigmoid(a),
    initialised at ``alpha_init``: a number in (1, 2] or ``"random"``); with ``replace=False``
    modules that have one keep it. Returns the number of modules that got one."""
    count = 0
    for _, module in attention_modules(model):
        if not replace and isinstance(getattr(module, ALPHA_MODULE, None), AlphaEntmaxNormalizer):
            continue
        _attach(module, alpha_init)
        count += 1
    return count


def model_configs(model: PreTrainedModel) -> List:
    """Every distinct config of ``model``: its own, its sub-configs at any depth and those of
    the ``PreTrainedModel`` modules nested in it (T5's stacks hold copies of the top config)."""
    found, seen = [], set()

    def visit(config) -> None:
        if config is None or id(config) in seen:
            return
        seen.add(id(config))
        found.append(config)
        for key in getattr(config, "sub_configs", {}) or {}:
            visit(getattr(config, key, None))

    for module in model.modules():
        if isinstance(module, PreTrainedModel):
            visit(module.config)
    return found


def _refuse_without_interface(model: PreTrainedModel) -> None:
    """ValueError naming the first part of ``model`` whose attention does not go through
    transformers' attention interface (sparse attention would silently miss it)."""
    if not any(True for _ in attention_modules(model)):
        raise ValueError(f"{type(model).__name__} has no attention module that calls transformers' "
                         "attention interface (ALL_ATTENTION_FUNCTIONS), so its attention cannot be "
                         "made sparse")
    for name, module in model.named_modules():
        can_set = getattr(module, "_can_set_attn_implementation", None)
        if isinstance(module, PreTrainedModel) and can_set is not None and not can_set():
            where = f" (its {name!r})" if name else ""
            raise ValueError(f"{type(model).__name__}{where}: {type(module).__name__} computes attention "
                             "itself instead of calling transformers' attention interface "
                             "(ALL_ATTENTION_FUNCTIONS), so its attention cannot be made sparse")


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
    _refuse_without_interface(model)
    register()
    configs = model_configs(model)
    if normalizer == "softmax":
        _drop_alpha(model)
        for config in configs:
            for key in ("attn_implementation", ALPHA_INIT_KEY):
                if key in vars(config):
                    delattr(config, key)
        model.set_attn_implementation("eager")
        return model
    learned = normalizer_spec(normalizer).learned
    if learned:
        attach_alpha(model, alpha_init)
    else:
        _drop_alpha(model)
    model.set_attn_implementation(normalizer)
    for config in configs:
        config.attn_implementation = normalizer
        if learned:
            setattr(config, ALPHA_INIT_KEY, alpha_init)
        elif ALPHA_INIT_KEY in vars(config):
            delattr(config, ALPHA_INIT_KEY)
    return model
