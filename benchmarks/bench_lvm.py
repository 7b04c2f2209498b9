"""Wall time per training epoch: sparse (sparsemax) vs dense (softmax) marginalisation, same run.

For the semi-supervised VAE (|Z| = 10) and the emergent-communication game (|Z| = 256), one
"epoch" is a fixed set of training batches. Each model first trains one untimed epoch (the
SSVAE starts from the recipe's warm-start checkpoints when ``--ssvae-warm-start`` holds them, as
sparsemax is only sparse once the classifier is confident); then dense and sparsemax epochs are
interleaved, repeated, and the median times, their ratio and the decoder calls per example printed.

    python benchmarks/bench_lvm.py --repeats 3 --examples 2048 --threads 1
"""
from __future__ import annotations

import argparse
import math
import statistics
import time
from pathlib import Path
from typing import Callable, Dict, List, Optional

import torch

from sparse_seq2seq.lvm import build_estimator
from sparse_seq2seq.lvm.experiments.emergent import Receiver, Sender, sample_games
from sparse_seq2seq.lvm.experiments.ssvae import SSVAE


def _images(n: int, gen: torch.Generator) -> torch.Tensor:
    """MNIST training images from the mirror when available, else uniform noise (timing only)."""
    try:
        from sparse_seq2seq.lvm.experiments.data import load_idx_dataset

        train_x = load_idx_dataset("mnist")[0]
        return torch.from_numpy(train_x[:n].reshape(n, 784)).float() / 255
    except (FileNotFoundError, OSError, ValueError):
        return torch.rand(n, 784, generator=gen)


def ssvae_epoch(method: str, images: torch.Tensor, batch: int, seed: int,
                warm_start: Optional[Path]) -> Callable[[], float]:
    """One epoch of unlabelled SSVAE updates; returns decoder calls per example."""
    torch.manual_seed(seed)
    model = SSVAE()
    family = "sparse" if method == "sparsemax" else "softmax"
    if warm_start is not None and (warm_start / f"warmstart_{family}.pt").exists():
        model.load_state_dict(torch.load(warm_start / f"warmstart_{family}.pt", weights_only=True))
    opt = torch.optim.Adam(model.parameters(), lr=5e-4)
    est = build_estimator(method)

    def run() -> float:
        calls = 0
        for x in images.split(batch):
            x = torch.bernoulli(x)
            out = est(model.classifier(x), lambda rows, y: model.neg_elbo(x[rows], y))
            loss = (out.objective + math.log(10) - out.entropy).mean()
            opt.zero_grad()
            loss.backward()
            opt.step()
            calls += out.decoder_calls
        return calls / len(images)

    return run


def emergent_epoch(method: str, feats: torch.Tensor, n_games: int, batch: int, seed: int) -> Callable[[], float]:
    """One epoch of referential-game updates (|Z| = 256, |V| = 16); returns decoder calls per game."""
    torch.manual_seed(seed)
    sender, receiver = Sender(feats.shape[1], 256, 512), Receiver(feats.shape[1], 256, 256)
    opt = torch.optim.Adam(list(sender.parameters()) + list(receiver.parameters()), lr=5e-3)
    est = build_estimator(method)
    games = sample_games(len(feats), n_games, 16, torch.Generator().manual_seed(seed))

    def run() -> float:
        calls = 0
        for cands, target in zip(games[0].split(batch), games[1].split(batch)):
            images = feats[cands]
            cand_emb = receiver.embed_candidates(images)

            def loss_fn(rows: torch.Tensor, z: torch.Tensor) -> torch.Tensor:
                logp = receiver.pair_log_probs(rows, z, cand_emb)
                return -logp.gather(1, target[rows].unsqueeze(1)).squeeze(1)

            out = est(sender(images[torch.arange(len(target)), target]), loss_fn)
            loss = (out.objective - 0.1 * out.entropy).mean()
            opt.zero_grad()
            loss.backward()
            opt.step()
            calls += out.decoder_calls
        return calls / n_games

    return run


def timed(fn: Callable[[], float]) -> tuple[float, float]:
    start = time.perf_counter()
    calls = fn()
    return time.perf_counter() - start, calls


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--repeats", type=int, default=3)
    parser.add_argument("--examples", type=int, default=2048, help="examples (games) per epoch")
    parser.add_argument("--batch-size", type=int, default=64)
    parser.add_argument("--threads", type=int, default=1)
    parser.add_argument("--ssvae-warm-start", type=Path, default=Path(__file__).resolve().parents[1] / "exp" / "lvm_ssvae",
                        help="folder with warmstart_{softmax,sparse}.pt from recipes/lvm_ssvae (stage 1)")
    args = parser.parse_args()
    torch.set_num_threads(args.threads)
    gen = torch.Generator().manual_seed(0)
    images = _images(max(args.examples, 4096), gen)
    feats = (images[:4096] - images[:4096].mean(0)) @ torch.randn(784, 256, generator=gen) / 28
    setups: Dict[str, Callable[[str], Callable[[], float]]] = {
        "ssvae (|Z|=10)": lambda m: ssvae_epoch(m, images[: args.examples], args.batch_size, 0, args.ssvae_warm_start),
        "emergent (|Z|=256)": lambda m: emergent_epoch(m, feats, args.examples, args.batch_size, 0),
    }
    warm = args.ssvae_warm_start if (args.ssvae_warm_start / "warmstart_sparse.pt").exists() else None
    print(f"torch {torch.__version__}, {args.threads} thread(s), {args.examples} examples/epoch, "
          f"batch {args.batch_size}, median of {args.repeats} interleaved repeats after 1 untimed epoch; "
          f"ssvae warm start: {warm or 'none (random initialisation)'}")
    print(f"{'experiment':<20} {'dense s/epoch':>14} {'sparse s/epoch':>15} {'dense/sparse':>13} "
          f"{'calls dense':>12} {'calls sparse':>13}")
    for name, make in setups.items():
        runners = {m: make(m) for m in ("dense", "sparsemax")}
        for fn in runners.values():
            fn()
        times: Dict[str, List[float]] = {m: [] for m in runners}
        calls: Dict[str, List[float]] = {m: [] for m in runners}
        for _ in range(args.repeats):
            for method, fn in runners.items():
                t, c = timed(fn)
                times[method].append(t)
                calls[method].append(c)
        dense, sparse = statistics.median(times["dense"]), statistics.median(times["sparsemax"])
        print(f"{name:<20} {dense:>14.2f} {sparse:>15.2f} {dense / sparse:>12.2f}x "
              f"{statistics.fmean(calls['dense']):>12.2f} {statistics.fmean(calls['sparsemax']):>13.2f}")


if __name__ == "__main__":
    main()
