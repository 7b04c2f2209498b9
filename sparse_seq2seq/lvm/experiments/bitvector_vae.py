"""Bit-vector VAE on Fashion-MNIST: z ∈ {0,1}^D with a uniform prior (Correia et al. 2020, §5.3).

Encoder scores η(x) ∈ R^D define π(z|x): Bernoulli(σ(η)) for the sampling baselines, SparseMAP or
top-k sparsemax over structures scored by ηᵀz for the sparse methods. The loss is the negative ELBO

    E_{π(z|x)}[−log p(x|z)] + KL(π(·|x) ‖ Uniform{0,1}^D) = E_π[−log p(x|z)] − H(π) + D log 2,   (paper eq. 9)

with the expectation handled by the estimator. Evaluation: negative log-likelihood in bits per
dimension by importance sampling with 1024 samples from a defensive proposal
r = ½ π(·|x) + ½ Π_i Bernoulli(clip(μ_i, 0.05, 0.95)), μ the marginals of π (r has full support,
so the estimate is valid for sparse π too).

    python -m sparse_seq2seq.lvm.experiments.bitvector_vae --method sparsemap --latent-dim 32 --epochs 1 \
        --seed 1 --out exp/lvm_bitvector/d32
"""
from __future__ import annotations

import argparse
import math
from pathlib import Path
from typing import Optional, Sequence, Tuple

import torch
import torch.nn.functional as F
from torch import Tensor, nn
from tqdm import tqdm

from ...mappings import sparsemax
from ...sparsemap import ENCODINGS, sparsemap_bitvector
from ..estimators import build_estimator
from ..spaces import kbest_bitvectors
from .common import DecoderCalls, RunRecord, add_common_args, batches, mlp, optimizer_step, seed_everything
from .data import dynamic_binarize, load_idx_dataset

__all__ = ["BitVectorVAE", "posterior", "importance_sampled_nll", "main"]

METHODS = ("topk_sparsemax", "sparsemap", "sparsemap_budget", "sfe", "sfe_plus", "nvil", "gumbel", "st_gumbel",
           "sum_and_sample")
LOG2 = math.log(2.0)


class BitVectorVAE(nn.Module):
    """MLP encoder x → η ∈ R^D, MLP decoder z → Bernoulli pixel logits, NVIL baseline b(x)."""

    def __init__(self, latent_dim: int, hidden: int = 256, pixels: int = 784):
        super().__init__()
        self.latent_dim = latent_dim
        self.encoder = mlp(pixels, hidden, latent_dim)
        self.decoder = mlp(latent_dim, hidden, pixels)
        self.baseline = mlp(pixels, 64, 1)

    def neg_log_lik(self, x: Tensor, z: Tensor) -> Tensor:
        """−log p(x | z), summed over pixels."""
        return F.binary_cross_entropy_with_logits(self.decoder(z), x, reduction="none").sum(-1)


def posterior(method: str, eta: Tensor, k: int, budget: int,
              encoding: str = "states") -> Optional[Tuple[Tensor, Tensor]]:
    """The sparse π(z|x) of a sparse method as (probs (B, C), structures (B, C, D)); None for Bernoulli π."""
    if method == "sparsemap":
        res = sparsemap_bitvector(eta, encoding=encoding)
        return res.probs, res.structures
    if method == "sparsemap_budget":
        res = sparsemap_bitvector(eta, budget=budget, encoding=encoding)
        return res.probs, res.structures
    if method == "topk_sparsemax":
        structures = kbest_bitvectors(eta, k)
        return sparsemax((structures * eta.unsqueeze(1)).sum(-1), dim=-1), structures
    return None


