"""Smoke run of benchmarks/bench_train.py: three settings timed in one run, JSON and table."""
from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
BENCH = ROOT / "benchmarks" / "bench_train.py"
MULTI30K = Path(os.environ.get("DATA_MIRROR", ROOT.parent / "shared" / "data")) / "multi30k"

sys.path.insert(0, str(BENCH.parent))
import bench_train  # noqa: E402


def test_targets_compare_ratios_to_softmax():
    rows = bench_train.summarise({"softmax": {"train": [2.0, 2.0, 2.0], "beam": [1.0, 1.0, 1.0]},
                                  "entmax15": {"train": [2.1, 2.3, 2.2], "beam": [1.0, 1.5, 1.25]},
                                  "alpha_entmax": {"train": [3.0, 2.0, 2.6], "beam": [2.0, 1.0, 1.5]}},
                                 train_words=1000, beam_sentences=10)
    by = {r["normalizer"]: r for r in rows}
    assert by["softmax"]["train_words_per_s"] == 500 and by["softmax"]["train_ratio"] == 1
    assert by["entmax15"]["train_ratio"] == pytest.approx(2.0 / 2.2)
    assert by["alpha_entmax"]["beam_ratio"] == pytest.approx(1.0 / 1.5)
    assert by["entmax15"]["beam_ratio_paired"] == pytest.approx(1 / 1.25)
    verdicts = {c["target"]: c["passed"] for c in bench_train.check_targets(rows)}
    assert verdicts == {"alpha-entmax training words/s / softmax": False,        # 2.0/2.6
                        "1.5-entmax training words/s / softmax": True,          # 2.0/2.2
                        "alpha-entmax beam-search sentences/s / softmax": False,  # 1.0/1.5
                        "1.5-entmax beam-search sentences/s / softmax": True}    # 1.0/1.25


@pytest.mark.slow
def test_quick_benchmark_writes_json(tmp_path):
    if not (MULTI30K / "train.de.gz").is_file():
        pytest.skip(f"Multi30k not found in {MULTI30K}")
    out = tmp_path / "bench.json"
    env = {**os.environ, "OMP_NUM_THREADS": "2", "DATA_MIRROR": str(MULTI30K.parent)}
    proc = subprocess.run([sys.executable, str(BENCH), "--quick", "--json", str(out)],
                          capture_output=True, text=True, timeout=300, env=env)
    assert proc.returncode == 0, proc.stderr[-3000:]
    data = json.loads(out.read_text())
    assert data["quick"] is True and data["threads"] == 2
    assert data["arch"] == "entmax_transformer_tiny"
    assert data["criterion"] == "label_smoothed_cross_entropy"
    assert data["beam"] == 5 and data["beam_sentences"] == 6 and data["beam_len"] == 5 and data["train_words"] > 0
    rows = data["rows"]
    assert [r["normalizer"] for r in rows] == ["softmax", "entmax15", "alpha_entmax"]
    for r in rows:
        assert len(r["train_s_all"]) == len(r["beam_s_all"]) == data["repeats"]
        assert r["train_words_per_s"] == pytest.approx(data["train_words"] / r["train_s_median"])
        assert r["beam_sentences_per_s"] == pytest.approx(data["beam_sentences"] / r["beam_s_median"])
        assert r["train_ratio"] > 0 and r["beam_ratio"] > 0
    assert rows[0]["train_ratio"] == rows[0]["beam_ratio"] == 1.0
    targets = data["targets"]
    assert [(t["limit"]) for t in targets] == [0.8, 0.9, 0.8, 0.8]
    for t in targets:
        assert t["passed"] == (t["value"] >= t["limit"])
    assert proc.stdout.count("PASS") + proc.stdout.count("FAIL") == len(targets)
    assert "alpha-entmax" in proc.stdout and "train words/s" in proc.stdout
