"""Shared pieces of the data_prep tests (imported as ``data_prep_helpers``: pytest puts tests/
on the path): a real Multi30k sentence pair as plain files, and what a failed write left."""
from __future__ import annotations

from pathlib import Path

import pytest

from recipe_helpers import M30K, real_lines


@pytest.fixture
def pair(tmp_path: Path) -> tuple[Path, Path]:
    """The first 60 lines of Multi30k train (de, en) as plain files."""
    if not M30K.is_dir():
        pytest.skip("no Multi30k in DATA_MIRROR")
    src, tgt = tmp_path / "train.de", tmp_path / "train.en"
    src.write_text("\n".join(real_lines("train", "de", 60)) + "\n", encoding="utf-8")
    tgt.write_text("\n".join(real_lines("train", "en", 60)) + "\n", encoding="utf-8")
    return src, tgt


def leftovers(folder: Path) -> list[str]:
    """The temporary (``.partial``) names in ``folder``, sorted."""
    return sorted(p.name for p in folder.iterdir() if ".partial" in p.name)
