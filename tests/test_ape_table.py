"""The post-editing results table: training summaries read from recipe logs (APE runs only,
pre-training and fine-tuning added up), rows next to the do-nothing baseline, and
``recipes/mlqe_pe_ape/table.sh`` printing every row's commands."""
from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

from data_prep import DataError
from data_prep.ape.table import format_table, load_row, training_summary

ROOT = Path(__file__).resolve().parents[1]
ENV = {**os.environ, "PYTHONPATH": str(ROOT)}

MT_RUN = """+ fairseq-train /w/bin.en-de --user-dir u --task translation --arch t
2026-11-26 05:46:29 | INFO | train_inner | epoch 001:     20 / 40 loss=9.1, nll_loss=8.5, num_updates=20, lr=1
2026-11-26 05:46:30 | INFO | fairseq_cli.train | done training in 50.0 seconds
"""


def ape_run(updates: int, nll: float, seconds: float, inner: bool = True) -> str:
    lines = [f"+ fairseq-train /w/bin --user-dir u --task ape --arch bert_ape --max-update {updates}"]
    if inner:
        lines.append(f"2026-11-26 05:46:29 | INFO | train_inner | epoch 001:     {updates} / 793 "
                     f"loss=11.1, nll_loss={nll}, ppl=1548.83, num_updates={updates}, lr=0")
    lines.append(f"2026-11-26 05:51:01 | INFO | train | epoch 001 | loss 11.77 | nll_loss "
                 f"{nll + 1} | ppl 2536.65 | num_updates {updates} | lr 0 | wall 2501")
    lines.append(f"2026-11-26 05:51:01 | INFO | fairseq_cli.train | done training in {seconds} seconds")
    return "\n".join(lines) + "\n"


def scores(ter: float, sentences: int = 1000) -> dict:
    sig = {"ter_cased_signature": "TC", "ter_signature": "TL", "bleu_signature": "B",
           "bleu_lc_signature": "BL"}
    base = {"sentences": sentences, "bleu": 72.37, "bleu_lc": 72.56, "ter_cased": 17.38,
            "ter": 17.22, **sig}
    row = {"sentences": sentences, "bleu": 10.0, "bleu_lc": 11.0, "ter_cased": ter + 1,
           "ter": ter, **sig}
    return {"do-nothing (mt)": base, "/x/decode/test20.txt": row}


def run_dir(path: Path, log: str, ter: float, sentences: int = 1000) -> Path:
    (path / "decode").mkdir(parents=True)
    (path / "recipe.log").write_text(log, encoding="utf-8")
    (path / "decode" / "test20.json").write_text(json.dumps(scores(ter, sentences)))
    return path


def test_summary_adds_pretraining_and_finetuning_but_not_mt_models(tmp_path):
    log = tmp_path / "recipe.log"
    log.write_text(MT_RUN + MT_RUN + ape_run(500, 3.2, 100.0) + ape_run(500, 2.5, 80.5))
    assert training_summary(log) == {"updates": 1000, "train_nll_bits": 2.5,
                                     "train_seconds": 180}


def test_summary_falls_back_to_the_epoch_line(tmp_path):
    log = tmp_path / "recipe.log"
    log.write_text(ape_run(2, 9.0, 3.0, inner=False))
    assert training_summary(log) == {"updates": 2, "train_nll_bits": 10.0, "train_seconds": 3}


def test_summary_of_a_log_without_statistics_is_an_error(tmp_path):
    log = tmp_path / "recipe.log"
    log.write_text("+ fairseq-train /w/bin --task ape\nTraceback ...\n")
    with pytest.raises(DataError, match="no training statistics"):
        training_summary(log)
    with pytest.raises(DataError, match="no training log"):
        training_summary(tmp_path / "missing.log")


def test_table_rows_and_signatures(tmp_path):
    a = load_row(run_dir(tmp_path / "a", ape_run(100, 10.65, 5.0), 310.51))
    b = load_row(run_dir(tmp_path / "b", ape_run(100, 11.92, 5.0), 333.86))
    table = format_table([("APE from BERT", a), ("APE, random initialisation", b)])
    lines = table.splitlines()
    assert lines[2].startswith("| do nothing") and "| 17.38 | 17.22 | 72.37 | 72.56 |" in lines[2]
    assert lines[3] == "| APE from BERT | 100 | 10.65 | 311.51 | 310.51 | 10.00 | 11.00 |"
    assert lines[4].startswith("| APE, random initialisation | 100 | 11.92 | 334.86 | 333.86 |")
    assert "TER cased `TC`" in table and "1000 sentences" in table


def test_rows_scored_on_other_sentences_are_refused(tmp_path):
    a = load_row(run_dir(tmp_path / "a", ape_run(10, 1.0, 1.0), 30.0))
    b = load_row(run_dir(tmp_path / "b", ape_run(10, 1.0, 1.0), 30.0, sentences=999))
    b["baseline"] = a["baseline"]
    with pytest.raises(DataError, match="999 sentences"):
        format_table([("a", a), ("b", b)])


def test_cli_table_names_the_missing_scores(tmp_path):
    run_dir(tmp_path / "a", ape_run(10, 1.0, 1.0), 30.0)
    (tmp_path / "b").mkdir()
    cmd = [sys.executable, "-m", "data_prep.ape", "table", "--row", f"A={tmp_path / 'a'}",
           "--row", f"B={tmp_path / 'b'}", "--output", str(tmp_path / "table.md")]
    result = subprocess.run(cmd, cwd=ROOT, env=ENV, capture_output=True, text=True)
    assert result.returncode == 1 and "b/decode/test20.json: no scores" in result.stderr
    assert not (tmp_path / "table.md").exists()
    cmd[7] = f"B={tmp_path / 'a'}"
    result = subprocess.run(cmd, cwd=ROOT, env=ENV, capture_output=True, text=True)
    assert result.returncode == 0, result.stderr
    assert (tmp_path / "table.md").read_text().count("| 10 | 1.00 |") == 2


def test_table_recipe_prints_every_row(tmp_path):
    cmd = ["bash", str(ROOT / "recipes" / "mlqe_pe_ape" / "table.sh"), "--dry-run", "true",
           "--device", "cpu", "--bert", str(tmp_path), "--work-dir", str(tmp_path / "w"),
           "--max-update", "9", "--max-tokens", "300"]
    result = subprocess.run(cmd, cwd=ROOT, env=ENV, capture_output=True, text=True)
    out = result.stdout
    assert result.returncode == 0, result.stderr
    assert out.count("--bert-weights random") == 1 and out.count("--bert-weights pretrained") == 3
    assert out.count("--max-update 9 ") == 2  # random and BERT rows
    assert "--max-update 4 " in out and "--max-update 5 " in out  # pre-training + fine-tuning
    assert out.count("--max-tokens 300") == 4 and "entmax_transformer_tiny" in out
    assert not (tmp_path / "w").exists()
    bad = subprocess.run(cmd[:2] + ["--rows", "bert nothing"], cwd=ROOT, env=ENV,
                         capture_output=True, text=True)
    assert bad.returncode == 1 and "--row 'nothing'" in bad.stderr