@torch.no_grad()
def importance_sampled_nll(model: BitVectorVAE, x: Tensor, method: str, k: int, budget: int,
                           samples: int, generator: torch.Generator, encoding: str = "states") -> Tensor:
    """−log p(x) per example (nats), by importance sampling from the defensive proposal r."""
    eta = model.encoder(x)
    sparse = posterior(method, eta, k, budget, encoding)
    dim = model.latent_dim
    out = []
    for i in range(x.shape[0]):
        if sparse is None:
            mu = torch.sigmoid(eta[i])
        else:
            probs, structs = sparse[0][i], sparse[1][i]
            mu = probs @ structs
        smooth = mu.clamp(0.05, 0.95)
        from_pi = torch.rand(samples, generator=generator) < 0.5
        z = torch.bernoulli(smooth.expand(samples, dim), generator=generator)
        if sparse is None:
            z_pi = torch.bernoulli(mu.expand(samples, dim), generator=generator)
        else:
            z_pi = structs[torch.multinomial(probs, samples, replacement=True, generator=generator)]
        z = torch.where(from_pi.unsqueeze(1), z_pi, z)
        log_b = (z * smooth.log() + (1 - z) * (-smooth).log1p()).sum(-1)
        if sparse is None:
            log_pi = -F.binary_cross_entropy_with_logits(eta[i].expand(samples, dim), z, reduction="none").sum(-1)
        else:
            match = (z.unsqueeze(1) == structs.unsqueeze(0)).all(-1).to(probs.dtype)  # (S, C)
            q = match @ probs
            log_pi = torch.where(q > 0, q.clamp_min(1e-300).log(), torch.full_like(q, float("-inf")))
        log_r = torch.logaddexp(log_pi, log_b) - LOG2
        log_w = -model.neg_log_lik(x[i].expand(samples, -1), z) - dim * LOG2 - log_r
        out.append(-(torch.logsumexp(log_w, 0) - math.log(samples)))
    return torch.stack(out)


@torch.no_grad()
def elbo_parts(model: BitVectorVAE, x: Tensor, method: str, k: int, budget: int, samples: int,
               generator: torch.Generator, encoding: str = "states") -> dict:
    """The negative ELBO's two terms per image, in nats: reconstruction E_π[−log p(x|z)] and
    KL(π ‖ uniform) = D log 2 − H(π), with H(π) the posterior's entropy.

    Sparse posteriors are summed exactly over their support; Bernoulli posteriors (the sampling
    and relaxation baselines) use ``samples`` draws for the reconstruction and H in closed form.
    """
    eta = model.encoder(x)
    sparse = posterior(method, eta, k, budget, encoding)
    if sparse is None:
        q = torch.sigmoid(eta)
        entropy = F.binary_cross_entropy(q, q, reduction="none").sum(-1)
        z = torch.bernoulli(q.unsqueeze(1).expand(-1, samples, -1), generator=generator)
        recon = model.neg_log_lik(x.unsqueeze(1).expand(-1, samples, -1), z).mean(1)
    else:
        probs, structures = sparse
        recon = (probs * model.neg_log_lik(x.unsqueeze(1).expand(-1, probs.shape[1], -1), structures)).sum(1)
        entropy = -torch.xlogy(probs, probs).sum(1)
    return {"recon": recon, "entropy": entropy, "kl": model.latent_dim * LOG2 - entropy}


def load_fashion(train_size: int) -> Tuple[Tensor, Tensor]:
    train_x, _, test_x, _ = load_idx_dataset("fashion-mnist")
    tx = torch.from_numpy(train_x.reshape(-1, 784)).float() / 255
    return (tx[:train_size] if train_size else tx), torch.from_numpy(test_x.reshape(-1, 784)).float() / 255


