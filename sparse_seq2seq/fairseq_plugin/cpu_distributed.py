"""Data-parallel ``fairseq-train`` on CPU: one model trained by several processes over gloo.

fairseq's own launcher spawns one process per GPU, so with ``--cpu`` it starts none
(``--distributed-world-size 2`` trains nothing), and under ``torchrun`` it divides by
``torch.cuda.device_count()``. This launcher starts the processes itself and hands each one
to fairseq's ``distributed_main`` with a rank, the gloo backend and a TCP rendezvous, so the
training code is fairseq's own — the same code that runs with NCCL on GPUs::

    python -m sparse_seq2seq.fairseq_plugin.cpu_distributed --nprocs 2 -- \\
        data-bin --user-dir user_dir --arch entmax_transformer_tiny ...   # fairseq-train flags

It adds ``--cpu --distributed-world-size N --distributed-backend gloo
--distributed-init-method tcp://ADDR:PORT --ddp-backend legacy_ddp`` to the fairseq flags.
``legacy_ddp`` (fairseq's bucketed all-reduce of the gradients) is required: torch's
``DistributedDataParallel`` refuses the ``device_ids`` fairseq passes for a CPU model.
Several machines: ``--nnodes``, ``--node-rank``, ``--master-addr``, ``--master-port`` on each.
Under ``torchrun`` (``RANK``, ``LOCAL_RANK`` and ``WORLD_SIZE`` set) it runs the one process
torchrun started and rendezvouses through ``env://``.

Each rank prints ``| rank R: process PID`` as it starts. If a rank dies (killed, out of
memory, an error), the launcher stops the other ranks of its machine (SIGTERM, SIGKILL 30 s
later) and exits non-zero after the rank's traceback, if it raised one, and a line per rank
that did not finish: ``cpu_distributed: rank R (process PID) was killed by SIGKILL`` (or
``exited with code C``).

At the end every rank hashes its parameters and rank 0 reports whether all replicas agree;
``--save-replicas DIR`` also writes each rank's parameters before the first update
(``rank<R>_init.pt``) and after training (``rank<R>.pt``).
"""
from __future__ import annotations

import argparse
import hashlib
import logging
import os
import signal
import socket
import sys
from pathlib import Path
from typing import Dict, List, Optional, Sequence, Tuple

import torch
import torch.distributed as dist
from torch.multiprocessing.spawn import ProcessException, ProcessRaisedException

logger = logging.getLogger("sparse_seq2seq.cpu_distributed")

OWNED_FLAGS = ("--distributed-world-size", "--distributed-rank", "--distributed-backend",
               "--distributed-init-method", "--distributed-no-spawn", "--distributed-port",
               "--device-id")
CPU_DDP_BACKENDS = ("legacy_ddp", "no_c10d")


def parameter_digest(state: Dict[str, torch.Tensor]) -> str:
    """SHA-256 of the names, shapes and bytes of every tensor (equal iff bitwise equal)."""
    digest = hashlib.sha256()
    for name in sorted(state):
        tensor = state[name].detach().cpu().contiguous()
        digest.update(f"{name}:{tuple(tensor.shape)}:{tensor.dtype};".encode())
        digest.update(tensor.view(torch.uint8).numpy().tobytes() if tensor.numel() else b"")
    return digest.hexdigest()


