"""A thin wrapper around ``fairseq-preprocess --joined-dictionary`` that checks its inputs."""
from __future__ import annotations

import os
import shutil
import subprocess
import sys
from pathlib import Path
from typing import Callable, Sequence

from . import DataError
from .atomic import atomic_dir
from .text_lines import check_parallel

SPLITS_FILE = "splits.tsv"


def preprocess_command() -> list[str]:
    """``fairseq-preprocess`` beside this Python, on PATH, or as a module."""
    beside = Path(sys.executable).parent / "fairseq-preprocess"
    if beside.is_file():
        return [str(beside)]
    found = shutil.which("fairseq-preprocess")
    return [found] if found else [sys.executable, "-m", "fairseq_cli.preprocess"]


def fairseq_subsets(tests: Sequence[str]) -> list[str]:
    """fairseq's names for the test prefixes given to ``--testpref`` in this order."""
    return ["test" if i == 0 else f"test{i}" for i in range(len(tests))]


def binarize(src: str, tgt: str, train: str, valid: str, tests: Sequence[tuple[str, str]],
             destdir: str | os.PathLike, workers: int = 1, extra: Sequence[str] = (),
             log: Callable[[str], None] = print) -> Path:
    """Binarise ``<prefix>.<src|tgt>`` files into ``destdir`` with one joined dictionary.

    ``tests`` is a list of (name, prefix). Every pair of files is validated first. The
    folder appears only when fairseq-preprocess succeeds; ``destdir/splits.tsv`` maps
    fairseq's subset names (valid, test, test1, ...) to ours and their line counts.
    """
    rows = [("train", "train", train), ("valid", "valid", valid)]
    rows += [(subset, name, prefix) for subset, (name, prefix) in zip(fairseq_subsets([n for n, _ in tests]), tests)]
    counts = {subset: check_parallel(f"{prefix}.{src}", f"{prefix}.{tgt}") for subset, _, prefix in rows}
    destdir = Path(destdir)
    with atomic_dir(destdir) as tmp:
        command = preprocess_command() + [
            "--source-lang", src, "--target-lang", tgt,
            "--trainpref", train, "--validpref", valid,
            "--destdir", str(tmp), "--joined-dictionary", "--workers", str(workers),
        ]
        if tests:
            command += ["--testpref", ",".join(prefix for _, prefix in tests)]
        command += list(extra)
        log("+ " + " ".join(command))
        result = subprocess.run(command)
        if result.returncode != 0:
            raise DataError(f"fairseq-preprocess failed (exit {result.returncode}); "
                            f"nothing written to {destdir}")
        with open(tmp / SPLITS_FILE, "w", encoding="utf-8") as handle:
            for subset, name, _ in rows:
                handle.write(f"{subset}\t{name}\t{counts[subset]}\n")
    log(f"binarised {', '.join(f'{n} ({counts[s]})' for s, n, _ in rows)} -> {destdir}")
    return destdir


def read_splits(destdir: str | os.PathLike) -> dict[str, tuple[str, int]]:
    """{our split name: (fairseq subset, line count)} from a binarised folder."""
    path = Path(destdir) / SPLITS_FILE
    if not path.is_file():
        raise DataError(f"{path}: no such file (run the binarise stage)")
    table = {}
    for line in path.read_text(encoding="utf-8").splitlines():
        subset, name, count = line.split("\t")
        table[name] = (subset, int(count))
    return table
