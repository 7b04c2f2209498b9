"""Criterion ``entmax_loss``: the α-entmax Fenchel–Young loss of the output layer
(Peters, Niculae & Martins 2019, eq. 11), α = ``--loss-alpha`` in (1, 2].

Logged like fairseq's criteria (loss in base 2 per token) plus ``gold_zero``, the share
of gold tokens given zero probability — an entmax model can do that, so no perplexity
or NLL (which would be infinite) is logged.
"""

import math
from dataclasses import dataclass, field

import torch
from fairseq import metrics, utils
from fairseq.criterions import FairseqCriterion, register_criterion
from fairseq.dataclass import FairseqDataclass
from omegaconf import II

from ..losses import loss_and_probs
from ..registry import entmax_alpha_arg
from .output_layer import entmax_probs


@dataclass
class EntmaxLossConfig(FairseqDataclass):
    loss_alpha: float = field(default=1.5, metadata={
        "help": "α of the entmax loss, in (1, 2]: 1.5 = 1.5-entmax, 2 = sparsemax"})
    sentence_avg: bool = II("optimization.sentence_avg")


@register_criterion("entmax_loss", dataclass=EntmaxLossConfig)
class EntmaxLossCriterion(FairseqCriterion):
    @classmethod
    def add_args(cls, parser) -> None:
        """The dataclass flags, with ``--loss-alpha`` checked when parsed (before any data is read)."""
        super().add_args(parser)
        for action in parser._actions:
            if "--loss-alpha" in action.option_strings:
                action.type = entmax_alpha_arg("--loss-alpha")

    def __init__(self, task, loss_alpha: float = 1.5, sentence_avg: bool = False):
        super().__init__(task)
        if not 1 < loss_alpha <= 2:
            raise ValueError(f"--loss-alpha must be in (1, 2], got {loss_alpha}")
        self.alpha = float(loss_alpha)
        self.sentence_avg = sentence_avg

    def forward(self, model, sample, reduce: bool = True):
        net_output = model(**sample["net_input"])
        logits = net_output[0]
        target = model.get_targets(sample, net_output)
        keep = target.ne(self.padding_idx)
        logits, target = logits[keep], target[keep]
        losses, probs = loss_and_probs(logits, target, self.alpha,
                                       lambda z: entmax_probs(z, self.alpha))
        losses = losses.float()  # a float16 sum over a batch overflows (65504)
        loss = losses.sum() if reduce else losses
        gold_zero = probs.gather(-1, target.unsqueeze(-1)).eq(0).sum()
        sample_size = sample["target"].size(0) if self.sentence_avg else sample["ntokens"]
        logging_output = {
            "loss": loss.data,
            "gold_zero": gold_zero.data,
            "ntokens": sample["ntokens"],
            "nsentences": sample["target"].size(0),
            "sample_size": sample_size,
        }
        return loss, sample_size, logging_output

    @staticmethod
    def reduce_metrics(logging_outputs) -> None:
        loss_sum = sum(log.get("loss", 0) for log in logging_outputs)
        ntokens = sum(log.get("ntokens", 0) for log in logging_outputs)
        sample_size = sum(log.get("sample_size", 0) for log in logging_outputs)
        gold_zero = sum(log.get("gold_zero", 0) for log in logging_outputs)
        metrics.log_scalar("loss", loss_sum / max(sample_size, 1) / math.log(2), sample_size, round=3)
        metrics.log_scalar("gold_zero", utils.item(gold_zero) / max(ntokens, 1), ntokens, round=4)

    @staticmethod
    def logging_outputs_can_be_summed() -> bool:
        return True
