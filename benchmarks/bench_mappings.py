"""Speed, memory and accuracy of the sparse mappings against softmax and the entmax package.

Every row is forward + backward, timed in the same run as its baselines:

    python benchmarks/bench_mappings.py                 # CPU, 2 torch threads
    python benchmarks/bench_mappings.py --json out.json
    python benchmarks/bench_mappings.py --device cuda   # on a GPU when one is present
    python benchmarks/bench_mappings.py --quick         # tiny shapes, a smoke run

Columns: median milliseconds of forward+backward (after warm-up), ratio to the baseline
(torch.softmax for mappings, F.cross_entropy for losses), speed-up over the entmax
package (its time / ours), peak extra memory, and the max abs error of the float32 output
against a float64 reference.
"""
from __future__ import annotations

import argparse
import json
import platform
import statistics
import sys
import time

import torch
import torch.nn.functional as F

import entmax as pkg
import sparse_seq2seq as ss

MEMORY_METHODS = {
    "cpu": "torch.profiler(profile_memory=True): running sum of the CPU allocator's "
           "allocation/free events during one forward+backward; peak minus the start",
    "cuda": "torch.cuda.max_memory_allocated() minus memory_allocated() before one "
            "forward+backward (peak stats reset first)",
}


def sync(device: torch.device) -> None:
    if device.type == "cuda":
        torch.cuda.synchronize(device)


def time_ms(fn, device, warmup: int, repeats: int, budget_s: float) -> float:
    """Median wall time of ``fn`` in ms; fewer repeats (>= 3) when one run is slow."""
    for _ in range(warmup):
        fn()
    sync(device)
    times = []
    start = time.perf_counter()
    while len(times) < repeats:
        t0 = time.perf_counter()
        fn()
        sync(device)
        times.append(1e3 * (time.perf_counter() - t0))
        if len(times) >= 3 and time.perf_counter() - start > budget_s:
            break
    return statistics.median(times)


def peak_extra_mib(fn, device) -> float:
    """Peak memory allocated by one call of ``fn`` beyond what existed before it."""
    sync(device)
    if device.type == "cuda":
        torch.cuda.empty_cache()
        base = torch.cuda.memory_allocated(device)
        torch.cuda.reset_peak_memory_stats(device)
        fn()
        sync(device)
        return (torch.cuda.max_memory_allocated(device) - base) / 2**20
    from torch.profiler import ProfilerActivity, profile

    with profile(activities=[ProfilerActivity.CPU], profile_memory=True) as prof:
        fn()
    events = [e for e in prof.profiler.kineto_results.events()
              if e.name() == "[memory]" and e.device_type() == torch.autograd.DeviceType.CPU]
    live = peak = 0
    for e in sorted(events, key=lambda e: e.start_ns()):
        live += e.nbytes()
        peak = max(peak, live)
    return peak / 2**20


def fwd_bwd(mapping, inputs, dY):
    """A closure that runs mapping(*inputs) and backpropagates dY into the tensors that need it."""
    wrt = [t for t in inputs if isinstance(t, torch.Tensor) and t.requires_grad]

    def run():
        out = mapping(*inputs)
        torch.autograd.grad(out, wrt, dY)

    return run


def attention_rows(shape, device, gen):
    X = torch.randn(shape, generator=gen).mul_(2).to(device).requires_grad_()
    dY = torch.randn(shape, generator=gen).to(device)
    a_shape = shape[:-1] + (1,)
    alpha = (1 + torch.sigmoid(torch.randn(a_shape, generator=gen))).to(device).requires_grad_()
    Xd, ad = X.detach().double(), alpha.detach().double()
    exact = {
        "softmax": torch.softmax(Xd, -1),
        "sparsemax": pkg.sparsemax(Xd, -1),
        "entmax15": pkg.entmax15(Xd, -1),
        "entmax_bisect": pkg.entmax_bisect(Xd, ad, -1, n_iter=100),
    }
    rows = [
        ("softmax", "torch", lambda x: torch.softmax(x, -1), (X,)),
        ("sparsemax", "ours", lambda x: ss.sparsemax(x, -1), (X,)),
        ("sparsemax", "entmax pkg", lambda x: pkg.sparsemax(x, -1), (X,)),
        ("entmax15", "ours", lambda x: ss.entmax15(x, -1), (X,)),
        ("entmax15", "entmax pkg", lambda x: pkg.entmax15(x, -1), (X,)),
        ("entmax_bisect", "ours", lambda x, a: ss.entmax_bisect(x, a, -1), (X, alpha)),
        ("entmax_bisect", "entmax pkg", lambda x, a: pkg.entmax_bisect(x, a, -1), (X, alpha)),
    ]
    for name, impl, fn, inputs in rows:
        with torch.no_grad():
            err = (fn(*[t.detach() for t in inputs]).double() - exact[name]).abs().max().item()
        yield name, impl, fn, inputs, dY, err


