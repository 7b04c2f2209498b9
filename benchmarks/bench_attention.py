"""Speed and memory of sparse attention against softmax attention, forward + backward, in one run.

    python benchmarks/bench_attention.py --device cuda --json out.json
    python benchmarks/bench_attention.py --device cpu --quick   # a smoke run (no kernels)

Rows, at each length T (q, k, v of shape (batch, heads, T, head_dim), batch × T fixed by
``--tokens`` so that every length fills the GPU alike):

* ``sdpa``: torch's scaled_dot_product_attention, softmax (the flash kernel on CUDA);
* ``materialised``: scores → the library's α-entmax (α learned per head) → p v, T² memory;
* ``adasplash``: AdaSplash's Triton kernel at α = 1.5 (when the package imports; CUDA only);
* ``ours_1.5``: :func:`sparse_seq2seq.kernels.sparse_attention` at α = 1.5;
* ``ours_alpha``: the same with a learned α per head spread over (1, 2), ∂α included;
* ``ours_alpha_streamed``: ``ours_alpha`` with the row-resident kernels turned off, at the
  lengths where they would run (T ≤ RESIDENT_MAX_KEYS): what holding a row on chip gains.

Columns: median ms of forward+backward, ratio to sdpa at the same T, peak memory beyond the
inputs (MiB), or OOM. The targets (PASS/FAIL) are those of the fused kernel: ≤ 1.5× sdpa at
T ≤ 1024; no slower than adasplash where it runs; at the longest T it runs where the
materialised path is out of memory, with peak memory ≤ 1.2× sdpa's.
"""
from __future__ import annotations

import argparse
import json
import platform
import sys
from pathlib import Path
from typing import Callable, Dict, List, Optional

import torch
import torch.nn.functional as F

sys.path.insert(0, str(Path(__file__).resolve().parent))
from bench_mappings import peak_extra_mib, sync, time_ms  # noqa: E402

from sparse_seq2seq.kernels import attention as fa  # noqa: E402
from sparse_seq2seq.kernels import launch  # noqa: E402

LENGTHS = (64, 256, 1024, 4096, 16384)
QUICK_LENGTHS = (16, 64)
METHODS = ("sdpa", "materialised", "adasplash", "ours_1.5", "ours_alpha", "ours_alpha_streamed")


def _adasplash() -> Optional[Callable]:
    try:
        from adasplash import adasplash
    except Exception:  # not installed, or no GPU toolchain
        return None
    return adasplash


def _sdpa(q, k, v, causal):
    if q.is_cuda:
        from torch.nn.attention import SDPBackend, sdpa_kernel

        with sdpa_kernel([SDPBackend.FLASH_ATTENTION, SDPBackend.EFFICIENT_ATTENTION]):
            return F.scaled_dot_product_attention(q, k, v, is_causal=causal)
    return F.scaled_dot_product_attention(q, k, v, is_causal=causal)


def _streamed_only(q, k, v, alpha, causal):
    """The learned-α kernel with the resident kernels off (the backward follows the forward's
    choice, so switching them off for the forward call is enough)."""
    saved = launch.RESIDENT_MAX_KEYS
    launch.RESIDENT_MAX_KEYS = 0
    try:
        return fa.fused_attention(q, k, v, alpha, causal=causal, check_alpha=False)
    finally:
        launch.RESIDENT_MAX_KEYS = saved


def methods(device: torch.device, heads: int) -> Dict[str, Optional[Callable]]:
    """Each method as fn(q, k, v, alpha_heads, causal) -> out; None where it cannot run here."""
    kernel = device.type == "cuda" and fa.kernel_unavailable_reason(
        *(torch.empty(1, 1, 1, 64, device=device, dtype=torch.float16),) * 3) is None
    splash = _adasplash() if device.type == "cuda" else None
    return {
        "sdpa": lambda q, k, v, a, c: _sdpa(q, k, v, c),
        "materialised": lambda q, k, v, a, c: fa.materialised_attention(q, k, v, a, causal=c),
        "adasplash": None if splash is None else (lambda q, k, v, a, c: splash(q, k, v, alpha=1.5,
                                                                              is_causal=c)),
        "ours_1.5": (lambda q, k, v, a, c: fa.fused_attention(q, k, v, 1.5, causal=c)) if kernel else None,
        "ours_alpha": (lambda q, k, v, a, c: fa.fused_attention(q, k, v, a, causal=c,
                                                                check_alpha=False)) if kernel else None,
        "ours_alpha_streamed": _streamed_only if kernel else None,
    }


