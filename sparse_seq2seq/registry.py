"""The one table of attention types and normalisers, the per-head scalar names and the
attention flags shared by every model of the plugin.

Correia, Niculae & Martins (2019) give each attention type of a Transformer — encoder
self-attention, decoder self-attention, decoder-encoder (context) attention — its own
normaliser π ∈ {softmax, sparsemax, 1.5-entmax, α-entmax} (eq. 1), and learn α per head
(§3.2). Everything that names an attention type, a normaliser, or a head's logged scalar
(``alpha/enc_l0_h3``, ``density/enc_l0_h3``) reads it here. Plain PyTorch and argparse: no
fairseq import. ``python -m sparse_seq2seq.registry --types`` prints one line per attention
type, ``key flag label``; ``--normalizers`` one normaliser name per line (for the recipes).
"""
from __future__ import annotations

import argparse
import re
import sys
from dataclasses import dataclass
from typing import Callable, Dict, Iterator, List, NamedTuple, Optional, Sequence, Tuple

import torch
from torch import Tensor, nn

from .mappings import entmax15, entmax_bisect, sparsemax

__all__ = ["AttentionType", "ATTENTION_TYPES", "ATTENTION_KEYS", "attention_type",
           "attention_modules", "NormalizerSpec", "NORMALIZERS", "NORMALIZER_NAMES", "normalizer_spec",
           "mapping_for_alpha", "HEAD_METRICS", "HeadScalar", "head_scalar_name", "alpha_scalar_name",
           "density_scalar_name", "parse_head_scalar_name", "parse_alpha_name", "ALPHA_INIT_DEFAULT",
           "alpha_init_arg", "entmax_alpha_arg", "add_attention_args", "set_attention_defaults"]


# -- attention types --------------------------------------------------------------------------
@dataclass(frozen=True)
class AttentionType:
    """One attention type of an encoder-decoder and where a fairseq model keeps it."""

    key: str  # short name in scalar names and tables: "enc", "dec_self", "dec_cross"
    option: str  # cfg attribute naming its normaliser, e.g. "encoder_attn_normalizer"
    label: str  # for people: "encoder self-attention"
    stack: str  # model attribute holding the layers: "encoder" or "decoder"
    module: str  # attribute of a layer holding the attention: "self_attn" or "encoder_attn"
    layers_option: str  # cfg attribute with the number of layers of the stack
    heads_option: str  # cfg attribute with the number of heads

    @property
    def flag(self) -> str:
        """The command-line flag, e.g. ``--encoder-attn-normalizer``."""
        return "--" + self.option.replace("_", "-")


ATTENTION_TYPES: Tuple[AttentionType, ...] = (
    AttentionType("enc", "encoder_attn_normalizer", "encoder self-attention", "encoder",
                  "self_attn", "encoder_layers", "encoder_attention_heads"),
    AttentionType("dec_self", "decoder_self_attn_normalizer", "decoder self-attention", "decoder",
                  "self_attn", "decoder_layers", "decoder_attention_heads"),
    AttentionType("dec_cross", "decoder_cross_attn_normalizer", "decoder-encoder (context) attention",
                  "decoder", "encoder_attn", "decoder_layers", "decoder_attention_heads"),
)
ATTENTION_KEYS: Tuple[str, ...] = tuple(t.key for t in ATTENTION_TYPES)
_BY_KEY: Dict[str, AttentionType] = {t.key: t for t in ATTENTION_TYPES}


def attention_type(key: str) -> AttentionType:
    """The attention type called ``key`` (one of :data:`ATTENTION_KEYS`)."""
    try:
        return _BY_KEY[key]
    except KeyError:
        raise ValueError(f"unknown attention type {key!r}; choose from {', '.join(ATTENTION_KEYS)}") from None