def loss_rows(shape, device, gen):
    X = torch.randn(shape, generator=gen).mul_(2).to(device).requires_grad_()
    target = torch.randint(0, shape[1], (shape[0],), generator=gen).to(device)
    Xd = X.detach().double()
    one = torch.ones((), device=device)
    exact = {
        "cross_entropy": F.cross_entropy(Xd, target),
        "entmax15_loss": pkg.entmax15_loss(Xd, target).mean(),
    }
    rows = [
        ("cross_entropy", "torch", lambda x: F.cross_entropy(x, target)),
        ("entmax15_loss", "ours", lambda x: ss.entmax15_loss(x, target).mean()),
        ("entmax15_loss", "entmax pkg", lambda x: pkg.entmax15_loss(x, target).mean()),
    ]
    for name, impl, fn in rows:
        with torch.no_grad():
            err = (fn(X.detach()).double() - exact[name]).abs().item()
        yield name, impl, fn, (X,), one, err


def measure(args, device):
    gen = torch.Generator().manual_seed(0)
    att, out = ((4, 8, 16), (64, 100)) if args.quick else ((256, 64, 64), (4096, 8000))
    warmup, repeats = (1, 3) if args.quick else (args.warmup, args.repeats)
    budget = 0.5 if args.quick else args.budget
    results = []
    for group, shape, source in (("attention", att, attention_rows), ("output", out, loss_rows)):
        for name, impl, fn, inputs, dY, err in source(shape, device, gen):
            run = fwd_bwd(fn, inputs, dY)
            ms = time_ms(run, device, warmup, repeats, budget)
            mem = peak_extra_mib(run, device)
            results.append({"group": group, "mapping": name, "impl": impl, "shape": list(shape),
                            "dtype": "float32", "ms_median": ms, "peak_extra_mib": mem,
                            "max_abs_err": err})
            print(f"  measured {name:14s} {impl:10s} {ms:10.3f} ms", file=sys.stderr, flush=True)
    for group in ("attention", "output"):
        rows = [r for r in results if r["group"] == group]
        base = next(r for r in rows if r["impl"] == "torch")
        for r in rows:
            r["baseline"] = base["mapping"]
            r["ratio_to_baseline"] = r["ms_median"] / base["ms_median"]
            theirs = next((o for o in rows if o["mapping"] == r["mapping"] and o["impl"] == "entmax pkg"),
                          None)
            r["speedup_vs_entmax_pkg"] = (theirs["ms_median"] / r["ms_median"]
                                          if theirs is not None and r["impl"] == "ours" else None)
    return results


def targets(results):
    def row(mapping, impl="ours"):
        return next(r for r in results if r["mapping"] == mapping and r["impl"] == impl)

    soft = row("softmax", "torch")
    checks = []

    def check(name, value, op, limit):
        ok = value <= limit if op == "<=" else value >= limit
        checks.append({"target": name, "value": value, "op": op, "limit": limit, "passed": bool(ok)})

    check("entmax_bisect (per-row alpha, with d alpha) time / softmax",
          row("entmax_bisect")["ratio_to_baseline"], "<=", 6.0)
    check("entmax_bisect speed-up over entmax pkg", row("entmax_bisect")["speedup_vs_entmax_pkg"], ">=", 10.0)
    check("entmax_bisect max abs err vs float64", row("entmax_bisect")["max_abs_err"], "<=", 1e-6)
    for name in ("sparsemax", "entmax15"):
        check(f"{name} time / softmax", row(name)["ratio_to_baseline"], "<=", 4.0)
        check(f"{name} speed-up over entmax pkg", row(name)["speedup_vs_entmax_pkg"], ">=", 5.0)
    check("entmax15_loss time / cross_entropy", row("entmax15_loss")["ratio_to_baseline"], "<=", 4.0)
    check("entmax_bisect peak extra memory / softmax's",
          row("entmax_bisect")["peak_extra_mib"] / max(soft["peak_extra_mib"], 1e-9), "<=", 2.0)
    return checks


