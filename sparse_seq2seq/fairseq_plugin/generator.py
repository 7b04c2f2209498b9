"""Beam search for models whose output layer is sparse (entmax): log-probabilities of −inf.

fairseq's beam search forces end-of-sentence at the maximum length, and fails if that token
has probability zero for every hypothesis (``AssertionError: step < max_len``). At that last
step only, :class:`MaxLengthGuard` gives a zero-probability end-of-sentence the finite score
``CLOSING_LOGPROB``, so such hypotheses are still closed and returned, ranked below every
hypothesis that ended by itself. Every other step keeps the exact −inf.
"""
from __future__ import annotations

import torch
from fairseq.sequence_generator import EnsembleModel, SequenceGenerator

CLOSING_LOGPROB = -1e4


class MaxLengthGuard(EnsembleModel):
    """An ensemble that knows the length at which the generator will force end-of-sentence."""

    def __init__(self, models, eos: int):
        super().__init__(models)
        self.eos = eos
        self.max_len = None

    def forward_decoder(self, tokens, encoder_outs, incremental_states, temperature: float = 1.0):
        lprobs, attn = super().forward_decoder(tokens, encoder_outs, incremental_states, temperature)
        if self.max_len is not None and tokens.size(1) - 1 >= self.max_len:
            eos = lprobs[:, self.eos]
            lprobs[:, self.eos] = torch.where(torch.isneginf(eos), torch.full_like(eos, CLOSING_LOGPROB), eos)
        return lprobs, attn


class SparseSequenceGenerator(SequenceGenerator):
    """fairseq's SequenceGenerator with :class:`MaxLengthGuard` around the models."""

    def __init__(self, models, tgt_dict, **kwargs):
        super().__init__(models, tgt_dict, **kwargs)
        inner = self.model.models if isinstance(self.model, EnsembleModel) else models
        self.model = MaxLengthGuard(list(inner), tgt_dict.eos())
        self.max_len = min(self.max_len, self.model.max_decoder_positions())

    def _generate(self, sample, prefix_tokens=None, constraints=None, bos_token=None):
        src_tokens = sample["net_input"].get("src_tokens", sample["net_input"].get("source"))
        src_len = src_tokens.size(1)
        if self.match_source_len:
            self.model.max_len = None  # lengths come from the source, per sentence
        else:
            self.model.max_len = min(int(self.max_len_a * src_len + self.max_len_b), self.max_len - 1)
        return super()._generate(sample, prefix_tokens=prefix_tokens, constraints=constraints,
                                 bos_token=bos_token)
