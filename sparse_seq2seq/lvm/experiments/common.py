"""Plumbing shared by the three latent-variable experiments: seeding, CLI options, run records."""
from __future__ import annotations

import argparse
import json
import os
import random
import time
from pathlib import Path
from typing import Any, Dict, Iterator, List, Optional

import numpy as np
import torch

from ..estimators import ESTIMATORS

__all__ = ["seed_everything", "add_common_args", "RunRecord", "DecoderCalls", "batches", "mlp",
           "optimizer_step"]


def seed_everything(seed: int, threads: int = 1) -> torch.Generator:
    """Seed python, numpy and torch; set the torch thread count; return a seeded CPU generator."""
    random.seed(seed)
    np.random.seed(seed)
    torch.manual_seed(seed)
    torch.set_num_threads(max(1, threads))
    return torch.Generator().manual_seed(seed)


def add_common_args(parser: argparse.ArgumentParser, methods: tuple = ESTIMATORS) -> None:
    """Options every experiment takes: method, seed, epochs, batch size, lr, threads, output folder."""
    parser.add_argument("--method", required=True, choices=methods)
    parser.add_argument("--seed", type=int, default=1)
    parser.add_argument("--epochs", type=int, default=1)
    parser.add_argument("--max-steps", type=int, default=0, help="stop after this many updates (0: no limit)")
    parser.add_argument("--batch-size", type=int, default=64)
    parser.add_argument("--lr", type=float, default=1e-3)
    parser.add_argument("--threads", type=int, default=int(os.environ.get("LVM_THREADS", "1")))
    parser.add_argument("--out", type=Path, required=True, help="folder for <method>_seed<seed>.json")
    parser.add_argument("--no-progress", action="store_true", help="hide the progress bar")


def batches(n: int, batch_size: int, generator: torch.Generator, shuffle: bool = True) -> Iterator[torch.Tensor]:
    """Index batches over range(n), reshuffled by ``generator``; the last partial batch is kept."""
    order = torch.randperm(n, generator=generator) if shuffle else torch.arange(n)
    for start in range(0, n, batch_size):
        yield order[start: start + batch_size]


def mlp(*sizes: int) -> torch.nn.Sequential:
    """Linear layers with ReLU between them (none after the last)."""
    layers: List[torch.nn.Module] = []
    for i, (a, b) in enumerate(zip(sizes[:-1], sizes[1:])):
        layers.append(torch.nn.Linear(a, b))
        if i < len(sizes) - 2:
            layers.append(torch.nn.ReLU())
    return torch.nn.Sequential(*layers)


def optimizer_step(optimizer: torch.optim.Optimizer, loss: torch.Tensor) -> None:
    """One update: clear the gradients, back-propagate ``loss``, step."""
    optimizer.zero_grad()
    loss.backward()
    optimizer.step()


class DecoderCalls:
    """Decoder calls per example (the cost the sparse estimators cut): over the whole run,
    since the last report, and per update."""

    def __init__(self) -> None:
        self.calls, self.seen = 0, 0
        self.window: List[float] = []
        self.per_step: List[float] = []

    def add(self, calls: int, examples: int) -> None:
        """Count one update's ``calls`` for its ``examples``."""
        self.calls += calls
        self.seen += examples
        self.window.append(calls / examples)
        self.per_step.append(calls / examples)

    def recent(self) -> float:
        """Mean calls per example over the updates since the last call; starts a new window."""
        mean = sum(self.window) / len(self.window)
        self.window = []
        return mean

    @property
    def overall(self) -> float:
        """Calls per example over the whole run."""
        return self.calls / self.seen

    def last(self, updates: int) -> float:
        """Mean calls per example over the last ``updates`` updates."""
        tail = self.per_step[-updates:]
        return sum(tail) / len(tail)


class RunRecord:
    """Training curve plus final metrics of one (method, seed) run, saved as JSON."""

    def __init__(self, experiment: str, args: argparse.Namespace):
        self.data: Dict[str, Any] = {
            "experiment": experiment,
            "method": args.method,
            "seed": args.seed,
            "config": {k: (str(v) if isinstance(v, Path) else v) for k, v in vars(args).items()},
            "curve": [],
            "final": {},
        }
        self.start = time.perf_counter()

    def log(self, **values: float) -> None:
        self.data["curve"].append({"time_s": round(time.perf_counter() - self.start, 3), **values})

    def finish(self, out: Path, **final: Any) -> Path:
        self.data["final"] = {"train_time_s": round(time.perf_counter() - self.start, 1), **final}
        out.mkdir(parents=True, exist_ok=True)
        path = out / f"{self.data['method']}_seed{self.data['seed']}.json"
        path.write_text(json.dumps(self.data, indent=1))
        return path


def load_records(folder: Path, experiment: Optional[str] = None) -> List[Dict[str, Any]]:
    """Every run record in ``folder`` (optionally only one experiment's), sorted by method and seed."""
    out = []
    for path in sorted(Path(folder).glob("*_seed*.json")):
        rec = json.loads(path.read_text())
        if experiment is None or rec.get("experiment") == experiment:
            out.append(rec)
    return sorted(out, key=lambda r: (r["method"], r["seed"]))
