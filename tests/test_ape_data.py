"""Post-editing data steps: triplet validation, binarisation, mixing, jackknife folds,
synthetic assembly and MLQE-PE extraction. Bad input stops with an error naming file and
line, and nothing is half-written."""
from __future__ import annotations

import json
import os
from pathlib import Path

import pytest

from data_prep import DataError
from data_prep.ape.binarize import binarize
from data_prep.ape.synthetic_triplets import assemble, make_folds
from data_prep.ape.triplets import check_triplets, mix, read_triplets, statistics, write_triplets

from ape_helpers import ROWS, tiny_bert, triplets

os.environ.setdefault("HF_HUB_OFFLINE", "1")


@pytest.fixture(scope="module")
def bert(tmp_path_factory) -> Path:
    return tiny_bert(tmp_path_factory.mktemp("ape_data") / "bert", positions=12)


def test_unequal_line_counts_name_the_longer_file_and_line(tmp_path):
    prefix = triplets(tmp_path / "t", ROWS)
    Path(f"{prefix}.mt").write_text("die katze sitzt\nein hund\n", encoding="utf-8")
    with pytest.raises(DataError, match=r"t\.src:3: line counts differ: .*t\.mt has 2 lines, .*t\.src has 3"):
        check_triplets(prefix)


def test_empty_line_and_bad_utf8_name_file_and_line(tmp_path):
    prefix = triplets(tmp_path / "t", ROWS)
    Path(f"{prefix}.pe").write_text("a\n \nb\n", encoding="utf-8")
    with pytest.raises(DataError, match=r"t\.pe:2: empty line"):
        check_triplets(prefix)
    Path(f"{prefix}.pe").write_bytes(b"a\nb\n\xff c\n")
    with pytest.raises(DataError, match=r"t\.pe:3: not valid UTF-8"):
        list(read_triplets(prefix))


def test_write_triplets_is_all_or_nothing(tmp_path):
    def rows():
        yield ("a", "b", "c")
        yield ("a", "b\nc", "d")
    with pytest.raises(DataError, match=r"out\.mt:2: line break"):
        write_triplets(tmp_path / "out", rows())
    assert list(tmp_path.iterdir()) == []


def test_binarize_writes_vocabulary_and_ids(bert, tmp_path):
    prefix = triplets(tmp_path / "train", ROWS)
    out = binarize(str(bert), [("train", str(prefix)), ("test", str(prefix))], tmp_path / "bin",
                   log=lambda _: None)
    vocab = (out / "vocab.txt").read_text(encoding="utf-8").splitlines()
    assert vocab == (bert / "vocab.txt").read_text(encoding="utf-8").splitlines()
    from fairseq.data.indexed_dataset import MMapIndexedDataset
    mt = MMapIndexedDataset(str(out / "train.mt"))
    assert [vocab[i] for i in mt[0].tolist()] == ["die", "katze", "sitzt"]
    assert len(mt) == 3 and (out / "wordpiece" / "tokenizer.json").is_file()
    meta = json.loads((out / "meta.json").read_text())
    assert meta["max_positions"] == 12 and meta["lowercase"] is True


def test_too_long_line_is_an_error_and_nothing_is_written(bert, tmp_path):
    long_src = " ".join(["cat"] * 11)  # 11 WordPieces + [CLS] + [SEP] > 12 positions
    prefix = triplets(tmp_path / "t", ROWS + [(long_src, "ein hund", "ein hund")])
    with pytest.raises(DataError, match=r"t\.src:4: 11 WordPieces, more than the 10"):
        binarize(str(bert), [("valid", str(prefix))], tmp_path / "bin", log=lambda _: None)
    assert not (tmp_path / "bin").exists()
    assert [p.name for p in tmp_path.iterdir() if p.name.startswith(".")] == []


def test_training_split_may_skip_and_count_bad_triplets(bert, tmp_path):
    prefix = triplets(tmp_path / "t", ROWS + [("a", " ", "b"), (" ".join(["cat"] * 11), "a", "b")])
    logs: list[str] = []
    out = binarize(str(bert), [("train", str(prefix))], tmp_path / "bin", skip_invalid_train=True,
                   log=logs.append)
    meta = json.loads((out / "meta.json").read_text())
    assert meta["splits"]["train"] == {"prefix": str(prefix), "triplets": 3, "skipped": 2}
    assert any("skipped 2 triplets" in m and "t.mt:4: empty line" in m and "t.src:5" in m
               for m in logs)
    with pytest.raises(DataError, match=r"t\.mt:4: empty line"):  # a test split never skips
        binarize(str(bert), [("test", str(prefix))], tmp_path / "bin2", skip_invalid_train=True,
                 log=lambda _: None)


