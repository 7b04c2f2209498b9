"""Emergent communication: a referential game with one discrete message (Correia et al. 2020, §5.2).

A sender sees the target's features and emits one of |Z| symbols; a receiver sees the symbol and
|V| candidates (the target and |V|−1 random distractors) and must point at the target. The loss
ℓ(x, z) = −log p_receiver(target | z, candidates) is the "decoder"; the sender's distribution
π(z | x) is handled by the chosen estimator (dense: |Z| receiver calls per game, sparsemax: the
support only), and an entropy bonus keeps the sender exploring:

    min  E_{π(z|x)}[ℓ(x, z)] − λ H(π(·|x))                               (paper eq. 8)

Any feature matrix works (``--train-features``/``--test-features``, rows = images). The paper used
ImageNet features; the recipe here uses PCA features of Fashion-MNIST (see ``features.py``).

    python -m sparse_seq2seq.lvm.experiments.emergent --method sparsemax --train-features f/train.npy \
        --test-features f/test.npy --epochs 2 --seed 1 --out exp/lvm_emergent
"""
from __future__ import annotations

import argparse
import math
from pathlib import Path
from typing import Optional, Sequence

import numpy as np
import torch
import torch.nn.functional as F
from torch import Tensor, nn
from tqdm import tqdm

from ..estimators import build_estimator
from .common import DecoderCalls, RunRecord, add_common_args, mlp, optimizer_step, seed_everything

__all__ = ["Sender", "Receiver", "sample_games", "main"]

METHODS = ("dense", "sparsemax", "topk_sparsemax", "sfe", "sfe_plus", "nvil", "gumbel", "st_gumbel", "sum_and_sample")


class Sender(nn.Module):
    """Target features → scores over |Z| symbols (and an NVIL baseline)."""

    def __init__(self, feat_dim: int, n_symbols: int, hidden: int):
        super().__init__()
        self.net = mlp(feat_dim, hidden, n_symbols)
        self.baseline = mlp(feat_dim, 64, 1)

    def forward(self, target: Tensor) -> Tensor:
        return self.net(target)


class Receiver(nn.Module):
    """Scores candidates by the dot product of their embedding with the message's embedding."""

    def __init__(self, feat_dim: int, n_symbols: int, embed: int):
        super().__init__()
        self.symbols = nn.Linear(n_symbols, embed, bias=False)
        self.images = nn.Linear(feat_dim, embed)

    def embed_candidates(self, candidates: Tensor) -> Tensor:
        return self.images(candidates)

    def forward(self, z: Tensor, candidate_embeddings: Tensor) -> Tensor:
        """Log-probabilities over candidates: (N, |Z|) messages × (N, |V|, E) candidates → (N, |V|)."""
        return torch.log_softmax((candidate_embeddings @ self.symbols(z).unsqueeze(-1)).squeeze(-1), -1)

    def pair_log_probs(self, rows: Tensor, z: Tensor, candidate_embeddings: Tensor) -> Tensor:
        """``forward`` for (example, message) pairs; examples' candidates (B, |V|, E) are not copied
        per pair when every example has the same number of consecutive pairs (dense, sampling)."""
        bsz = candidate_embeddings.shape[0]
        msg = self.symbols(z)
        per = rows.numel() // bsz
        if per * bsz == rows.numel() and torch.equal(rows, torch.arange(bsz).repeat_interleave(per)):
            scores = msg.view(bsz, per, -1) @ candidate_embeddings.transpose(1, 2)  # (B, per, |V|)
            return torch.log_softmax(scores.reshape(bsz * per, -1), -1)
        return torch.log_softmax((candidate_embeddings[rows] @ msg.unsqueeze(-1)).squeeze(-1), -1)


def sample_games(n_images: int, n_games: int, game_size: int, generator: torch.Generator) -> tuple[Tensor, Tensor]:
    """(candidates (G, |V|) image indices without repeats within a game, target position (G,))."""
    keys = torch.rand(n_games, n_images, generator=generator) if n_images <= 4096 else None
    if keys is not None:
        cands = keys.topk(game_size, dim=-1).indices
    else:  # draw with replacement, then redraw rows that repeat an image
        cands = torch.randint(n_images, (n_games, game_size), generator=generator)
        while True:
            dup = (cands.unsqueeze(1) == cands.unsqueeze(2)).sum((1, 2)) > game_size
            if not bool(dup.any()):
                break
            cands[dup] = torch.randint(n_images, (int(dup.sum()), game_size), generator=generator)
    target = torch.randint(game_size, (n_games,), generator=generator)
    return cands, target


