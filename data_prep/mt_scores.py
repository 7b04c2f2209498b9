"""Translation scores: BLEU (Papineni et al. 2002), TER (Snover et al. 2006) and chrF
(Popović 2015), sacrebleu 2.x with default settings and each figure's signature beside it.

Scored on detokenised output against the raw references, as the recipes' score stage does.
``scores.json`` — read by ``sparse-seq2seq-export`` for the model card — has exactly::

    {"test_set": str, "bleu": {"score": float, "signature": str},
     "ter": {"score": float, "signature": str}, "chrf": {"score": float, "signature": str}}
"""
from __future__ import annotations

import json
import os

from . import DataError
from .atomic import atomic_paths
from .text_lines import read_lines

METRICS = ("bleu", "ter", "chrf")


def score_translation(hypotheses: str | os.PathLike, references: str | os.PathLike,
                      test_set: str, ter_case_sensitive: bool = False) -> tuple[dict, str]:
    """(the ``scores.json`` object, sacrebleu's text lines ``NAME|SIGNATURE = SCORE ...``)."""
    from sacrebleu.metrics import BLEU, CHRF, TER
    hyps, refs = list(read_lines(hypotheses)), list(read_lines(references))
    if len(hyps) != len(refs):
        raise DataError(f"{hypotheses}: {len(hyps)} hypotheses for the {len(refs)} lines of "
                        f"{references}")
    scores: dict = {"test_set": test_set}
    lines = []
    for key, metric in zip(METRICS, (BLEU(), TER(case_sensitive=ter_case_sensitive), CHRF())):
        result = metric.corpus_score(hyps, [refs])
        signature = str(metric.get_signature())
        scores[key] = {"score": round(float(result.score), 2), "signature": signature}
        name, _, details = str(result).partition(" = ")
        lines.append(f"{name}|{signature} = {details}")
    return scores, "\n".join(lines)


def write_scores(scores: dict, path: str | os.PathLike) -> None:
    """Write ``scores.json`` atomically."""
    with atomic_paths(path) as (tmp,), open(tmp, "w", encoding="utf-8") as handle:
        json.dump(scores, handle, indent=1)
        handle.write("\n")
