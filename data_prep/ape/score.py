"""From ``fairseq-generate`` output to post-edits in the triplets' tokenisation, and scores.

Post-editing is scored against the human post-edits with TER (Snover et al. 2006) and BLEU,
sacrebleu 2.x with signatures, on the triplets' own tokenisation (``tokenize none``, as the
MLQE-PE and WMT APE baselines are computed). The machine translation itself is the "do
nothing" baseline that an APE system has to beat (Correia & Martins, ACL 2019, Table 2).
TER is reported both case-sensitive and case-insensitive (sacrebleu's default): a model
with an uncased vocabulary cannot produce capitals or accents that are not copied from its
input, and the case-insensitive figure shows what it gets right apart from that.
"""
from __future__ import annotations

import json
import os
from pathlib import Path
from typing import Callable

from .. import DataError
from ..atomic import atomic_paths
from ..hypotheses import write_hypotheses
from ..text_lines import read_lines
from .triplets import paths, read_triplets
from .wordpiece import WordPieces


def detokenize(generate_output: str | os.PathLike, prefix: str | os.PathLike,
               wordpiece: str | os.PathLike, output: str | os.PathLike,
               log: Callable[[str], None] = print) -> int:
    """Write one post-edit per triplet of ``prefix`` to ``output``, in the triplets' tokens.

    The hypotheses of ``generate_output`` (``D-`` lines: BERT basic tokens) are first written,
    in input order and count-checked, to ``<output>.basic``; each is then rebuilt with the
    words of its own mt and src (:meth:`WordPieces.restore`).
    """
    triplets = [t for _, t in read_triplets(prefix)]
    basic = Path(f"{output}.basic")
    write_hypotheses(generate_output, basic, len(triplets))
    pieces = WordPieces.load(wordpiece)
    hypotheses = list(read_lines(basic))
    with atomic_paths(output) as (tmp,), open(tmp, "w", encoding="utf-8") as handle:
        for hyp, (src, mt, _) in zip(hypotheses, triplets):
            handle.write(pieces.restore(hyp, [mt, src]) + "\n")
    log(f"{output}: {len(triplets)} post-edits (BERT tokens in {basic})")
    return len(triplets)


def _metrics():
    from sacrebleu.metrics import BLEU, TER
    return {"bleu": BLEU(tokenize="none", force=True),
            "bleu_lc": BLEU(tokenize="none", lowercase=True, force=True),
            "ter_cased": TER(case_sensitive=True), "ter": TER()}


def score_lines(hypotheses: list[str], references: list[str]) -> dict:
    """BLEU (cased and lowercased) and TER (cased and case-insensitive), with signatures."""
    if len(hypotheses) != len(references):
        raise DataError(f"{len(hypotheses)} hypotheses for {len(references)} references")
    out: dict = {"sentences": len(references)}
    for key, metric in _metrics().items():
        out[key] = round(metric.corpus_score(hypotheses, [references]).score, 2)
        out[f"{key}_signature"] = str(metric.get_signature())
    return out


def score(hypotheses: str | os.PathLike | None, prefix: str | os.PathLike) -> dict[str, dict]:
    """Scores of the do-nothing baseline (mt) and, if given, of a hypothesis file against pe."""
    mt = [t[1] for _, t in read_triplets(prefix)]
    pe = [t[2] for _, t in read_triplets(prefix)]
    rows = {"do-nothing (mt)": score_lines(mt, pe)}
    if hypotheses is not None:
        hyps = list(read_lines(hypotheses))
        if len(hyps) != len(pe):
            raise DataError(f"{hypotheses}: {len(hyps)} lines but {paths(prefix)[2]} has {len(pe)}")
        rows[str(hypotheses)] = score_lines(hyps, pe)
    return rows


def format_scores(rows: dict[str, dict]) -> str:
    """A small table, then every signature once."""
    lines = [f"{'system':<40} {'TER':>6} {'TER lc':>7} {'BLEU':>6} {'BLEU lc':>8}"]
    for name, r in rows.items():
        shown = name if len(name) <= 40 else "..." + name[-37:]
        lines.append(f"{shown:<40} {r['ter_cased']:>6.2f} {r['ter']:>7.2f} "
                     f"{r['bleu']:>6.2f} {r['bleu_lc']:>8.2f}")
    first = next(iter(rows.values()))
    lines.append("signatures: TER " + first["ter_cased_signature"] + "; TER lc "
                 + first["ter_signature"] + "; BLEU " + first["bleu_signature"]
                 + "; BLEU lc " + first["bleu_lc_signature"])
    return "\n".join(lines)


def write_json(rows: dict[str, dict], path: str | os.PathLike) -> None:
    with atomic_paths(path) as (tmp,):
        Path(tmp).write_text(json.dumps(rows, indent=2) + "\n", encoding="utf-8")