@torch.no_grad()
def success_rate(sender: Sender, receiver: Receiver, feats: Tensor, cands: Tensor, target: Tensor) -> float:
    """Percentage of games won when the sender sends its most probable symbol."""
    wins = 0
    for c, t in zip(cands.split(2000), target.split(2000)):
        images = feats[c]
        msg = F.one_hot(sender(images[torch.arange(len(t)), t]).argmax(-1), sender.net[-1].out_features).float()
        wins += int((receiver(msg, receiver.embed_candidates(images)).argmax(-1) == t).sum())
    return 100.0 * wins / len(target)


def train(args: argparse.Namespace) -> Path:
    gen = seed_everything(args.seed, args.threads)
    train_feats = torch.from_numpy(np.load(args.train_features)).float()
    test_feats = torch.from_numpy(np.load(args.test_features)).float()
    feat_dim = train_feats.shape[1]
    sender = Sender(feat_dim, args.n_symbols, args.hidden)
    receiver = Receiver(feat_dim, args.n_symbols, args.embed)
    params = list(sender.parameters()) + list(receiver.parameters())
    opt = torch.optim.Adam(params, lr=args.lr)
    est = build_estimator(args.method, "categorical", k=args.k, temperature=args.temperature)
    test_games = sample_games(len(test_feats), args.test_games, args.game_size, torch.Generator().manual_seed(1234))
    val_games = sample_games(len(train_feats), 2000, args.game_size, torch.Generator().manual_seed(4321))
    record = RunRecord("emergent", args)
    steps_per_epoch = math.ceil(args.games_per_epoch / args.batch_size)
    total = steps_per_epoch * args.epochs
    total = min(total, args.max_steps) if args.max_steps else total
    calls = DecoderCalls()
    record.log(step=0, train_success=success_rate(sender, receiver, train_feats, *val_games))
    bar = tqdm(range(1, total + 1), desc=f"emergent {args.method} seed {args.seed}", disable=args.no_progress)
    for step in bar:
        cands, target = sample_games(len(train_feats), args.batch_size, args.game_size, gen)
        images = train_feats[cands]
        target_feats = images[torch.arange(len(target)), target]
        cand_emb = receiver.embed_candidates(images)

        def loss_fn(rows: Tensor, z: Tensor) -> Tensor:
            return -receiver.pair_log_probs(rows, z, cand_emb).gather(1, target[rows].unsqueeze(1)).squeeze(1)

        out = est(sender(target_feats), loss_fn, baseline=sender.baseline(target_feats).squeeze(-1))
        loss = (out.objective - args.entropy_coeff * out.entropy).mean()
        optimizer_step(opt, loss)
        calls.add(out.decoder_calls, len(target))
        if step % args.eval_every == 0 or step == total:
            acc = success_rate(sender, receiver, train_feats, *val_games)
            recent = calls.recent()
            record.log(step=step, train_success=acc, decoder_calls=recent, loss=float(out.loss.mean()))
            bar.set_postfix(success=f"{acc:.1f}", calls=f"{recent:.2f}")
    final = dict(test_success=success_rate(sender, receiver, test_feats, *test_games),
                 decoder_calls=calls.overall, decoder_calls_last=record.data["curve"][-1]["decoder_calls"], steps=total)
    path = record.finish(args.out, **final)
    print(f"{args.method} seed {args.seed}: test success {final['test_success']:.2f}%, "
          f"decoder calls/game {final['decoder_calls']:.2f} -> {path}")
    return path


def _parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    add_common_args(parser, METHODS)
    parser.add_argument("--train-features", type=Path, required=True)
    parser.add_argument("--test-features", type=Path, required=True)
    parser.add_argument("--n-symbols", type=int, default=256, help="|Z|")
    parser.add_argument("--game-size", type=int, default=16, help="|V|, candidates per game")
    parser.add_argument("--games-per-epoch", type=int, default=16000)
    parser.add_argument("--test-games", type=int, default=10000)
    parser.add_argument("--hidden", type=int, default=512)
    parser.add_argument("--embed", type=int, default=256)
    parser.add_argument("--entropy-coeff", type=float, default=0.1)
    parser.add_argument("--k", type=int, default=None, help="top-k sparsemax k (default 10) / sum-and-sample k (default 1)")
    parser.add_argument("--temperature", type=float, default=1.0)
    parser.add_argument("--eval-every", type=int, default=50)
    return parser


def main(argv: Optional[Sequence[str]] = None) -> None:
    train(_parser().parse_args(argv))


if __name__ == "__main__":
    main()
