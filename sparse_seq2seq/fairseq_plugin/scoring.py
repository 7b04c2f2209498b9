"""Scorer ``ter`` for ``fairseq-generate --scoring ter``: sacrebleu's TER (Snover et al. 2006),
printed with its signature. ``--ter-case-sensitive`` keeps case (sacrebleu's default is
case-insensitive TER)."""

from dataclasses import dataclass, field

from fairseq.dataclass import FairseqDataclass
from fairseq.scoring import BaseScorer, register_scorer


@dataclass
class TerScorerConfig(FairseqDataclass):
    ter_case_sensitive: bool = field(default=False, metadata={"help": "case-sensitive TER"})
    ter_normalized: bool = field(default=False, metadata={"help": "normalise punctuation first"})
    ter_no_punct: bool = field(default=False, metadata={"help": "remove punctuation first"})


@register_scorer("ter", dataclass=TerScorerConfig)
class TerScorer(BaseScorer):
    def __init__(self, cfg):
        super().__init__(cfg)
        from sacrebleu.metrics import TER

        self.metric = TER(case_sensitive=cfg.ter_case_sensitive, normalized=cfg.ter_normalized,
                          no_punct=cfg.ter_no_punct)

    def _score(self):
        return self.metric.corpus_score(self.pred, [self.ref])

    def score(self) -> float:
        return self._score().score

    def result_string(self) -> str:
        return f"{self._score()} ({self.metric.get_signature()}) sentences={len(self.pred)}"
