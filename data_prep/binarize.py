"""A thin wrapper around ``fairseq-preprocess --joined-dictionary`` that checks its inputs."""
from __future__ import annotations

import contextlib
import os
import shutil
import signal
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


def _descendants(pid: int) -> list[int]:
    """Every process started by ``pid``, its children first (read from /proc; [] elsewhere)."""
    children: dict[int, list[int]] = {}
    for stat in Path("/proc").glob("[0-9]*/stat"):
        try:
            fields = stat.read_text().rsplit(")", 1)[1].split()
        except (OSError, IndexError):
            continue
        children.setdefault(int(fields[1]), []).append(int(stat.parent.name))
    found, queue = [], [pid]
    while queue:
        for child in children.get(queue.pop(), []):
            found.append(child)
            queue.append(child)
    return found


def run_to_the_end(command: Sequence[str]) -> int:
    """Run ``command`` and return its exit status. When this process is stopped meanwhile
    (SIGTERM raises SystemExit, Ctrl-C KeyboardInterrupt), the command and every process it
    started (fairseq-preprocess's workers) are stopped too before the exception goes on."""
    process = subprocess.Popen(command)
    try:
        return process.wait()
    except BaseException:
        for pid in [process.pid] + _descendants(process.pid):
            with contextlib.suppress(ProcessLookupError):
                os.kill(pid, signal.SIGTERM)
        try:
            process.wait(timeout=10)
        except subprocess.TimeoutExpired:
            process.kill()
            process.wait()
        raise


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
        returncode = run_to_the_end(command)
        if returncode != 0:
            raise DataError(f"fairseq-preprocess failed (exit {returncode}); "
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