def train(args: argparse.Namespace) -> Path:
    gen = seed_everything(args.seed, args.threads)
    train_x, test_x = load_fashion(args.train_size)
    eval_x = torch.bernoulli(test_x[: args.eval_size], generator=torch.Generator().manual_seed(0))
    model = BitVectorVAE(args.latent_dim, args.hidden)
    opt = torch.optim.Adam(model.parameters(), lr=args.lr)
    est = build_estimator(args.method, "bitvector", k=args.k, budget=args.budget, temperature=args.temperature,
                          encoding=args.sparsemap_encoding)
    record = RunRecord("bitvector_vae", args)
    steps_per_epoch = math.ceil(len(train_x) / args.batch_size)
    total = steps_per_epoch * args.epochs
    total = min(total, args.max_steps) if args.max_steps else total
    step, calls, losses = 0, DecoderCalls(), []
    bar = tqdm(total=total, desc=f"bitvector D={args.latent_dim} {args.method} seed {args.seed}", disable=args.no_progress)
    while step < total:
        for idx in batches(len(train_x), args.batch_size, gen):
            x = dynamic_binarize(train_x[idx], gen)
            out = est(model.encoder(x), lambda rows, z: model.neg_log_lik(x[rows], z),
                      baseline=model.baseline(x).squeeze(-1))
            kl = args.latent_dim * LOG2 - out.entropy
            loss = (out.objective + kl).mean()
            optimizer_step(opt, loss)
            step += 1
            calls.add(out.decoder_calls, len(idx))
            losses.append(float((out.loss + kl.detach()).mean()))
            bar.update(1)
            if step % args.eval_every == 0 or step == total:
                neg_elbo = sum(losses) / len(losses) / (784 * LOG2)
                recent = calls.recent()
                record.log(step=step, train_neg_elbo_bpd=neg_elbo, decoder_calls=recent)
                bar.set_postfix(nelbo_bpd=f"{neg_elbo:.3f}", calls=f"{recent:.1f}")
                losses = []
            if step >= total:
                break
    bar.close()
    model.eval()
    evaluation = (model, eval_x, args.method, args.k or 10, args.budget)

    def bits_per_dim(nats: Tensor) -> float:
        return float(nats.mean()) / (784 * LOG2)

    def nll_bpd(samples: int) -> float:
        return bits_per_dim(importance_sampled_nll(*evaluation, samples, torch.Generator().manual_seed(args.seed),
                                                   args.sparsemap_encoding))

    bpd = nll_bpd(args.is_samples)
    final = dict(nll_bpd=bpd, decoder_calls=calls.overall, decoder_calls_last=record.data["curve"][-1]["decoder_calls"],
                 steps=step, eval_images=int(eval_x.shape[0]))
    parts = elbo_parts(*evaluation, 64, torch.Generator().manual_seed(args.seed), args.sparsemap_encoding)
    final.update(elbo_recon_bpd=bits_per_dim(parts["recon"]), elbo_kl_bpd=bits_per_dim(parts["kl"]),
                 posterior_entropy_bits=float(parts["entropy"].mean()) / LOG2)
    for samples in args.is_check_samples:  # how far the estimate still moves with more samples
        final[f"nll_bpd_{samples}_samples"] = nll_bpd(samples)
        print(f"NLL with {samples} IS samples: {final[f'nll_bpd_{samples}_samples']:.4f} bits/dim")
    path = record.finish(args.out, **final)
    print(f"D={args.latent_dim} {args.method} seed {args.seed}: NLL {bpd:.4f} bits/dim "
          f"({args.is_samples} IS samples, {eval_x.shape[0]} test images), decoder calls/example "
          f"{final['decoder_calls']:.2f} -> {path}")
    return path


def _parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    add_common_args(parser, METHODS)
    parser.add_argument("--latent-dim", type=int, default=32, help="D, bits per latent vector")
    parser.add_argument("--hidden", type=int, default=256)
    parser.add_argument("--k", type=int, default=None, help="top-k sparsemax k (default 10) / sum-and-sample k (default 1)")
    parser.add_argument("--budget", type=int, default=None, help="SparseMAP budget B, ‖z‖₁ <= B (default D/4)")
    parser.add_argument("--temperature", type=float, default=1.0)
    parser.add_argument("--sparsemap-encoding", choices=ENCODINGS, default="states",
                        help="SparseMAP's structure vector: states ([z; 1-z], the paper's factor; "
                             "mu = clip((eta+1)/2)) or bits (z; mu = clip(eta))")
    parser.add_argument("--train-size", type=int, default=0, help="use the first N training images (0: all 60,000)")
    parser.add_argument("--eval-size", type=int, default=10000, help="test images for the importance-sampled NLL")
    parser.add_argument("--is-samples", type=int, default=1024)
    parser.add_argument("--is-check-samples", type=int, nargs="*", default=[],
                        help="also estimate the NLL with these sample counts (recorded as nll_bpd_<N>_samples)")
    parser.add_argument("--eval-every", type=int, default=50)
    return parser


def main(argv: Optional[Sequence[str]] = None) -> None:
    args = _parser().parse_args(argv)
    if args.budget is None:
        args.budget = max(1, args.latent_dim // 4)
    if args.k is None and args.method == "topk_sparsemax":
        args.k = 10
    train(args)


if __name__ == "__main__":
    main()