def test_literal_special_tokens_are_text(bert, tmp_path):
    prefix = triplets(tmp_path / "t", [("a [SEP] b", "[CLS] hund", "hund")])
    out = binarize(str(bert), [("train", str(prefix))], tmp_path / "bin", log=lambda _: None)
    from fairseq.data.indexed_dataset import MMapIndexedDataset
    vocab = (out / "vocab.txt").read_text(encoding="utf-8").splitlines()
    src = [vocab[i] for i in MMapIndexedDataset(str(out / "train.src"))[0].tolist()]
    assert "[SEP]" not in src and src[:2] == ["a", "["]


def test_mix_oversamples_the_real_triplets(tmp_path):
    real = triplets(tmp_path / "real", ROWS[:2])
    synthetic = triplets(tmp_path / "syn", ROWS)
    report = mix(real, [synthetic], 4, tmp_path / "mix", log=lambda _: None)
    assert report == {"synthetic": 3, "real": 2, "oversample": 4, "total": 11, "real_share": 72.73}
    lines = Path(f"{tmp_path / 'mix'}.pe").read_text(encoding="utf-8").splitlines()
    assert lines[:3] == [r[2] for r in ROWS] and lines[3:] == [ROWS[0][2], ROWS[1][2]] * 4


def test_jackknife_folds_partition_the_corpus(tmp_path):
    (tmp_path / "c.en").write_text("".join(f"s{i}\n" for i in range(10)), encoding="utf-8")
    (tmp_path / "c.de").write_text("".join(f"t{i}\n" for i in range(10)), encoding="utf-8")
    sizes = make_folds(tmp_path / "c", "en", "de", 3, tmp_path / "folds", log=lambda _: None)
    assert sorted(sizes) == [3, 3, 4]
    held = []
    for f in range(3):
        d = tmp_path / "folds" / f"fold{f}"
        h = (d / "heldout.en").read_text().split()
        t = (d / "train.en").read_text().split()
        assert set(h).isdisjoint(t) and len(h) + len(t) == 10  # no model sees what it translates
        assert [x.replace("s", "t") for x in h] == (d / "heldout.de").read_text().split()
        held += h
    assert sorted(held) == sorted(f"s{i}" for i in range(10))


def test_assemble_checks_counts_and_counts_skips(tmp_path):
    for name, text in (("s", "a\nb\nc\n"), ("m", "x\n\nz\n"), ("p", "a\nb\nc\n"), ("short", "x\n")):
        (tmp_path / name).write_text(text, encoding="utf-8")
    files = [(str(tmp_path / "s"), str(tmp_path / "m"), str(tmp_path / "p"))]
    with pytest.raises(DataError, match=r"/m:2: empty line"):
        assemble(files, tmp_path / "out", log=lambda _: None)
    report = assemble(files, tmp_path / "out", skip_empty=True, log=lambda _: None)
    assert report["triplets"] == 2 and report["skipped"] == 1
    bad = [(str(tmp_path / "s"), str(tmp_path / "short"), str(tmp_path / "p"))]
    with pytest.raises(DataError, match=r"/s:2: line counts differ"):
        assemble(bad, tmp_path / "out2", log=lambda _: None)


def test_statistics_give_the_do_nothing_ter(tmp_path):
    prefix = triplets(tmp_path / "t", [("a", "Das ist gut", "das ist gut"), ("b", "x y", "x y z")])
    stats = statistics(prefix)
    assert stats["triplets"] == 2 and stats["mt_equals_pe"] == 0.0
    assert stats["ter"] == pytest.approx(100 / 6, abs=0.01)  # one insertion in 6 words, case ignored
    assert stats["ter_cased"] == pytest.approx(200 / 6, abs=0.01)
    assert "case:lc" in stats["ter_signature"] and "tok:none" in stats["bleu_signature"]


def test_mlqe_pe_from_the_mirror(tmp_path):
    mirror = Path(os.environ.get("DATA_MIRROR", Path(__file__).parents[2] / "shared" / "data"))
    if not (mirror / "mlqe-pe" / "en-de-test.tar.gz").is_file():
        pytest.skip("no MLQE-PE in DATA_MIRROR")
    from data_prep.ape.real_triplets import prepare_mlqe_pe
    counts = prepare_mlqe_pe("en-de", tmp_path / "dl", tmp_path / "text", mirror, log=lambda _: None)
    assert counts == {"train": 7000, "dev": 1000, "test20": 1000}
    stats = statistics(tmp_path / "text" / "test20")
    assert (stats["ter"], stats["bleu"]) == (17.22, 72.37)  # the do-nothing baseline
