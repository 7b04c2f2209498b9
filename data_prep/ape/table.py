"""The post-editing results table: trained rows next to the do-nothing baseline.

Each row is a run folder written by ``recipes/mlqe_pe_ape/table.sh``: ``decode/<split>.json``
(scores of :func:`data_prep.ape.score.score`) and ``recipe.log`` (the row's recipe output,
with ``fairseq-train``'s ``--log-format simple`` lines). The table gives TER (cased and case-insensitive) and BLEU with their
sacrebleu signatures, the updates each row reached and its last logged training NLL (bits
per token), so that rows trained with the same budget can be compared (Correia & Martins,
ACL 2019, Table 2 is the same comparison on WMT).
"""
from __future__ import annotations

import json
import os
import re
from pathlib import Path

from .. import DataError

_INNER = re.compile(r"\| train_inner \|.*?nll_loss=([0-9.]+)")
_EPOCH = re.compile(r"\| train \|.*?\| nll_loss ([0-9.]+)")
_UPDATES = re.compile(r"\| train(?:_inner)? \|.*?num_updates[= ](\d+)")
_DONE = re.compile(r"done training in ([0-9.]+) seconds")


def training_summary(log: str | os.PathLike) -> dict:
    """Updates reached, last logged training NLL (bits per token) and training seconds.

    The NLL is that of the last ``train_inner`` line (the last ``--log-interval`` updates),
    or of the end-of-epoch ``train`` line where no inner line was logged.
    Several ``fairseq-train`` runs in one log (pre-training, then fine-tuning) add up: updates
    and seconds are summed over the runs, the NLL is the last one logged. Where the recipe
    echoes its commands (``+ fairseq-train ...``), only ``--task ape`` runs count (not the MT
    models that make synthetic triplets).
    """
    path = Path(log)
    if not path.is_file():
        raise DataError(f"{path}: no training log")
    finished = current = 0
    nll = epoch_nll = None
    seconds = 0.0
    counting = True
    for line in path.read_text(encoding="utf-8", errors="replace").splitlines():
        if line.startswith("+ fairseq-train "):
            counting = " --task ape " in line
        if not counting:
            continue
        if m := _INNER.search(line):
            nll = float(m.group(1))
        if m := _EPOCH.search(line):
            epoch_nll = float(m.group(1))
        if m := _UPDATES.search(line):
            current = int(m.group(1))
        if m := _DONE.search(line):
            seconds += float(m.group(1))
            finished, current = finished + current, 0
    nll = nll if nll is not None else epoch_nll
    if nll is None:
        raise DataError(f"{path}: no training statistics (was it written with "
                        "--log-format simple?)")
    return {"updates": finished + current, "train_nll_bits": nll,
            "train_seconds": round(seconds)}


def load_row(run_dir: str | os.PathLike, split: str = "test20") -> dict:
    """Scores and training summary of one run folder."""
    scores_path = Path(run_dir) / "decode" / f"{split}.json"
    if not scores_path.is_file():
        raise DataError(f"{scores_path}: no scores (did the decoding stage run?)")
    scores = json.loads(scores_path.read_text(encoding="utf-8"))
    systems = [k for k in scores if k != "do-nothing (mt)"]
    if len(systems) != 1 or "do-nothing (mt)" not in scores:
        raise DataError(f"{scores_path}: expected the do-nothing row and one system")
    row = dict(scores[systems[0]])
    row["baseline"] = scores["do-nothing (mt)"]
    row.update(training_summary(Path(run_dir) / "recipe.log"))
    return row


def format_table(rows: list[tuple[str, dict]]) -> str:
    """Markdown: do nothing first, then each trained row, then the signatures."""
    if not rows:
        raise DataError("no rows to tabulate")
    head = ("| system | updates | train NLL (bits) | TER ↓ (cased) | TER ↓ (case-insens.) "
            "| BLEU ↑ | BLEU ↑ (lc) |\n|---|---:|---:|---:|---:|---:|---:|")
    base = rows[0][1]["baseline"]
    lines = [head, f"| do nothing (MT output as it is) | – | – | {base['ter_cased']:.2f} | "
             f"{base['ter']:.2f} | {base['bleu']:.2f} | {base['bleu_lc']:.2f} |"]
    for name, r in rows:
        if r["sentences"] != base["sentences"]:
            raise DataError(f"row {name!r}: {r['sentences']} sentences, baseline "
                            f"{base['sentences']}")
        lines.append(f"| {name} | {r['updates']} | {r['train_nll_bits']:.2f} | "
                     f"{r['ter_cased']:.2f} | {r['ter']:.2f} | {r['bleu']:.2f} | "
                     f"{r['bleu_lc']:.2f} |")
    lines += ["", f"Signatures: TER cased `{base['ter_cased_signature']}`; TER "
              f"case-insensitive `{base['ter_signature']}`; BLEU `{base['bleu_signature']}`; "
              f"BLEU lc `{base['bleu_lc_signature']}`. {base['sentences']} sentences."]
    return "\n".join(lines)
