"""Real post-editing triplets: MLQE-PE (downloaded) and the WMT APE sets (a user's folder).

- MLQE-PE (Fomicheva et al. 2022, CC0): Wikipedia sentences, NMT output and post-edits,
  7,000 train / 1,000 dev / 1,000 test20 triplets per language pair, tokenised. The tarballs
  come from ``$DATA_MIRROR/mlqe-pe`` or GitHub, sha256-checked (:mod:`data_prep.download`).
- WMT16–18 APE En-De (the data of Correia & Martins, ACL 2019) sit behind a form: users
  download them and point the recipe at a folder holding ``{train,dev,test}.{src,mt,pe}``.
"""
from __future__ import annotations

import contextlib
import os
from pathlib import Path
from typing import Callable, Iterator

from .. import DataError
from ..atomic import all_or_nothing
from ..corpora import Archive
from ..download import fetch_all
from ..extract import open_member
from ..text_lines import decode_lines, read_aligned
from .triplets import SIDES, Triplet, check_triplets, copy_checked, empty_side, write_triplets

MLQE_URL = "https://github.com/sheffieldnlp/mlqe-pe/raw/master/data/post-editing/{split}/{name}"
MLQE_SHA256 = {
    "en-de-train.tar.gz": "219cdfd4e1d89d47e6136651af5136e3942ee93b4c9c44354b232baa18c75731",
    "en-de-dev.tar.gz": "7ca5e97c00e9733ba97aa70ca03c1ac9840ececcc4a09900262027912d432c4c",
    "en-de-test.tar.gz": "78d136444c9e50c189c35dc898c4b9580ccd057121bc3349cb3df5f56a943457",
    "en-zh-train.tar.gz": "9aee7f258d9a7050a6f46851ff37c6cfe4efd074a57fd692af832f2d8c864d5c",
    "en-zh-dev.tar.gz": "85b266c54c5770487f9213293bf871f1d6cfba31df9994fede78252af267b775",
    "en-zh-test.tar.gz": "31dad3bdaa3fd051e310202c188386d4dae53d78244fe750f3a48f3ab513d296",
}
# our split name -> (archive split, folder and file stem inside the tarball)
MLQE_SPLITS = {"train": ("train", "{pair}-train/train"), "dev": ("dev", "{pair}-dev/dev"),
               "test20": ("test", "{pair}-test20/test20")}
MLQE_PAIRS = ("en-de", "en-zh")
WMT_SPLITS = ("train", "dev", "test")


def mlqe_archives(pair: str) -> list[Archive]:
    """The three MLQE-PE post-editing tarballs of a language pair."""
    if pair not in MLQE_PAIRS:
        raise DataError(f"unknown MLQE-PE pair {pair!r}; known: {', '.join(MLQE_PAIRS)}")
    archives = []
    for split, _ in MLQE_SPLITS.values():
        name = f"{pair}-{split}.tar.gz"
        archives.append(Archive(name, MLQE_URL.format(split=split, name=name), MLQE_SHA256[name],
                                f"mlqe-pe/{name}"))
    return archives


def _member_triplets(archive: Path, stem: str) -> Iterator[Triplet]:
    with contextlib.ExitStack() as stack:
        readers = []
        for side in SIDES:
            member = f"{stem}.{side}"
            handle = stack.enter_context(open_member(archive, member))
            readers.append(decode_lines(handle, f"{archive}:{member}"))
        labels = [f"{archive}:{stem}.{side}" for side in SIDES]
        for number, lines in enumerate(read_aligned(readers, labels), start=1):
            triplet = (lines[0], lines[1], lines[2])
            side = empty_side(triplet)  # type: ignore[arg-type]
            if side is not None:
                raise DataError(f"{archive}:{stem}.{side}:{number}: empty line")
            yield triplet  # type: ignore[misc]


def prepare_mlqe_pe(pair: str, downloads: str | os.PathLike, out_dir: str | os.PathLike,
                    mirror: str | os.PathLike | None = None,
                    log: Callable[[str], None] = print) -> dict[str, int]:
    """Fetch a pair's tarballs and write ``out_dir/{train,dev,test20}.{src,mt,pe}``."""
    archives = fetch_all(mlqe_archives(pair), downloads, mirror, log=log)
    counts = {}
    with all_or_nothing():  # every split, or none replaced
        for (split, (_, stem)), archive in zip(MLQE_SPLITS.items(), archives):
            counts[split] = write_triplets(Path(out_dir) / split,
                                           _member_triplets(archive, stem.format(pair=pair)))
            log(f"MLQE-PE {pair} {split}: {counts[split]} triplets -> {Path(out_dir) / split}.*")
    return counts


def import_folder(folder: str | os.PathLike, out_dir: str | os.PathLike,
                  splits: tuple[str, ...] = WMT_SPLITS,
                  log: Callable[[str], None] = print) -> dict[str, int]:
    """Validate ``folder/<split>.{src,mt,pe}`` (e.g. WMT16–18 APE) and copy into ``out_dir``.

    Every split is checked before anything is written.
    """
    folder = Path(folder)
    if not folder.is_dir():
        raise DataError(f"{folder}: no such folder (download the WMT APE data and put "
                        f"{', '.join(f'{s}.{{src,mt,pe}}' for s in splits)} in it)")
    counts = {split: check_triplets(folder / split) for split in splits}
    with all_or_nothing():
        for split in splits:
            copy_checked(folder / split, Path(out_dir) / split)
            log(f"{split}: {counts[split]} triplets -> {Path(out_dir) / split}.*")
    return counts
