"""Smoke run of benchmarks/bench_mappings.py: it runs, prints the table and writes JSON."""
from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

pytestmark = pytest.mark.slow  # a benchmark run

BENCH = Path(__file__).resolve().parents[1] / "benchmarks" / "bench_mappings.py"

ROW_KEYS = {"group", "mapping", "impl", "shape", "dtype", "ms_median", "peak_extra_mib", "max_abs_err",
            "baseline", "ratio_to_baseline", "speedup_vs_entmax_pkg"}
EXPECTED_ROWS = {("softmax", "torch"), ("sparsemax", "ours"), ("sparsemax", "entmax pkg"),
                 ("entmax15", "ours"), ("entmax15", "entmax pkg"), ("entmax_bisect", "ours"),
                 ("entmax_bisect", "entmax pkg"), ("cross_entropy", "torch"),
                 ("entmax15_loss", "ours"), ("entmax15_loss", "entmax pkg")}


def test_quick_benchmark_writes_json(tmp_path):
    out = tmp_path / "bench.json"
    env = {**os.environ, "OMP_NUM_THREADS": "2"}
    proc = subprocess.run([sys.executable, str(BENCH), "--quick", "--json", str(out)],
                          capture_output=True, text=True, timeout=300, env=env)
    assert proc.returncode == 0, proc.stderr[-3000:]
    data = json.loads(out.read_text())
    assert data["quick"] is True and data["threads"] == 2
    assert data["device"].startswith("cpu") and data["memory_method"]
    rows = data["rows"]
    assert {(r["mapping"], r["impl"]) for r in rows} == EXPECTED_ROWS
    for r in rows:
        assert ROW_KEYS <= set(r), r
        assert r["ms_median"] > 0 and r["peak_extra_mib"] >= 0 and r["ratio_to_baseline"] > 0
        assert r["max_abs_err"] < 1e-5, r  # float32 against float64
        if r["impl"] == "ours":
            assert r["speedup_vs_entmax_pkg"] > 0
        else:
            assert r["speedup_vs_entmax_pkg"] is None
    soft = next(r for r in rows if r["mapping"] == "softmax")
    assert soft["ratio_to_baseline"] == 1.0 and soft["shape"] == [4, 8, 16]
    targets = data["targets"]
    assert len(targets) == 9
    for t in targets:
        assert set(t) == {"target", "value", "op", "limit", "passed"}
        assert isinstance(t["passed"], bool)
        assert t["passed"] == (t["value"] <= t["limit"] if t["op"] == "<=" else t["value"] >= t["limit"])
    # the printed table names every row and a verdict per target
    assert proc.stdout.count("PASS") + proc.stdout.count("FAIL") == len(targets)
    assert "entmax_bisect" in proc.stdout and "peak extra MiB" in proc.stdout
