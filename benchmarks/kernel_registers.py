"""Registers and spills of every GPU launch configuration of the fused attention, compiled
ahead of time for sm_90 (Hopper) on any machine, no GPU needed.

    python benchmarks/kernel_registers.py [--json FILE] [--kind 0]

For each entry of :data:`sparse_seq2seq.kernels.launch.STREAMED_GPU` (tile sizes and warps
of the streamed kernels) and each row width the resident kernels take
(:data:`~sparse_seq2seq.kernels.launch.RESIDENT_GPU_KEYS`), it compiles the kernels one
launch runs (learned α: the general kind with ∂α, causal, key padding, the heaviest
variant; a resident forward with the streamed dq where the row is too long for the resident
dq) and prints what ``ptxas -v`` reports: registers per thread (at most 255) and the
bytes spilled to local memory. Spills turn register traffic into memory traffic; the table
in launch.py was chosen to have none.
"""
from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path

import torch

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from sparse_seq2seq.kernels import aot, launch  # noqa: E402

WIDTHS = (64, 128, 256, 512)


def configurations():
    """(label, dtype, head dim, launch config) for every GPU entry of the launch tables."""
    for (half, dim) in sorted(launch.STREAMED_GPU):
        dtype = torch.float16 if half else torch.float32
        yield "streamed", dtype, dim, launch.launch_config("cuda", dtype, dim, 1024, 1024, False)
        for width in WIDTHS:
            cfg = launch.launch_config("cuda", dtype, dim, 1024, width)
            if cfg["resident"] is not None and cfg["resident"]["TKP"] == width:
                yield f"resident {width}", dtype, dim, cfg


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description=__doc__,
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--json", metavar="FILE", help="write the rows as JSON")
    parser.add_argument("--kind", type=int, default=0, choices=[0, 1, 2],
                        help="0 general α (default), 1 sparsemax, 2 1.5-entmax")
    parser.add_argument("--dropout", action="store_true", help="with attention dropout")
    args = parser.parse_args(argv)
    rows = []
    print(f"# sm_90 | kind {args.kind} | causal, key padding, grad in alpha"
          f"{', attention dropout' if args.dropout else ''}")
    print(f"{'kernels':>13} {'dtype':>8} {'D':>4} {'tiles':>22} | kernel: registers/spill bytes")
    for label, dtype, dim, cfg in configurations():
        usage = aot.attention_kernels(dtype, dim, args.kind, cfg, dropout=args.dropout)
        res = cfg["resident"]
        tiles = (f"RBM {res['RBM']} TKP {res['TKP']} w{res['num_warps']}" if res else
                 f"BM {cfg['BM']} BN {cfg['BN']} w{cfg['num_warps']}")
        cells = "  ".join(f"{name} {u.registers}/{u.spill_bytes}" for name, u in usage.items())
        print(f"{label:>13} {str(dtype).replace('torch.', ''):>8} {dim:>4} {tiles:>22} | {cells}",
              flush=True)
        rows.append({"kernels": label, "dtype": str(dtype), "dim": dim, "tiles": tiles,
                     **{name: u._asdict() for name, u in usage.items()}})
    spilling = [r for r in rows
                if any(isinstance(u, dict) and u["spill_bytes"] for u in r.values())]
    names = ", ".join(f"{r['kernels']} {r['dtype']} D{r['dim']}" for r in spilling) or "none"
    print(f"configurations: {len(rows)}, with spills: {len(spilling)} ({names})")
    if args.json:
        Path(args.json).write_text(json.dumps({"kind": args.kind, "dropout": args.dropout,
                                               "rows": rows}, indent=2))
    return 0


if __name__ == "__main__":
    sys.exit(main())
