"""MNIST, Fashion-MNIST and the semi-supervised VAE splits, from a mirror or upstream, checked.

Files are read in place from a mirror folder, ``<mirror>/<dataset>/<file>`` — the ``mirror``
argument, default ``$DATA_MIRROR``. Without a mirror, or when it lacks a file, the file is
downloaded once from the upstream address recorded in :data:`UPSTREAM` into ``cache``
(default ``$XDG_CACHE_HOME/sparse_seq2seq``). idx files are checked by the md5 of their
*decompressed* bytes (mirrors may recompress them), the split files by sha256; both through
:func:`sparse_seq2seq.download.fetch`.
"""
from __future__ import annotations

import gzip
import os
from pathlib import Path
from typing import Dict, Optional, Tuple

import numpy as np
import torch

from ...download import Checksum, fetch, mirror_from_env

__all__ = ["data_root", "load_idx_dataset", "load_ssvae_splits", "dynamic_binarize", "UPSTREAM"]

IDX_FILES = ("train-images-idx3-ubyte", "train-labels-idx1-ubyte", "t10k-images-idx3-ubyte", "t10k-labels-idx1-ubyte")
UPSTREAM = {
    "mnist": "https://ossci-datasets.s3.amazonaws.com/mnist/{name}",
    "fashion-mnist": "http://fashion-mnist.s3-website.eu-central-1.amazonaws.com/{name}",
    "ssvae-splits": "https://raw.githubusercontent.com/deep-spin/sparse-marginalization-lvm/master/"
                    "data/semi_supervised-vae/test_train_splits/{name}",
}
DECOMPRESSED_MD5: Dict[str, Dict[str, str]] = {
    "mnist": {
        "train-images-idx3-ubyte": "6bbc9ace898e44ae57da46a324031adb",
        "train-labels-idx1-ubyte": "a25bea736e30d166cdddb491f175f624",
        "t10k-images-idx3-ubyte": "2646ac647ad5339dbf082846283269ea",
        "t10k-labels-idx1-ubyte": "27ae3e4e09519cfbb04c329615203637",
    },
    "fashion-mnist": {
        "train-images-idx3-ubyte": "f4a8712d7a061bf5bd6d2ca38dc4d50a",
        "train-labels-idx1-ubyte": "9018921c3c673c538a1fc5bad174d6f9",
        "t10k-images-idx3-ubyte": "8181f5470baa50b63fa0f6fddb340f0a",
        "t10k-labels-idx1-ubyte": "15d484375f8d13e6eb1aabb0c3f46965",
    },
}
SPLIT_SHA256 = {
    "labeled_train_indx.npy": "b223e21a0c6602df165494116112086fc430a6db9dc5567166060283f08c070a",
    "unlabeled_train_indx.npy": "b3acf09c73ccb1006006aeb109692c132f38e72d9afd0c4d8566f96d3aa741c7",
    "validation_indx.npy": "9b67a1579d2fa1da2f9f10331383fe40baae2cd6cea8bc9fe25dd0987cbc7ac0",
}


def data_root() -> Optional[Path]:
    """The mirror folder named by ``$DATA_MIRROR`` (relative to the current folder), else None."""
    return mirror_from_env()


def _cache_dir() -> Path:
    return Path(os.environ.get("XDG_CACHE_HOME", Path.home() / ".cache")) / "sparse_seq2seq"


def upstream_url(dataset: str, filename: str) -> str:
    """The recorded upstream address of ``dataset/filename``."""
    return UPSTREAM[dataset].format(name=filename)


def _fetch(dataset: str, filename: str, checksum: Optional[Checksum], mirror: Optional[Path],
           cache: Optional[Path]) -> Path:
    """Path of ``dataset/filename``: the mirror's own file, else a download into the cache."""
    return fetch(filename, upstream_url(dataset, filename), (cache or _cache_dir()) / dataset,
                 mirror=mirror, mirror_path=f"{dataset}/{filename}", checksum=checksum,
                 allow_unverified=checksum is None, in_place=True)


def _read_idx(raw: bytes) -> np.ndarray:
    """Parse an idx file: magic (2 zero bytes, dtype 0x08, ndim), big-endian dims, uint8 data."""
    if raw[:3] != b"\x00\x00\x08":
        raise ValueError("not an unsigned-byte idx file")
    ndim = raw[3]
    dims = np.frombuffer(raw, dtype=">u4", count=ndim, offset=4).astype(int)
    data = np.frombuffer(raw, dtype=np.uint8, offset=4 + 4 * ndim)
    return data.reshape(tuple(dims)).copy()


def load_idx_dataset(dataset: str, verify: bool = True, mirror: Optional[Path] = None,
                     cache: Optional[Path] = None) -> Tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray]:
    """(train_images, train_labels, test_images, test_labels) of 'mnist' or 'fashion-mnist'.

    Images are uint8 arrays of shape (N, 28, 28); labels uint8 (N,). ``mirror`` defaults to
    ``$DATA_MIRROR``; a file that does not match its md5 raises
    :class:`~sparse_seq2seq.download.DownloadError` (a ``ValueError``) naming it."""
    if dataset not in DECOMPRESSED_MD5:
        raise ValueError(f"unknown dataset {dataset!r}")
    mirror = mirror if mirror is not None else data_root()
    arrays = []
    for name in IDX_FILES:
        checksum = Checksum(DECOMPRESSED_MD5[dataset][name], "md5", decompressed=True) if verify else None
        path = _fetch(dataset, name + ".gz", checksum, mirror, cache)
        arrays.append(_read_idx(gzip.decompress(path.read_bytes())))
    return tuple(arrays)  # type: ignore[return-value]


def load_ssvae_splits(verify: bool = True, mirror: Optional[Path] = None,
                      cache: Optional[Path] = None) -> Dict[str, np.ndarray]:
    """The paper's MNIST-train index splits: 'labeled' (5,000), 'unlabeled' (45,000), 'validation' (10,000)."""
    mirror = mirror if mirror is not None else data_root()
    out = {}
    for key, filename in (("labeled", "labeled_train_indx.npy"), ("unlabeled", "unlabeled_train_indx.npy"),
                          ("validation", "validation_indx.npy")):
        checksum = Checksum(SPLIT_SHA256[filename]) if verify else None
        path = _fetch("ssvae-splits", filename, checksum, mirror, cache)
        out[key] = np.load(path).astype(np.int64).reshape(-1)
    return out


def dynamic_binarize(images: torch.Tensor, generator: Optional[torch.Generator] = None) -> torch.Tensor:
    """Bernoulli sample of pixel intensities in [0, 1] (dynamic binarisation, resampled every use)."""
    return torch.bernoulli(images, generator=generator)