def attention_modules(model: nn.Module) -> Iterator[Tuple[str, int, nn.Module]]:
    """(type key, layer index, module) for every sparse attention of an encoder-decoder
    (``model.encoder.layers[i].self_attn`` …), in type then layer order."""
    from .attention import SparseMultiheadAttention  # late: attention imports this module

    for kind in ATTENTION_TYPES:
        layers = getattr(getattr(model, kind.stack, None), "layers", None) or []
        for index, layer in enumerate(layers):
            module = getattr(layer, kind.module, None)
            if isinstance(module, SparseMultiheadAttention):
                yield kind.key, index, module


# -- normalisers ------------------------------------------------------------------------------
Mapping = Callable[[Tensor], Tensor]


def _softmax(scores: Tensor) -> Tensor:
    return torch.softmax(scores, dim=-1)


def _sparsemax(scores: Tensor) -> Tensor:
    return sparsemax(scores, dim=-1)


def _entmax15(scores: Tensor) -> Tensor:
    return entmax15(scores, dim=-1)


@dataclass(frozen=True)
class NormalizerSpec:
    """A normaliser: its name, the mapping along the last dim, and its α.

    ``alpha`` is the fixed α of the α-entmax family member (softmax 1, 1.5-entmax 1.5,
    sparsemax 2; Peters et al. 2019, eq. 8), or None when α is learned per head."""

    name: str
    alpha: Optional[float]
    mapping: Optional[Mapping]  # None: α-entmax with the head's own α (bisection)
    description: str

    @property
    def learned(self) -> bool:
        return self.alpha is None


NORMALIZERS: Dict[str, NormalizerSpec] = {spec.name: spec for spec in (
    NormalizerSpec("softmax", 1.0, _softmax, "softmax (dense)"),
    NormalizerSpec("sparsemax", 2.0, _sparsemax, "sparsemax, α = 2"),
    NormalizerSpec("entmax15", 1.5, _entmax15, "1.5-entmax"),
    NormalizerSpec("alpha_entmax", None, None, "α-entmax with α learned per head, α = 1 + sigmoid(a)"),
)}
NORMALIZER_NAMES: Tuple[str, ...] = tuple(NORMALIZERS)


def normalizer_spec(name: str) -> NormalizerSpec:
    """The normaliser called ``name`` (one of :data:`NORMALIZER_NAMES`)."""
    try:
        return NORMALIZERS[name]
    except KeyError:
        raise ValueError(f"unknown attention normalizer {name!r}; choose from {NORMALIZER_NAMES}") from None


def mapping_for_alpha(alpha: float) -> Mapping:
    """α-entmax over the last dim for a fixed α: the exact mapping of the normaliser with
    that α (softmax at 1, 1.5-entmax at 1.5, sparsemax at 2), else bisection."""
    for spec in NORMALIZERS.values():
        if spec.alpha is not None and spec.alpha == alpha:
            return spec.mapping
    return lambda scores: entmax_bisect(scores, alpha, dim=-1)


# -- per-head scalar names --------------------------------------------------------------------
HEAD_METRICS: Tuple[str, ...] = ("alpha", "density")


class HeadScalar(NamedTuple):
    """What a per-head scalar name says: ``density/dec_cross_l1_h3``."""

    metric: str
    kind: str
    layer: int
    head: int


_HEAD_SCALAR = re.compile(rf"^({'|'.join(HEAD_METRICS)})/({'|'.join(ATTENTION_KEYS)})_l(\d+)_h(\d+)$")


def head_scalar_name(metric: str, kind: str, layer: int, head: int) -> str:
    """``head_scalar_name("alpha", "enc", 0, 3)`` → ``"alpha/enc_l0_h3"``."""
    if metric not in HEAD_METRICS:
        raise ValueError(f"unknown head metric {metric!r}; choose from {HEAD_METRICS}")
    attention_type(kind)
    return f"{metric}/{kind}_l{int(layer)}_h{int(head)}"


def alpha_scalar_name(kind: str, layer: int, head: int) -> str:
    """The logged α of one head: ``alpha/<type>_l<layer>_h<head>``."""
    return head_scalar_name("alpha", kind, layer, head)


