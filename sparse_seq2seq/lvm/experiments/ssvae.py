"""Semi-supervised VAE on MNIST with 10% labels (Kingma et al. 2014 "M2"; Correia et al. 2020, §5.1).

Generative model p(x | y, h) with a class y ∈ {0..9} and a Gaussian h; inference q(y | x) from a
classifier's scores and q(h | x, y). For unlabelled x the loss is

    E_{q(y|x)}[ −ELBO(x, y) ] + KL(q(y|x) ‖ Uniform(10)),                (paper eq. 7)

where the expectation is handled by the chosen estimator: dense marginalisation decodes all 10
classes, sparsemax only the classes in the support, the sampling baselines one or two. Labelled
x add −ELBO(x, y) + α·classification loss. The classifier is first warm-started on the labelled
split (stage ``warmstart``), as in the paper. Images are dynamically binarised.

    python -m sparse_seq2seq.lvm.experiments.ssvae warmstart --family softmax --out exp/lvm_ssvae
    python -m sparse_seq2seq.lvm.experiments.ssvae train --method sparsemax --warm-start exp/lvm_ssvae/warmstart_sparse.pt \
        --epochs 1 --seed 1 --out exp/lvm_ssvae
"""
from __future__ import annotations

import argparse
import math
from pathlib import Path
from typing import Optional, Sequence

import torch
import torch.nn.functional as F
from torch import Tensor, nn
from tqdm import tqdm

from ...losses import sparsemax_loss
from ..estimators import build_estimator
from .common import DecoderCalls, RunRecord, add_common_args, batches, mlp, optimizer_step, seed_everything
from .data import dynamic_binarize, load_idx_dataset, load_ssvae_splits

__all__ = ["SSVAE", "load_mnist_splits", "main"]

METHODS = ("dense", "sparsemax", "topk_sparsemax", "sfe", "sfe_plus", "nvil", "gumbel", "st_gumbel", "sum_and_sample")
SPARSE_FAMILY = ("sparsemax", "topk_sparsemax")


class SSVAE(nn.Module):
    """M2: classifier q(y|x), Gaussian encoder q(h|x,y), Bernoulli decoder p(x|y,h), NVIL baseline b(x)."""

    def __init__(self, n_classes: int = 10, latent_dim: int = 16, hidden: int = 256, pixels: int = 784):
        super().__init__()
        self.n_classes = n_classes
        self.classifier = mlp(pixels, hidden, hidden, n_classes)
        self.encoder = mlp(pixels + n_classes, hidden, 2 * latent_dim)
        self.decoder = mlp(latent_dim + n_classes, hidden, pixels)
        self.baseline = mlp(pixels, 64, 1)

    def neg_elbo(self, x: Tensor, y: Tensor) -> Tensor:
        """−ELBO(x, y) = E_q(h|x,y)[−log p(x|y,h)] + KL(q(h|x,y) ‖ N(0, I)), one reparameterised h."""
        mean, logvar = self.encoder(torch.cat([x, y], -1)).chunk(2, -1)
        h = mean + torch.randn_like(mean) * (0.5 * logvar).exp()
        logits = self.decoder(torch.cat([h, y], -1))
        recon = F.binary_cross_entropy_with_logits(logits, x, reduction="none").sum(-1)
        kl = 0.5 * (mean.pow(2) + logvar.exp() - 1 - logvar).sum(-1)
        return recon + kl


def load_mnist_splits() -> dict:
    """The paper's MNIST splits as float tensors in [0, 1]: labelled, unlabelled, validation, test."""
    train_x, train_y, test_x, test_y = load_idx_dataset("mnist")
    splits = load_ssvae_splits()
    tx = torch.from_numpy(train_x.reshape(-1, 784)).float() / 255
    ty = torch.from_numpy(train_y.astype("int64"))
    out = {name: (tx[torch.from_numpy(idx)], ty[torch.from_numpy(idx)]) for name, idx in splits.items()}
    out["test"] = (torch.from_numpy(test_x.reshape(-1, 784)).float() / 255, torch.from_numpy(test_y.astype("int64")))
    return out


def classification_loss(scores: Tensor, labels: Tensor, sparse: bool) -> Tensor:
    """Sparsemax loss for sparse q(y|x) (log q can be −∞), cross-entropy otherwise."""
    return sparsemax_loss(scores, labels) if sparse else F.cross_entropy(scores, labels, reduction="none")


@torch.no_grad()
def accuracy(model: SSVAE, x: Tensor, y: Tensor) -> float:
    model.eval()
    pred = torch.cat([model.classifier(chunk).argmax(-1) for chunk in x.split(2000)])
    model.train()
    return float((pred == y).float().mean()) * 100


def labelled_loss(model: SSVAE, x: Tensor, y: Tensor, alpha: float, sparse: bool) -> Tensor:
    onehot = F.one_hot(y, model.n_classes).float()
    return model.neg_elbo(x, onehot) + alpha * classification_loss(model.classifier(x), y, sparse)