def fmt(value, spec):
    return "-" if value is None else format(value, spec)


def print_table(results, checks, info):
    print(f"# device: {info['device']} | torch {info['torch']} | entmax {info['entmax']} | "
          f"threads {info['threads']}{' | QUICK (tiny shapes)' if info['quick'] else ''}")
    print(f"# timing: {info['timing']}")
    print(f"# memory: {info['memory_method']}")
    head = ("mapping", "impl", "shape", "ms median", "x baseline", "speed-up vs pkg",
            "peak extra MiB", "max abs err")
    lines = [head]
    for r in results:
        lines.append((r["mapping"], r["impl"], "x".join(map(str, r["shape"])), fmt(r["ms_median"], ".3f"),
                      fmt(r["ratio_to_baseline"], ".2f") + f" ({r['baseline']})",
                      fmt(r["speedup_vs_entmax_pkg"], ".1f"), fmt(r["peak_extra_mib"], ".3g"),
                      fmt(r["max_abs_err"], ".1e")))
    widths = [max(len(str(line[i])) for line in lines) for i in range(len(head))]
    for i, line in enumerate(lines):
        print("| " + " | ".join(str(c).ljust(w) for c, w in zip(line, widths)) + " |")
        if i == 0:
            print("|" + "|".join("-" * (w + 2) for w in widths) + "|")
    print()
    if info["quick"]:
        print("# quick run: tiny shapes, so the verdicts below do not speak for the targets")
    for c in checks:
        print(f"{'PASS' if c['passed'] else 'FAIL'}  {c['target']}: {c['value']:.3g} {c['op']} {c['limit']:g}")


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--json", metavar="FILE", help="write the results and targets as JSON")
    parser.add_argument("--device", default="cpu", choices=["cpu", "cuda"])
    parser.add_argument("--threads", type=int, default=2, help="torch CPU threads (default 2)")
    parser.add_argument("--repeats", type=int, default=30, help="timed runs per row (at most)")
    parser.add_argument("--warmup", type=int, default=3)
    parser.add_argument("--budget", type=float, default=10.0,
                        help="seconds per row after which timing stops (with >= 3 runs)")
    parser.add_argument("--quick", action="store_true", help="tiny shapes and few repeats (smoke run)")
    parser.add_argument("--strict", action="store_true", help="exit 1 when a target fails")
    args = parser.parse_args(argv)

    torch.set_num_threads(args.threads)
    if args.device == "cuda" and not torch.cuda.is_available():
        print("# --device cuda: no GPU present, running on the CPU", file=sys.stderr)
        args.device = "cpu"
    device = torch.device(args.device)
    name = torch.cuda.get_device_name(device) if device.type == "cuda" else (platform.processor() or "cpu")
    info = {"device": f"{device.type}: {name}", "torch": torch.__version__, "entmax": pkg.__version__,
            "threads": torch.get_num_threads(), "quick": args.quick,
            "timing": "median of repeated forward+backward runs after warm-up, wall clock"
                      + (" with cuda synchronize" if device.type == "cuda" else ""),
            "memory_method": MEMORY_METHODS[device.type]}
    results = measure(args, device)
    checks = targets(results)
    print_table(results, checks, info)
    if args.json:
        with open(args.json, "w", encoding="utf-8") as fh:
            json.dump({**info, "rows": results, "targets": checks}, fh, indent=2)
    return 1 if args.strict and not all(c["passed"] for c in checks) else 0


if __name__ == "__main__":
    sys.exit(main())