def density_scalar_name(kind: str, layer: int, head: int) -> str:
    """The logged attention density (mean share of the keys a query attends to) of a head."""
    return head_scalar_name("density", kind, layer, head)


def parse_head_scalar_name(name: str) -> Optional[HeadScalar]:
    """``"density/dec_cross_l1_h3"`` → HeadScalar("density", "dec_cross", 1, 3); None for
    any other scalar."""
    match = _HEAD_SCALAR.match(name)
    if not match:
        return None
    return HeadScalar(match.group(1), match.group(2), int(match.group(3)), int(match.group(4)))


def parse_alpha_name(name: str) -> Optional[Tuple[str, int, int]]:
    """``"alpha/dec_cross_l1_h3"`` → ("dec_cross", 1, 3); None for any other scalar."""
    parsed = parse_head_scalar_name(name)
    return (parsed.kind, parsed.layer, parsed.head) if parsed and parsed.metric == "alpha" else None


# -- flags ------------------------------------------------------------------------------------
ALPHA_INIT_DEFAULT = "1.5"


def _alpha_in_range(text: str) -> Optional[float]:
    try:
        value = float(text)
    except (TypeError, ValueError):
        return None
    return value if 1 < value <= 2 else None


def alpha_init_arg(text: str) -> str:
    """argparse type of ``--attn-alpha-init``: a number in (1, 2] or ``random``, kept as text."""
    text = str(text).strip()
    if text != "random" and _alpha_in_range(text) is None:
        raise argparse.ArgumentTypeError(
            f"--attn-alpha-init must be a number in (1, 2] or 'random', got {text!r}")
    return text


def entmax_alpha_arg(flag: str) -> Callable[[str], float]:
    """argparse type of a fixed-α flag (``--loss-alpha``): a number in (1, 2]."""
    def parse(text: str) -> float:
        value = _alpha_in_range(text)
        if value is None:
            raise argparse.ArgumentTypeError(f"{flag} must be a number in (1, 2] "
                                             f"(1.5 = 1.5-entmax, 2 = sparsemax), got {text!r}")
        return value
    parse.__name__ = flag.lstrip("-").replace("-", "_")  # argparse names the type in errors
    return parse


def add_attention_args(parser: argparse.ArgumentParser) -> None:
    """The attention flags, shared by every model of the plugin."""
    for kind in ATTENTION_TYPES:
        parser.add_argument(kind.flag, choices=NORMALIZER_NAMES, help=f"normaliser of the {kind.label}")
    parser.add_argument("--attn-alpha-init", type=alpha_init_arg, metavar="A",
                        help="initial α of alpha_entmax heads: a number in (1, 2] or 'random'")
    parser.add_argument("--output-alpha", type=float, metavar="A",
                        help="α of the output layer at decoding (default: --loss-alpha of the "
                             "entmax_loss criterion the model was trained with, else 1 = softmax)")


def set_attention_defaults(args, normalizer: str) -> None:
    """Architecture defaults: every attention type without a normaliser gets ``normalizer``;
    ``attn_alpha_init`` defaults to :data:`ALPHA_INIT_DEFAULT`."""
    for kind in ATTENTION_TYPES:
        setattr(args, kind.option, getattr(args, kind.option, None) or normalizer)
    args.attn_alpha_init = getattr(args, "attn_alpha_init", None) or ALPHA_INIT_DEFAULT


def main(argv: Optional[Sequence[str]] = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m sparse_seq2seq.registry", description=__doc__.split("\n\n")[0])
    group = parser.add_mutually_exclusive_group(required=True)
    group.add_argument("--types", action="store_true", help="one line per attention type: key flag label")
    group.add_argument("--normalizers", action="store_true", help="one normaliser name per line")
    args = parser.parse_args(argv)
    lines: List[str] = ([f"{t.key} {t.flag} {t.label}" for t in ATTENTION_TYPES] if args.types
                        else list(NORMALIZER_NAMES))
    sys.stdout.write("\n".join(lines) + "\n")
    return 0


if __name__ == "__main__":
    sys.exit(main())
