"""Tiny real-data fixtures for the fairseq tests: a slice of Multi30k, lowercased and split
on whitespace, binarised with fairseq-preprocess."""
from __future__ import annotations

import gzip
import os
import subprocess
import sys
from pathlib import Path
from typing import List

REPO = Path(__file__).resolve().parents[1]
USER_DIR = str(REPO / "user_dir")
BIN = Path(sys.executable).parent
DATA_MIRROR = Path(os.environ.get("DATA_MIRROR", REPO.parent / "shared" / "data"))


def _lines(name: str, lang: str, count: int, skip: int = 0) -> List[str]:
    with gzip.open(DATA_MIRROR / "multi30k" / f"{name}.{lang}.gz", "rt", encoding="utf-8") as f:
        lines = [line.strip().lower() for _, line in zip(range(skip + count), f)][skip:]
    return [" ".join(line.replace(".", " .").replace(",", " ,").split()) for line in lines]


def make_corpus(root: Path, train: int = 300, valid: int = 16, test: int = 21) -> Path:
    """Write train/valid/test .de/.en under ``root/raw`` and binarise into ``root/bin``."""
    raw = root / "raw"
    raw.mkdir(parents=True, exist_ok=True)
    for split, name, count in (("train", "train", train), ("valid", "val", valid),
                               ("test", "test_2016_flickr", test)):
        for lang in ("de", "en"):
            (raw / f"{split}.{lang}").write_text("\n".join(_lines(name, lang, count)) + "\n",
                                                 encoding="utf-8")
    run([str(BIN / "fairseq-preprocess"), "--source-lang", "de", "--target-lang", "en",
         "--trainpref", str(raw / "train"), "--validpref", str(raw / "valid"),
         "--testpref", str(raw / "test"), "--destdir", str(root / "bin"),
         "--joined-dictionary", "--workers", "1"])
    return root / "bin"


def run(cmd: List[str], **kwargs) -> subprocess.CompletedProcess:
    """Run a command; on failure show its output in the assertion."""
    # the fused kernels are tested in test_fused.py; here they would only add compile time
    env = dict(os.environ, PYTHONWARNINGS="ignore", OMP_NUM_THREADS="1", SPARSE_SEQ2SEQ_FUSED="0")
    env.pop("TORCH_FORCE_NO_WEIGHTS_ONLY_LOAD", None)
    proc = subprocess.run(cmd, capture_output=True, text=True, env=env, **kwargs)
    assert proc.returncode == 0, f"{' '.join(cmd)}\n{proc.stdout[-3000:]}\n{proc.stderr[-5000:]}"
    return proc


TRAIN_FLAGS = ["--user-dir", USER_DIR, "--arch", "entmax_transformer_tiny",
               "--encoder-embed-dim", "32", "--encoder-ffn-embed-dim", "64",
               "--optimizer", "adam", "--lr", "1e-3", "--max-tokens", "1000", "--cpu",
               "--share-all-embeddings", "--no-epoch-checkpoints", "--disable-validation",
               "--seed", "1", "--num-workers", "0"]


def train(data_bin: Path, save_dir: Path, extra: List[str], updates: int = 4) -> subprocess.CompletedProcess:
    return run([str(BIN / "fairseq-train"), str(data_bin), *TRAIN_FLAGS, "--save-dir", str(save_dir),
                "--max-update", str(updates), "--log-interval", "1", "--log-format", "simple", *extra])
