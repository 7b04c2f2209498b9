"""Image feature matrices (``.npy``) for the emergent-communication game.

The paper's game uses ImageNet features, which cannot be obtained offline; this writes PCA
features of (Fashion-)MNIST instead: pixels in [0, 1], centred on the training mean, projected
on the top ``dim`` principal directions of the training set and scaled to unit average norm.

    python -m sparse_seq2seq.lvm.experiments.features --dataset fashion-mnist --dim 256 --out exp/lvm_emergent/features
"""
from __future__ import annotations

import argparse
from pathlib import Path
from typing import Optional, Sequence, Tuple

import numpy as np

from .data import load_idx_dataset

__all__ = ["pca_features", "main"]


def pca_features(train: np.ndarray, test: np.ndarray, dim: int) -> Tuple[np.ndarray, np.ndarray]:
    """Project flattened images on the top-``dim`` principal directions of ``train``."""
    x = train.reshape(len(train), -1).astype(np.float64) / 255
    y = test.reshape(len(test), -1).astype(np.float64) / 255
    mean = x.mean(0)
    cov = (x - mean).T @ (x - mean) / len(x)
    _, vecs = np.linalg.eigh(cov)
    basis = vecs[:, ::-1][:, :dim]
    ftr, fte = (x - mean) @ basis, (y - mean) @ basis
    scale = np.linalg.norm(ftr, axis=1).mean()
    return (ftr / scale).astype(np.float32), (fte / scale).astype(np.float32)


def main(argv: Optional[Sequence[str]] = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--dataset", choices=("mnist", "fashion-mnist"), default="fashion-mnist")
    parser.add_argument("--dim", type=int, default=256)
    parser.add_argument("--out", type=Path, required=True)
    args = parser.parse_args(argv)
    train_x, _, test_x, _ = load_idx_dataset(args.dataset)
    ftr, fte = pca_features(train_x, test_x, args.dim)
    args.out.mkdir(parents=True, exist_ok=True)
    np.save(args.out / "train.npy", ftr)
    np.save(args.out / "test.npy", fte)
    print(f"{args.dataset}: train {ftr.shape}, test {fte.shape} -> {args.out}")


if __name__ == "__main__":
    main()