class ReplicaRecorder:
    """Finds the fairseq model of this process at its first forward pass (a global
    pre-forward hook that removes itself), so that its parameters can be saved and
    compared across ranks once training ends."""

    def __init__(self, save_dir: Optional[Path]):
        self.save_dir = save_dir
        self.model: Optional[torch.nn.Module] = None
        self._handle = torch.nn.modules.module.register_module_forward_pre_hook(self._first_forward)

    def _first_forward(self, module: torch.nn.Module, _inputs) -> None:
        from fairseq.models import BaseFairseqModel

        if self.model is not None or not isinstance(module, BaseFairseqModel):
            return
        self.model = module
        self._handle.remove()
        if self.save_dir is not None:
            torch.save(self.state(), self.save_dir / f"rank{_rank()}_init.pt")

    def state(self) -> Dict[str, torch.Tensor]:
        assert self.model is not None
        return {k: v.detach().clone() for k, v in self.model.state_dict().items()}

    def finish(self) -> bool:
        """Save this rank's parameters, compare digests over the group; True if all agree."""
        self._handle.remove()
        if self.model is None:
            logger.warning("rank %d never ran the model: nothing to compare", _rank())
            return False
        state = self.state()
        if self.save_dir is not None:
            torch.save(state, self.save_dir / f"rank{_rank()}.pt")
        mine = parameter_digest(state)
        digests: List[Optional[str]] = [None] * dist.get_world_size()
        dist.all_gather_object(digests, mine)
        agree = len(set(digests)) == 1
        print(f"| rank {_rank()}: parameters sha256 {mine[:16]}", flush=True)
        if _rank() == 0:
            verdict = "identical" if agree else "DIFFERENT"
            print(f"| {len(digests)} replicas hold {verdict} parameters", flush=True)
        return agree


def _rank() -> int:
    return dist.get_rank() if dist.is_initialized() else 0


def free_port() -> int:
    """A TCP port that is free on this machine now."""
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


def launched_by_torchrun() -> bool:
    return all(name in os.environ for name in ("RANK", "LOCAL_RANK", "WORLD_SIZE"))


