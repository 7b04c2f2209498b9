"""The fused attention's work, counted in matrix-product tiles, against its plain Newton
baseline in one run.

    python benchmarks/bench_sweeps.py                  # CPU, through Triton's interpreter
    python benchmarks/bench_sweeps.py --device cuda --json sweeps.json

A GPU kernel's time follows the (BM × BN × D) products it computes. Counts do not depend on
the machine, so this runs anywhere. For each length T, score spread and α, per
(query block, key block) pair, three kernels:

* ``base``: the streamed kernel as Newton from τ = 0 with the output in a sweep of its own
  (``start_iter=0, predict_tol=0``); backward 9 products per block its forward left live (a
  sweep for the row sums c and ∂α, one for dq, one for dk and dv);
* ``streamed``: starts from the root over the two largest scores of each key column and
  forms the output in the last Newton sweep; backward 8 per block holding support (row sums and dq in one sweep: 4, dk
  and dv: 4);
* ``resident`` (rows of ≤ RESIDENT_MAX_KEYS keys): the scores once, τ in registers, p v once;
  backward: dq from one tile per query block with c known (3 per pair of that tile,
  padding included; rows longer than RESIDENT_DQ_MAX_KEYS: the streamed dq, 4 per block
  holding support), dk and dv 4 per block holding support.

``qk`` counts the forward's q kᵀ tiles (each also maps its scores through entmax), ``fwd``
all forward products, ``bwd`` the backward's; ``ours`` is the kernel the dispatch picks
(resident where it applies); ``x flash`` is ours over softmax flash attention's 7 per pair
(2 forward, 5 backward).
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

LENGTHS = {"cpu": (64, 256, 512), "cuda": (256, 512, 1024, 4096)}  # the interpreter is slow
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
        variants = (("base", dict(start_iter=0, predict_tol=0.0, resident=False), 9),
                    ("streamed", dict(resident=False), 8), ("resident", dict(resident=True), 4))
        for label, extra, per_block in variants:
            _, r, blocks, _, cfg = fa.launch_forward(q, k, v, alpha, None, args.causal, scale,
                                                     kinds[kind], **extra)
            if label == "resident" and cfg["resident"] is None:
                continue  # rows too long to hold on chip
            pairs = blocks.numel()
            qk, pv = (float(t) / pairs for t in r["tiles"].double().sum(0))
            visited = float((r["live"] if label == "base" else blocks).double().sum()) / pairs
            if label == "resident" and cfg["resident_dq"]:
                bwd = visited * per_block + 3 * qk  # dq from one tile per query block
            else:
                bwd = visited * (per_block if label != "resident" else 8)
            got[label] = dict(qk=qk, fwd=qk + pv, bwd=bwd)
        got["ours"] = got.get("resident", got["streamed"])
        rows.append({"T": length, "spread": spread, "alpha": name, "block": cfg["BN"],
                     **{f"{side}_{key}": value for side, d in got.items() for key, value in d.items()}})
    return rows


def print_table(rows: List[dict], info: dict) -> None:
    print(f"# {info['device']} | heads {info['heads']} | dim {info['dim']} | causal {info['causal']} "
          f"| products per (query block, key block) pair; base / streamed / resident")
    print(f"{'T':>5} {'spread':>6} {'alpha':>8} | {'qk':>16} | {'fwd':>16} | {'bwd':>16} | "
          f"{'ours/base':>9} {'x flash':>7}")
    for r in rows:
        base, ours = r["base_fwd"] + r["base_bwd"], r["ours_fwd"] + r["ours_bwd"]
        r["ratio_to_base"], r["ratio_to_flash"] = ours / base, ours / 7.0
        cells = [" ".join(f"{r[f'{side}_{key}']:>5.2f}" if f"{side}_{key}" in r else "    -"
                          for side in ("base", "streamed", "resident"))
                 for key in ("qk", "fwd", "bwd")]
        print(f"{r['T']:>5} {r['spread']:>6.1f} {r['alpha']:>8} | {cells[0]:>16} | "
              f"{cells[1]:>16} | {cells[2]:>16} | {r['ratio_to_base']:>9.2f} "
              f"{r['ratio_to_flash']:>7.2f}")
    ratios = sorted(r["ratio_to_base"] for r in rows)
    flash = sorted(r["ratio_to_flash"] for r in rows)
    print(f"median ours / base (forward + backward products): {ratios[len(ratios) // 2]:.2f}; "
          f"ours / flash: {flash[len(flash) // 2]:.2f}")


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
