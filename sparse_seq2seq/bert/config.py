"""Sizes of a BERT network, read from a Hugging Face ``BertConfig`` or given directly.

The encoder and decoder of the post-editing model of Correia & Martins (ACL 2019) both take
their sizes from the BERT checkpoint they start from; a :class:`BertSizes` is that
information as plain data, so the networks themselves never import ``transformers``.
"""
from __future__ import annotations

import json
from dataclasses import asdict, dataclass, fields
from typing import Any, Mapping

ACTIVATIONS = ("gelu", "gelu_new", "gelu_pytorch_tanh", "relu", "silu", "swish")


@dataclass(frozen=True)
class BertSizes:
    """The hyper-parameters that fix a BERT network's shapes and regularisation."""

    vocab_size: int
    hidden_size: int = 768
    num_layers: int = 12
    num_heads: int = 12
    intermediate_size: int = 3072
    max_positions: int = 512
    type_vocab_size: int = 2
    hidden_act: str = "gelu"
    layer_norm_eps: float = 1e-12
    hidden_dropout: float = 0.1
    attention_dropout: float = 0.1
    initializer_range: float = 0.02
    pad_token_id: int = 0

    def __post_init__(self) -> None:
        if self.hidden_size % self.num_heads:
            raise ValueError(f"hidden_size {self.hidden_size} is not divisible by "
                             f"num_heads {self.num_heads}")
        if self.hidden_act not in ACTIVATIONS:
            raise ValueError(f"activation {self.hidden_act!r} is not supported; "
                             f"choose from {', '.join(ACTIVATIONS)}")
        if self.type_vocab_size < 2:
            raise ValueError("post-editing needs two segment embeddings (A for src, B for mt "
                             f"and pe); this BERT has type_vocab_size={self.type_vocab_size}")

    @classmethod
    def from_hf_config(cls, config: Any) -> "BertSizes":
        """From a ``transformers.BertConfig`` (or anything with the same attribute names)."""
        if getattr(config, "position_embedding_type", "absolute") != "absolute":
            raise ValueError("only absolute position embeddings are supported, not "
                             f"{config.position_embedding_type!r}")
        return cls(vocab_size=config.vocab_size, hidden_size=config.hidden_size,
                   num_layers=config.num_hidden_layers, num_heads=config.num_attention_heads,
                   intermediate_size=config.intermediate_size,
                   max_positions=config.max_position_embeddings,
                   type_vocab_size=config.type_vocab_size, hidden_act=config.hidden_act,
                   layer_norm_eps=config.layer_norm_eps,
                   hidden_dropout=config.hidden_dropout_prob,
                   attention_dropout=config.attention_probs_dropout_prob,
                   initializer_range=config.initializer_range,
                   pad_token_id=config.pad_token_id if config.pad_token_id is not None else 0)

    def replace(self, **changes: Any) -> "BertSizes":
        """A copy with some fields changed (``None`` values are ignored)."""
        values = asdict(self)
        values.update({k: v for k, v in changes.items() if v is not None})
        return BertSizes(**values)

    def to_json(self) -> str:
        return json.dumps(asdict(self), sort_keys=True)

    @classmethod
    def from_json(cls, text: str) -> "BertSizes":
        data: Mapping[str, Any] = json.loads(text)
        known = {f.name for f in fields(cls)}
        unknown = sorted(set(data) - known)
        if unknown:
            raise ValueError(f"unknown BERT size fields: {', '.join(unknown)}")
        return cls(**data)
