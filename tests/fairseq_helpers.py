"""Tiny real-data fixtures for the fairseq tests: a slice of Multi30k, lowercased and split
into words and punctuation (:mod:`data_prep.samples`), binarised with fairseq-preprocess."""
from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path
from typing import List, Tuple

from data_prep.samples import write_multi30k_sample

REPO = Path(__file__).resolve().parents[1]
USER_DIR = str(REPO / "user_dir")
BIN = Path(sys.executable).parent
DATA_MIRROR = Path(os.environ.get("DATA_MIRROR", REPO.parent / "shared" / "data"))


def _write_raw(root: Path, train: int, valid: int, test: int) -> Path:
    return write_multi30k_sample(DATA_MIRROR / "multi30k", root / "raw",
                                 {"train": train, "valid": valid, "test": test})


def _preprocess(text: Path, destdir: Path) -> Path:
    run([str(BIN / "fairseq-preprocess"), "--source-lang", "de", "--target-lang", "en",
         "--trainpref", str(text / "train"), "--validpref", str(text / "valid"),
         "--testpref", str(text / "test"), "--destdir", str(destdir),
         "--joined-dictionary", "--workers", "1"])
    return destdir


def make_corpus(root: Path, train: int = 300, valid: int = 16, test: int = 21) -> Path:
    """Write train/valid/test .de/.en under ``root/raw`` and binarise into ``root/bin``."""
    return _preprocess(_write_raw(root, train, valid, test), root / "bin")


def make_spm_corpus(root: Path, train: int = 300, valid: int = 16, test: int = 21,
                    vocab_size: int = 400) -> Tuple[Path, Path]:
    """As :func:`make_corpus`, encoded with a joint sentencepiece model trained on the training
    text first; returns (binarised data, ``root/spm/spm.model``)."""
    import sentencepiece

    raw = _write_raw(root, train, valid, test)
    spm = root / "spm"
    spm.mkdir(parents=True, exist_ok=True)
    sentencepiece.SentencePieceTrainer.train(
        input=f"{raw / 'train.de'},{raw / 'train.en'}", model_prefix=str(spm / "spm"),
        vocab_size=vocab_size, character_coverage=1.0, hard_vocab_limit=False, num_threads=1,
        minloglevel=2)
    model = sentencepiece.SentencePieceProcessor(model_file=str(spm / "spm.model"))
    for split in ("train", "valid", "test"):
        for lang in ("de", "en"):
            lines = (raw / f"{split}.{lang}").read_text(encoding="utf-8").splitlines()
            pieces = [" ".join(model.encode(line, out_type=str)) for line in lines]
            (spm / f"{split}.{lang}").write_text("\n".join(pieces) + "\n", encoding="utf-8")
    return _preprocess(spm, root / "bin"), spm / "spm.model"


def command_env(**extra: str) -> dict:
    """The environment of the commands the tests run: one thread, no fused kernels, and torch's
    safe unpickler left on."""
    # the fused kernels are tested in test_fused.py; here they would only add compile time
    env = dict(os.environ, PYTHONWARNINGS="ignore", OMP_NUM_THREADS="1", SPARSE_SEQ2SEQ_FUSED="0", **extra)
    env.pop("TORCH_FORCE_NO_WEIGHTS_ONLY_LOAD", None)
    return env


def run(cmd: List[str], **kwargs) -> subprocess.CompletedProcess:
    """Run a command; on failure show its output in the assertion."""
    proc = subprocess.run(cmd, capture_output=True, text=True, env=command_env(), **kwargs)
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
