"""benchmarks/bench_train.py: ratios and targets, and a smoke run of the four settings (JSON and table)."""
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
    assert "train_ratio_fairseq" not in by["softmax"]  # no fairseq row, no ratio to it
    verdicts = {c["target"]: c["passed"] for c in bench_train.check_targets(rows)}
    assert verdicts == {"alpha-entmax training words/s / softmax": False,        # 2.0/2.6
                        "1.5-entmax training words/s / softmax": True,          # 2.0/2.2
                        "alpha-entmax beam-search sentences/s / softmax": False,  # 1.0/1.5
                        "1.5-entmax beam-search sentences/s / softmax": True}    # 1.0/1.25
    assert bench_train.check_targets(rows, "cuda") == []  # the CUDA targets need the fairseq row


def test_cuda_targets_compare_to_fairseq_softmax():
    rows = bench_train.summarise({"fairseq": {"train": [1.0, 1.0, 1.2], "beam": [1.0, 1.0, 1.0]},
                                  "softmax": {"train": [1.1, 1.0, 1.0], "beam": [1.0, 0.9, 1.0]},
                                  "entmax15": {"train": [1.0, 1.05, 1.0], "beam": [1.2, 1.1, 1.0]},
                                  "alpha_entmax": {"train": [1.1, 1.1, 1.0], "beam": [1.0, 1.1, 1.2]}},
                                 train_words=100, beam_sentences=10)
    by = {r["normalizer"]: r for r in rows}
    assert by["fairseq"]["train_ratio_fairseq"] == 1
    assert by["alpha_entmax"]["train_ratio_fairseq"] == pytest.approx(1.0 / 1.1)
    assert by["alpha_entmax"]["train_ratio"] == pytest.approx(1.0 / 1.1)  # against ours: 1.0 / 1.1
    assert by["entmax15"]["beam_ratio_fairseq"] == pytest.approx(1.0 / 1.1)
    assert by["entmax15"]["train_ratio_fairseq_paired"] == pytest.approx(1.0)  # 1/1, 1/1.05, 1.2/1
    checks = bench_train.check_targets(rows, "cuda")
    verdicts = {c["target"]: (c["limit"], c["passed"]) for c in checks}
    assert verdicts == {"alpha-entmax training words/s / fairseq softmax": (0.95, False),  # 0.909
                        "1.5-entmax training words/s / fairseq softmax": (0.95, True),     # 1.0
                        "alpha-entmax beam-search sentences/s / fairseq softmax": (0.9, True),  # 0.909
                        "1.5-entmax beam-search sentences/s / fairseq softmax": (0.9, True)}   # 0.909


def test_fairseq_baseline_takes_the_sizes_of_the_arch():
    opts = bench_train.parse_args([])
    assert opts.arch == "entmax_transformer_tiny" and opts.max_tokens == 2000 and opts.beam_sentences == 64
    args = bench_train.train_args(Path("bin"), "fairseq", opts)
    assert args[args.index("--arch") + 1] == "transformer"
    assert args[args.index("--encoder-embed-dim") + 1] == "128"
    assert not any(a.endswith("-normalizer") for a in args)
    ours = bench_train.train_args(Path("bin"), "entmax15", opts)
    assert ours[ours.index("--arch") + 1] == "entmax_transformer_tiny"
    assert ours[ours.index("--encoder-attn-normalizer") + 1] == "entmax15"
    assert bench_train.fairseq_arch("entmax_transformer_iwslt_de_en") == ["--arch", "transformer_iwslt_de_en"]
    with pytest.raises(SystemExit):
        bench_train.parse_args(["--arch", "transformer"])
    with pytest.raises(SystemExit):
        bench_train.parse_args(["--fp16"])  # fp16 only on cuda


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
    assert [r["normalizer"] for r in rows] == ["fairseq", "softmax", "entmax15", "alpha_entmax"]
    by = {r["normalizer"]: r for r in rows}
    # the same sizes: fairseq's transformer and ours with softmax have the same parameters;
    # learned α adds one per head per attention (2 encoder, 2+2 decoder layers, 4 heads)
    assert by["fairseq"]["parameters"] == by["softmax"]["parameters"] == by["entmax15"]["parameters"]
    assert by["alpha_entmax"]["parameters"] == by["softmax"]["parameters"] + 6 * 4
    for r in rows:
        assert len(r["train_s_all"]) == len(r["beam_s_all"]) == data["repeats"]
        assert r["train_words_per_s"] == pytest.approx(data["train_words"] / r["train_s_median"])
        assert r["beam_sentences_per_s"] == pytest.approx(data["beam_sentences"] / r["beam_s_median"])
        assert r["train_ratio"] > 0 and r["beam_ratio"] > 0 and r["train_ratio_fairseq"] > 0
    assert by["softmax"]["train_ratio"] == by["softmax"]["beam_ratio"] == 1.0
    assert by["fairseq"]["train_ratio_fairseq"] == by["fairseq"]["beam_ratio_fairseq"] == 1.0
    targets = data["targets"]
    assert [(t["limit"]) for t in targets] == [0.8, 0.9, 0.8, 0.8]
    for t in targets:
        assert t["passed"] == (t["value"] >= t["limit"])
    assert proc.stdout.count("PASS") + proc.stdout.count("FAIL") == len(targets)
    assert "alpha-entmax" in proc.stdout and "train words/s" in proc.stdout
