"""The fused attention's work, counted in matrix-product tiles, against its plain Newton
baseline in one run.

    python benchmarks/bench_sweeps.py                  # CPU, through Triton's interpreter
    python benchmarks/bench_sweeps.py --device cuda --json sweeps.json

A GPU kernel's time follows the (BM × BN × D) products it computes. Counts do not depend on
the machine, so this runs anywhere. For each length T, score spread and α, per
(query block, key block) pair:

* ``qk``: score tiles q kᵀ of the forward (each also maps its scores through entmax);
  ``base`` is Newton from τ = 0 with the output in a sweep of its own (``start_iter=0,
  predict_tol=0``); ``ours`` starts from the root over the column maxima and forms the
  output in the last Newton sweep;
* ``fwd`` / ``bwd``: all products of the forward (q kᵀ and p v) and of the backward, per
  visited block: the baseline's 9 (a sweep for the row sums c and ∂α, a sweep for dq, one
  for dk and dv) over the blocks its forward left live; ours 8 (row sums and dq in one
  sweep: 4, dk and dv: 4) over the blocks that hold support;
* ``x flash``: ours' products over softmax flash attention's 7 per pair (2 forward, 5
  backward).
"""
from __future__ import annotations

import argparse
import itertools
import json
import os
import sys
from pathlib import Path
from typing import List

import torch

LENGTHS = {"cpu": (64, 256), "cuda": (256, 1024, 4096)}  # the interpreter is slow
QUICK_LENGTHS = (64,)
ALPHAS = ("1.1", "1.5", "2.0", "learned")


def _alpha(name: str, heads: int, gen: torch.Generator):
    """(α per head for the kernel, the kernel's kind: a closed form for 1.5 and 2)."""
    if name == "learned":
        return 1.1 + 0.8 * torch.rand(heads, generator=gen), "general"
    kind = {"1.5": "entmax15", "2.0": "sparsemax"}.get(name, "general")
    return torch.full((heads,), float(name)), kind


def count(args, device: torch.device) -> List[dict]:
    from sparse_seq2seq.kernels import attention as fa

    mod = fa._kernels()
    kinds = {"general": mod.KIND_GENERAL, "entmax15": mod.KIND_ENTMAX15,
             "sparsemax": mod.KIND_SPARSEMAX}
    gen = torch.Generator().manual_seed(0)
    rows = []
    lengths = QUICK_LENGTHS if args.quick else (args.lengths or LENGTHS[device.type])
    for length, spread, name in itertools.product(lengths, args.spreads, ALPHAS):
        shape = (args.batch, args.heads, length, args.dim)
        q, k, v = ((torch.randn(shape, generator=gen) * spread).to(device) for _ in range(3))
        alpha, kind = _alpha(name, args.heads, gen)
        alpha = alpha.to(device)
        scale = args.dim ** -0.5
        got = {}
        for label, extra in (("base", dict(start_iter=0, predict_tol=0.0)), ("ours", {})):
            _, r, blocks, _, cfg = fa.launch_forward(q, k, v, alpha, None, args.causal, scale,
                                                     kinds[kind], **extra)
            pairs = blocks.numel()
            qk, pv = (float(t) / pairs for t in r["tiles"].double().sum(0))
            visited = float((r["live"] if label == "base" else blocks).double().sum()) / pairs
            bwd = visited * (9 if label == "base" else 8)
            got[label] = dict(qk=qk, fwd=qk + pv, bwd=bwd)
        rows.append({"T": length, "spread": spread, "alpha": name, "block": cfg["BN"],
                     **{f"{side}_{key}": value for side, d in got.items() for key, value in d.items()}})
    return rows


def print_table(rows: List[dict], info: dict) -> None:
    print(f"# {info['device']} | heads {info['heads']} | dim {info['dim']} | causal {info['causal']} "
          f"| products per (query block, key block) pair")
    print(f"{'T':>5} {'spread':>6} {'alpha':>8} | {'qk base':>7} {'qk ours':>7} | {'fwd base':>8} "
          f"{'fwd ours':>8} | {'bwd base':>8} {'bwd ours':>8} | {'ours/base':>9} {'x flash':>7}")
    for r in rows:
        base, ours = r["base_fwd"] + r["base_bwd"], r["ours_fwd"] + r["ours_bwd"]
        r["ratio_to_base"], r["ratio_to_flash"] = ours / base, ours / 7.0
        print(f"{r['T']:>5} {r['spread']:>6.1f} {r['alpha']:>8} | {r['base_qk']:>7.2f} "
              f"{r['ours_qk']:>7.2f} | {r['base_fwd']:>8.2f} {r['ours_fwd']:>8.2f} | "
              f"{r['base_bwd']:>8.2f} {r['ours_bwd']:>8.2f} | {r['ratio_to_base']:>9.2f} "
              f"{r['ratio_to_flash']:>7.2f}")
    ratios = sorted(r["ratio_to_base"] for r in rows)
    print(f"median ours / base (forward + backward products): {ratios[len(ratios) // 2]:.2f}")


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description=__doc__,
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--device", default="cpu", choices=["cpu", "cuda"])
    parser.add_argument("--json", metavar="FILE", help="write the rows as JSON")
    parser.add_argument("--quick", action="store_true", help="one short length (smoke run)")
    parser.add_argument("--lengths", type=int, nargs="+", help="default 64 256 on CPU, 256 1024 4096 on CUDA")
    parser.add_argument("--spreads", type=float, nargs="+", default=[1.0, 2.0],
                        help="q, k, v ~ N(0, spread²): scores of std spread²")
    parser.add_argument("--batch", type=int, default=1)
    parser.add_argument("--heads", type=int, default=2)
    parser.add_argument("--dim", type=int, default=32, help="32, 64 or 128")
    parser.add_argument("--causal", action="store_true")
    args = parser.parse_args(argv)
    if args.device == "cuda" and not torch.cuda.is_available():
        parser.error("--device cuda: no GPU present")
    if args.device == "cpu":
        os.environ["TRITON_INTERPRET"] = "1"  # read when the kernels are first loaded
    device = torch.device(args.device)
    rows = count(args, device)
    info = {"device": args.device, "heads": args.heads, "dim": args.dim, "causal": args.causal}
    print_table(rows, info)
    if args.json:
        Path(args.json).write_text(json.dumps({**info, "rows": rows}, indent=2))
    return 0


if __name__ == "__main__":
    sys.exit(main())
