"""Smoke run of benchmarks/bench_attention.py on the CPU: sdpa and the materialised path
are timed, the kernels are skipped with a message, the JSON has every row."""
import json
import os
import sys
from pathlib import Path

import torch

if not torch.cuda.is_available():
    os.environ["TRITON_INTERPRET"] = "1"  # read when the kernels first load

BENCH = Path(__file__).resolve().parents[1] / "benchmarks"


def test_quick_cpu_run_writes_json(tmp_path, capsys):
    sys.path.insert(0, str(BENCH))
    try:
        import bench_attention
    finally:
        sys.path.remove(str(BENCH))
    out = tmp_path / "attention.json"
    assert bench_attention.main(["--device", "cpu", "--quick", "--json", str(out)]) == 0
    printed = capsys.readouterr()
    assert "ours_1.5: skipped" in printed.err
    data = json.loads(out.read_text())
    got = {(r["T"], r["method"]) for r in data["rows"]}
    assert got == {(t, m) for t in bench_attention.QUICK_LENGTHS for m in ("sdpa", "materialised")}
    for row in data["rows"]:
        assert row["ms_median"] > 0 and row["peak_extra_mib"] >= 0
        assert row["batch"] * row["T"] >= data["tokens"] or row["batch"] == 1
    sdpa = [r for r in data["rows"] if r["method"] == "sdpa"]
    assert all(r["ratio_to_sdpa"] == 1.0 for r in sdpa)
    assert data["targets"] == []  # the kernel's targets need the kernel
    assert "materialised" in printed.out


def test_targets_pass_and_fail_on_given_rows():
    sys.path.insert(0, str(BENCH))
    try:
        import bench_attention
    finally:
        sys.path.remove(str(BENCH))

    def row(t, method, ms=None, mib=None, sdpa_ms=None):
        r = {"T": t, "method": method}
        if ms is None:
            r["oom"] = True
        else:
            r.update(ms_median=ms, peak_extra_mib=mib, ratio_to_sdpa=ms / sdpa_ms)
        return r

    rows = [row(1024, "sdpa", 1.0, 100, 1.0), row(1024, "ours_1.5", 1.4, 90, 1.0),
            row(1024, "adasplash", 1.2, 90, 1.0), row(16384, "sdpa", 10.0, 1000, 10.0),
            row(16384, "materialised"), row(16384, "ours_1.5", 9.0, 1100, 10.0)]
    checks = {c["name"]: c["passed"] for c in bench_attention.targets(rows)}
    assert checks == {"ours_1.5 <= 1.5x sdpa at T <= 1024": True,
                      "ours_1.5 no slower than adasplash": False,
                      "ours_1.5 at T=16384: runs where materialised is OOM, memory <= 1.2x sdpa": True}
    rows[-1]["peak_extra_mib"] = 1300
    rows[1]["ratio_to_sdpa"] = 1.6
    checks = {c["name"]: c["passed"] for c in bench_attention.targets(rows)}
    assert not any(checks.values())


def test_tile_counts_against_the_plain_newton_baseline(tmp_path, capsys):
    """bench_sweeps on the CPU (interpreter): every row counts the three kernels;
    ours computes fewer products than the baseline and the streamed kernel at every α and spread."""
    sys.path.insert(0, str(BENCH))
    try:
        import bench_sweeps
    finally:
        sys.path.remove(str(BENCH))
    out = tmp_path / "sweeps.json"
    assert bench_sweeps.main(["--quick", "--json", str(out)]) == 0
    rows = json.loads(out.read_text())["rows"]
    assert {(r["alpha"], r["spread"]) for r in rows} == {
        (a, s) for a in bench_sweeps.ALPHAS for s in (1.0, 2.0)}
    for r in rows:
        assert 1.0 <= r["ours_qk"] < r["base_qk"]
        assert r["ours_fwd"] + r["ours_bwd"] < r["base_fwd"] + r["base_bwd"]
        # rows of 64 keys are held on chip: each product once in the forward, dq with c known
        assert r["resident_qk"] == r["ours_qk"] == 1.0
        assert r["ours_fwd"] + r["ours_bwd"] < r["streamed_fwd"] + r["streamed_bwd"]
    assert "median ours / base" in capsys.readouterr().out


def test_streamed_only_turns_the_resident_kernels_off_for_one_call(monkeypatch):
    """bench_attention's ours_alpha_streamed: the same attention through the streamed kernels
    (forward and backward), the resident ones back on afterwards."""
    sys.path.insert(0, str(BENCH))
    try:
        import bench_attention
    finally:
        sys.path.remove(str(BENCH))
    from sparse_seq2seq.kernels import attention as fa
    from sparse_seq2seq.kernels import launch

    device = "cuda" if torch.cuda.is_available() else "cpu"
    gen = torch.Generator().manual_seed(0)
    q, k, v = (torch.randn(1, 2, length, 32, generator=gen).to(device).requires_grad_()
               for length in (20, 40, 40))
    alpha = torch.tensor([1.3, 1.7], device=device, requires_grad=True)
    chosen = []
    launch_forward = fa.launch_forward
    monkeypatch.setattr(fa, "launch_forward", lambda *a, **kw: chosen.append(
        launch_forward(*a, **kw)) or chosen[-1])
    streamed = bench_attention._streamed_only(q, k, v, alpha, False)
    resident = fa.fused_attention(q, k, v, alpha)
    assert [c[-1]["resident"] is None for c in chosen] == [True, False]
    assert launch.RESIDENT_MAX_KEYS > 0
    torch.testing.assert_close(streamed, resident, atol=1e-5, rtol=1e-5)
    grads = [torch.autograd.grad(out.sum(), [q, alpha]) for out in (streamed, resident)]
    for got, want in zip(*grads):
        torch.testing.assert_close(got, want, atol=1e-4, rtol=1e-4)