def warmstart(args: argparse.Namespace) -> Path:
    """Train on the labelled split only (−ELBO + α·classification), for one normaliser family."""
    gen = seed_everything(args.seed, args.threads)
    data = load_mnist_splits()
    model = SSVAE(latent_dim=args.latent_dim, hidden=args.hidden)
    opt = torch.optim.Adam(model.parameters(), lr=args.lr)
    lx, ly = data["labeled"]
    sparse = args.family == "sparse"
    for epoch in tqdm(range(args.epochs), desc=f"warm start ({args.family})", disable=args.no_progress):
        for idx in batches(len(lx), args.batch_size, gen):
            optimizer_step(opt, labelled_loss(model, dynamic_binarize(lx[idx], gen), ly[idx], args.alpha, sparse).mean())
    path = args.out / f"warmstart_{args.family}.pt"
    args.out.mkdir(parents=True, exist_ok=True)
    torch.save(model.state_dict(), path)
    print(f"warm start ({args.family}): validation accuracy {accuracy(model, *data['validation']):.2f}% -> {path}")
    return path


def train(args: argparse.Namespace) -> Path:
    """Train one method from the warm start; record accuracy and decoder calls per unlabelled example."""
    gen = seed_everything(args.seed, args.threads)
    data = load_mnist_splits()
    model = SSVAE(latent_dim=args.latent_dim, hidden=args.hidden)
    if args.warm_start is not None:
        model.load_state_dict(torch.load(args.warm_start, weights_only=True))
    opt = torch.optim.Adam(model.parameters(), lr=args.lr)
    est = build_estimator(args.method, "categorical", k=args.k, temperature=args.temperature)
    sparse = args.method in SPARSE_FAMILY
    record = RunRecord("ssvae", args)
    ux, lx, ly = data["unlabeled"][0], *data["labeled"]
    steps_per_epoch = math.ceil(len(ux) / args.batch_size)
    total = steps_per_epoch * args.epochs if not args.max_steps else min(args.max_steps, steps_per_epoch * args.epochs)
    step, calls = 0, DecoderCalls()
    record.log(step=0, val_accuracy=accuracy(model, *data["validation"]))
    bar = tqdm(total=total, desc=f"ssvae {args.method} seed {args.seed}", disable=args.no_progress)
    labelled = iter(())
    while step < total:
        for idx in batches(len(ux), args.batch_size, gen):
            try:
                lidx = next(labelled)
            except StopIteration:
                labelled = batches(len(lx), args.batch_size, gen)
                lidx = next(labelled)
            xu = dynamic_binarize(ux[idx], gen)
            out = est(model.classifier(xu), lambda rows, y: model.neg_elbo(xu[rows], y),
                      baseline=model.baseline(xu).squeeze(-1))
            unsup = out.objective + (math.log(model.n_classes) - out.entropy)
            sup = labelled_loss(model, dynamic_binarize(lx[lidx], gen), ly[lidx], args.alpha, sparse)
            loss = unsup.mean() + sup.mean()
            optimizer_step(opt, loss)
            step += 1
            calls.add(out.decoder_calls, len(idx))
            bar.update(1)
            if step % args.eval_every == 0 or step == total:
                val = accuracy(model, *data["validation"])
                recent = calls.recent()
                record.log(step=step, val_accuracy=val, decoder_calls=recent, loss=loss.item())
                bar.set_postfix(val=f"{val:.2f}", calls=f"{recent:.2f}")
            if step >= total:
                break
    bar.close()
    final = dict(test_accuracy=accuracy(model, *data["test"]), val_accuracy=accuracy(model, *data["validation"]),
                 decoder_calls=calls.overall, decoder_calls_last=calls.last(100), steps=step)
    path = record.finish(args.out, **final)
    print(f"{args.method} seed {args.seed}: test accuracy {final['test_accuracy']:.2f}%, "
          f"decoder calls/example {final['decoder_calls']:.2f} -> {path}")
    return path


def _parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    sub = parser.add_subparsers(dest="command", required=True)
    ws = sub.add_parser("warmstart", help="train on the labelled split only")
    ws.add_argument("--family", choices=("softmax", "sparse"), required=True)
    ws.add_argument("--seed", type=int, default=0)
    ws.add_argument("--epochs", type=int, default=10)
    ws.add_argument("--batch-size", type=int, default=64)
    ws.add_argument("--lr", type=float, default=1e-3)
    ws.add_argument("--threads", type=int, default=1)
    ws.add_argument("--out", type=Path, required=True)
    ws.add_argument("--no-progress", action="store_true")
    tr = sub.add_parser("train", help="train one method on labelled + unlabelled data")
    add_common_args(tr, METHODS)
    tr.add_argument("--warm-start", type=Path, default=None)
    tr.add_argument("--k", type=int, default=None, help="top-k sparsemax k (default 10) / sum-and-sample k (default 1)")
    tr.add_argument("--temperature", type=float, default=1.0)
    tr.add_argument("--eval-every", type=int, default=100)
    for p in (ws, tr):
        p.add_argument("--alpha", type=float, default=10.0, help="weight of the labelled classification loss")
        p.add_argument("--latent-dim", type=int, default=16)
        p.add_argument("--hidden", type=int, default=256)
    return parser


def main(argv: Optional[Sequence[str]] = None) -> None:
    args = _parser().parse_args(argv)
    if args.command == "warmstart":
        warmstart(args)
    else:
        train(args)


if __name__ == "__main__":
    main()