def _is_oom(err: BaseException) -> bool:
    return isinstance(err, torch.cuda.OutOfMemoryError) or "out of memory" in str(err).lower()


def measure(args, device: torch.device) -> List[dict]:
    dtype = {"float16": torch.float16, "bfloat16": torch.bfloat16, "float32": torch.float32}[args.dtype]
    table = methods(device, args.heads)
    for name, fn in table.items():
        if fn is None:
            why = ("needs CUDA and triton" if name.startswith("ours")
                   else "needs CUDA and the adasplash package")
            print(f"# {name}: skipped ({why})", file=sys.stderr)
    rows = []
    gen = torch.Generator().manual_seed(0)
    for length in (QUICK_LENGTHS if args.quick else args.lengths):
        batch = max(1, args.tokens // length)
        shape = (batch, args.heads, length, args.dim)
        make = lambda: torch.randn(shape, generator=gen).to(device=device, dtype=dtype).requires_grad_()
        q, k, v = make(), make(), make()
        grad = torch.randn(shape, generator=gen).to(device=device, dtype=dtype)
        alpha = (1.1 + 0.8 * torch.rand(args.heads, generator=gen)).to(device).requires_grad_()
        for name in METHODS:
            fn = table[name]
            if fn is None or (name == "ours_alpha_streamed" and length > launch.RESIDENT_MAX_KEYS):
                continue
            wrt = [q, k, v] + ([alpha] if name in ("materialised", "ours_alpha",
                                                   "ours_alpha_streamed") else [])

            def run():
                out = fn(q, k, v, alpha, args.causal)
                torch.autograd.grad(out, wrt, grad)

            row = {"T": length, "batch": batch, "heads": args.heads, "dim": args.dim,
                   "method": name, "dtype": args.dtype}
            try:
                row["ms_median"] = time_ms(run, device, args.warmup, args.repeats, args.budget)
                row["peak_extra_mib"] = peak_extra_mib(run, device)
            except (RuntimeError, torch.cuda.OutOfMemoryError) as err:
                if not _is_oom(err):
                    raise
                row["oom"] = True
                if device.type == "cuda":
                    torch.cuda.empty_cache()
            rows.append(row)
        del q, k, v, grad
    base = {r["T"]: r for r in rows if r["method"] == "sdpa" and "ms_median" in r}
    for r in rows:
        if "ms_median" in r and r["T"] in base:
            r["ratio_to_sdpa"] = r["ms_median"] / base[r["T"]]["ms_median"]
    return rows


def targets(rows: List[dict]) -> List[dict]:
    """The fused kernel's targets, each {name, passed, detail}; none when it did not run."""
    at = {(r["T"], r["method"]): r for r in rows}
    ours = [m for m in ("ours_1.5", "ours_alpha") if any(r["method"] == m for r in rows)]
    checks = []
    for m in ours:
        short = [r for r in rows if r["method"] == m and r["T"] <= 1024]
        ok = bool(short) and all(r.get("ratio_to_sdpa", float("inf")) <= 1.5 for r in short)
        detail = ", ".join(f"T={r['T']}: {r.get('ratio_to_sdpa', float('nan')):.2f}x" for r in short)
        checks.append({"name": f"{m} <= 1.5x sdpa at T <= 1024", "passed": ok, "detail": detail})
    splash = [r for r in rows if r["method"] == "adasplash" and "ms_median" in r]
    if splash and "ours_1.5" in ours:
        pairs = [(r, at.get((r["T"], "ours_1.5"), {})) for r in splash]
        ok = all(o.get("ms_median", float("inf")) <= r["ms_median"] for r, o in pairs)
        detail = ", ".join(f"T={r['T']}: {o.get('ms_median', float('nan')):.2f} vs "
                           f"{r['ms_median']:.2f} ms" for r, o in pairs)
        checks.append({"name": "ours_1.5 no slower than adasplash", "passed": ok, "detail": detail})
    if ours:
        longest = max(r["T"] for r in rows)
        sdpa, mat = at.get((longest, "sdpa"), {}), at.get((longest, "materialised"), {})
        for m in ours:
            mine = at.get((longest, m), {})
            ok = ("ms_median" in mine and mat.get("oom", False) and "peak_extra_mib" in sdpa
                  and mine["peak_extra_mib"] <= 1.2 * sdpa["peak_extra_mib"])
            detail = (f"materialised {'OOM' if mat.get('oom') else 'ran'}; peak "
                      f"{mine.get('peak_extra_mib', float('nan')):.0f} vs sdpa "
                      f"{sdpa.get('peak_extra_mib', float('nan')):.0f} MiB")
            checks.append({"name": f"{m} at T={longest}: runs where materialised is OOM, "
                                   f"memory <= 1.2x sdpa", "passed": bool(ok), "detail": detail})
    return checks


def print_table(rows: List[dict], checks: List[dict], info: dict) -> None:
    print(f"# {info['device']} | torch {info['torch']} | triton {info['triton']} | "
          f"adasplash {info['adasplash']} | {info['dtype']} | causal {info['causal']}")
    print(f"{'T':>6} {'batch':>6} {'method':<19} {'ms':>10} {'x sdpa':>8} {'peak MiB':>10}")
    for r in rows:
        if r.get("oom"):
            print(f"{r['T']:>6} {r['batch']:>6} {r['method']:<19} {'OOM':>10}")
            continue
        ratio = f"{r['ratio_to_sdpa']:.2f}" if "ratio_to_sdpa" in r else "-"
        print(f"{r['T']:>6} {r['batch']:>6} {r['method']:<19} {r['ms_median']:>10.3f} {ratio:>8} "
              f"{r['peak_extra_mib']:>10.1f}")
    for c in checks:
        print(f"{'PASS' if c['passed'] else 'FAIL'}: {c['name']} ({c['detail']})")


def _version(module: str) -> str:
    try:
        from importlib.metadata import version
        return version(module)
    except Exception:
        return "absent"


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--device", default="cpu", choices=["cpu", "cuda"])
    parser.add_argument("--json", metavar="FILE", help="write the rows and targets as JSON")
    parser.add_argument("--quick", action="store_true", help="tiny lengths and few repeats (smoke run)")
    parser.add_argument("--lengths", type=int, nargs="+", default=list(LENGTHS))
    parser.add_argument("--tokens", type=int, default=None,
                        help="batch × T at every length (default 65536 on CUDA, 64 on CPU)")
    parser.add_argument("--heads", type=int, default=16)
    parser.add_argument("--dim", type=int, default=64, help="head dim (32, 64 or 128 for the kernel)")
    parser.add_argument("--dtype", default=None, choices=["float16", "bfloat16", "float32"],
                        help="default float16 on CUDA, float32 on CPU")
    parser.add_argument("--causal", action="store_true")
    parser.add_argument("--repeats", type=int, default=10)
    parser.add_argument("--warmup", type=int, default=2)
    parser.add_argument("--budget", type=float, default=3.0, help="seconds of timing per row")
    parser.add_argument("--strict", action="store_true", help="exit 1 when a target fails")
    args = parser.parse_args(argv)
    if args.device == "cuda" and not torch.cuda.is_available():
        parser.error("--device cuda: no GPU present")
    device = torch.device(args.device)
    cuda = device.type == "cuda"
    args.dtype = args.dtype or ("float16" if cuda else "float32")
    args.tokens = args.tokens or (65536 if cuda else 64)
    if args.quick:
        args.heads, args.repeats, args.warmup, args.budget = min(args.heads, 2), 3, 1, 1.0
    name = torch.cuda.get_device_name(device) if cuda else (platform.processor() or "cpu")
    info = {"device": f"{device.type}: {name}", "torch": torch.__version__,
            "triton": _version("triton"), "adasplash": _version("adasplash"), "dtype": args.dtype,
            "causal": args.causal, "heads": args.heads, "dim": args.dim, "tokens": args.tokens,
            "quick": args.quick,
            "timing": "median wall ms of forward+backward after warm-up"
                      + (", cuda synchronize" if cuda else "")}
    rows = measure(args, device)
    checks = targets(rows)
    print_table(rows, checks, info)
    if args.json:
        Path(args.json).write_text(json.dumps({**info, "rows": rows, "targets": checks}, indent=2))
    return 1 if args.strict and not all(c["passed"] for c in checks) else 0


if __name__ == "__main__":
    sys.exit(main())
