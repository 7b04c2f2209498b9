"""data_prep.samples: the Multi30k samples of the tests and benchmarks, from the real files."""
from __future__ import annotations

import gzip
import os
from pathlib import Path

import pytest

from data_prep import DataError
from data_prep.samples import MULTI30K_SPLITS, head, word_tokens, write_multi30k_sample

REPO = Path(__file__).resolve().parents[1]
M30K = Path(os.environ.get("DATA_MIRROR") or REPO.parent / "shared" / "data") / "multi30k"
needs_mirror = pytest.mark.skipif(not M30K.is_dir(), reason="no Multi30k in DATA_MIRROR")


def test_word_tokens_lowercase_and_split_punctuation():
    assert word_tokens("Zwei Männer, im Freien.\n") == "zwei männer , im freien ."
    assert word_tokens("A (red) dog's ball!") == "a ( red ) dog ' s ball !"


def test_head_reads_gzip_and_plain_text_and_refuses_a_short_file(tmp_path):
    lines = [f"line {i}" for i in range(10)]
    with gzip.open(tmp_path / "a.gz", "wt", encoding="utf-8") as fh:
        fh.write("\n".join(lines) + "\n")
    (tmp_path / "a.txt").write_text("\r\n".join(lines) + "\r\n", encoding="utf-8")
    assert head(tmp_path / "a.gz", 3) == lines[:3]
    assert head(tmp_path / "a.txt", 4, skip=6) == lines[6:]
    with pytest.raises(DataError, match=r"a\.gz: 10 lines, 11 wanted"):
        head(tmp_path / "a.gz", 11)
    with pytest.raises(DataError, match="no such file"):
        head(tmp_path / "missing.gz", 1)


@needs_mirror
def test_sample_is_the_first_lines_of_each_split_tokenised(tmp_path):
    counts = {"train": 5, "valid": 3, "test": 2}
    out = write_multi30k_sample(M30K, tmp_path / "raw", counts)
    for split, n in counts.items():
        for lang in ("de", "en"):
            with gzip.open(M30K / f"{MULTI30K_SPLITS[split]}.{lang}.gz", "rt", encoding="utf-8") as fh:
                expected = [word_tokens(next(fh)) for _ in range(n)]
            assert (out / f"{split}.{lang}").read_text(encoding="utf-8").splitlines() == expected
    assert sorted(p.name for p in out.iterdir()) == sorted(
        f"{s}.{lang}" for s in counts for lang in ("de", "en"))


def test_missing_source_writes_nothing(tmp_path):
    (tmp_path / "m30k").mkdir()
    with gzip.open(tmp_path / "m30k" / "train.de.gz", "wt", encoding="utf-8") as fh:
        fh.write("ein hund .\n")  # train.en.gz is missing
    with pytest.raises(DataError, match=r"train\.en\.gz: no such file"):
        write_multi30k_sample(tmp_path / "m30k", tmp_path / "out", {"train": 1})
    assert not (tmp_path / "out").exists()
    with pytest.raises(ValueError, match="unknown Multi30k split"):
        write_multi30k_sample(tmp_path / "m30k", tmp_path / "out", {"dev": 1})