def parse_launcher_args(argv: Sequence[str]) -> Tuple[argparse.Namespace, List[str]]:
    """Split ``argv`` at ``--`` into the launcher's options and fairseq-train's flags."""
    argv = list(argv)
    if "--" not in argv:
        raise SystemExit("usage: cpu_distributed [launcher options] -- <fairseq-train flags>")
    cut = argv.index("--")
    parser = argparse.ArgumentParser(
        prog="python -m sparse_seq2seq.fairseq_plugin.cpu_distributed", description=__doc__,
        formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--nprocs", type=int, default=2, help="processes on this machine (default 2)")
    parser.add_argument("--nnodes", type=int, default=1, help="machines (default 1)")
    parser.add_argument("--node-rank", type=int, default=0, help="this machine's index (default 0)")
    parser.add_argument("--master-addr", default="127.0.0.1", help="address of node 0")
    parser.add_argument("--master-port", type=int, default=None,
                        help="rendezvous port on node 0 (default: a free port; required with --nnodes > 1)")
    parser.add_argument("--threads-per-proc", type=int, default=None,
                        help="torch threads per process (default: CPU cores / nprocs)")
    parser.add_argument("--save-replicas", type=Path, metavar="DIR",
                        help="write each rank's parameters before the first and after the last update")
    opts = parser.parse_args(argv[:cut])
    train_flags = argv[cut + 1:]
    for flag in train_flags:
        if flag.split("=")[0] in OWNED_FLAGS:
            parser.error(f"{flag} is set by the launcher; drop it from the fairseq-train flags")
    if opts.nprocs < 1 or opts.nnodes < 1 or not 0 <= opts.node_rank < opts.nnodes:
        parser.error("need --nprocs >= 1, --nnodes >= 1 and 0 <= --node-rank < --nnodes")
    if opts.nnodes > 1 and opts.master_port is None:
        parser.error("--master-port is required with --nnodes > 1")
    return opts, train_flags


def build_config(train_flags: List[str], world_size: int, init_method: str):
    """fairseq's config for these fairseq-train flags, made distributed over gloo on CPU."""
    from fairseq import options
    from fairseq.dataclass.utils import convert_namespace_to_omegaconf

    flags = list(train_flags)
    backend = next((f.split("=", 1)[1] if "=" in f else flags[i + 1]
                    for i, f in enumerate(flags) if f.split("=")[0] == "--ddp-backend"), None)
    if backend is None:
        flags += ["--ddp-backend", "legacy_ddp"]
    elif backend not in CPU_DDP_BACKENDS:
        raise SystemExit(f"--ddp-backend {backend} does not run on CPU; use legacy_ddp "
                         "(torch's DistributedDataParallel refuses fairseq's device_ids for a CPU model)")
    if "--cpu" not in flags:
        flags.append("--cpu")
    flags += ["--distributed-world-size", str(world_size), "--distributed-backend", "gloo",
              "--distributed-init-method", init_method]
    parser = options.get_training_parser()
    cfg = convert_namespace_to_omegaconf(options.parse_args_and_arch(parser, flags))
    cfg.distributed_training.distributed_no_spawn = True
    return cfg


def run_rank(local_rank: int, cfg, start_rank: int, threads: int, save_dir: Optional[Path]) -> None:
    """One process: fairseq's distributed_main (rendezvous, train.main, barrier), then the
    replica check."""
    from fairseq.distributed import utils as distributed_utils
    from fairseq_cli import train

    torch.set_num_threads(threads)
    spawned = cfg.distributed_training.distributed_rank is None
    rank = start_rank + local_rank if spawned else cfg.distributed_training.distributed_rank
    print(f"| rank {rank}: process {os.getpid()}", flush=True)
    recorder = ReplicaRecorder(save_dir)
    distributed_utils.distributed_main(local_rank, train.main, cfg,
                                       {"start_rank": start_rank} if spawned else {})
    agree = recorder.finish()
    dist.barrier()
    dist.destroy_process_group()
    if not agree:
        raise RuntimeError("the replicas ended with different parameters")


def launch(opts: argparse.Namespace, train_flags: List[str]) -> None:
    """Start the processes of this machine (or run torchrun's one) and wait for them."""
    cores = len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else (os.cpu_count() or 1)
    if opts.save_replicas is not None:
        opts.save_replicas.mkdir(parents=True, exist_ok=True)
    if launched_by_torchrun():
        local_world = int(os.environ.get("LOCAL_WORLD_SIZE", "1"))
        threads = opts.threads_per_proc or max(1, cores // local_world)
        cfg = build_config(train_flags, int(os.environ["WORLD_SIZE"]), "env://")
        cfg.distributed_training.distributed_rank = int(os.environ["RANK"])
        run_rank(int(os.environ["LOCAL_RANK"]), cfg, 0, threads, opts.save_replicas)
        return
    port = opts.master_port or free_port()
    world_size = opts.nnodes * opts.nprocs
    cfg = build_config(train_flags, world_size, f"tcp://{opts.master_addr}:{port}")
    cfg.distributed_training.distributed_rank = None  # distributed_main: start_rank + local rank
    threads = opts.threads_per_proc or max(1, cores // opts.nprocs)
    start_rank = opts.node_rank * opts.nprocs
    ranks = torch.multiprocessing.spawn(run_rank, nprocs=opts.nprocs, join=False,
                                        args=(cfg, start_rank, threads, opts.save_replicas))
    try:  # join stops the other processes (SIGTERM, then SIGKILL) once one fails
        while not ranks.join():
            pass
    except ProcessException as failure:
        raise SystemExit(failure_report(failure, ranks.processes, start_rank)) from None


def failure_report(failure: ProcessException, processes: Sequence, start_rank: int) -> str:
    """The launcher's last words when a rank failed: the traceback it raised, if any, then how
    every rank that did not finish ended (all are stopped by now)."""
    lines = []
    if isinstance(failure, ProcessRaisedException):
        lines.append((failure.msg.partition("error:\n")[2] or failure.msg).rstrip())
    for index, process in enumerate(processes):
        code = process.exitcode
        if code:
            how = f"was killed by {_signal_name(-code)}" if code < 0 else f"exited with code {code}"
            lines.append(f"cpu_distributed: rank {start_rank + index} (process {process.pid}) {how}")
    lines.append(f"cpu_distributed: rank {start_rank + failure.error_index} failed; "
                 "the launcher stopped the ranks of this machine")
    return "\n".join(lines)


def _signal_name(number: int) -> str:
    try:
        return signal.Signals(number).name
    except ValueError:
        return f"signal {number}"


def main(argv: Optional[Sequence[str]] = None) -> int:
    opts, train_flags = parse_launcher_args(sys.argv[1:] if argv is None else argv)
    launch(opts, train_flags)
    return 0


if __name__ == "__main__":
    sys.exit(main())
