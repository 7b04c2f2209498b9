"""data_prep sources: downloads (mirror first, sha256 always, nothing written on failure),
the corpus registry, and extraction of the splits from tar, zip, tags and xml archives."""
from __future__ import annotations

import hashlib
import io
import tarfile
import zipfile
from pathlib import Path

import pytest

from data_prep import DataError
from data_prep.cli import main
from data_prep.corpora import CORPORA, Archive, Corpus, Part, get_corpus
from data_prep.download import fetch, fetch_all, read_checksums, sha256_file
from data_prep.extract import extract_split
from data_prep.text_lines import check_parallel, count_lines, read_lines

from data_prep_helpers import leftovers
from recipe_helpers import M30K, MIRROR, needs_mirror, real_lines


# --- downloads: mirror first, sha256 always, nothing written on failure ----------------------

def _archive_file(tmp_path: Path, name: str, payload: bytes) -> tuple[Path, str]:
    path = tmp_path / name
    path.write_bytes(payload)
    return path, hashlib.sha256(payload).hexdigest()


def test_fetch_copies_from_mirror_and_verifies(tmp_path):
    mirror = tmp_path / "mirror"
    (mirror / "c").mkdir(parents=True)
    _, sha = _archive_file(mirror / "c", "a.gz", b"payload")
    before = sorted(str(p) for p in mirror.rglob("*"))
    archive = Archive("a.gz", "http://invalid.invalid/a.gz", sha, "c/a.gz")
    got = fetch(archive, tmp_path / "dl", mirror, log=lambda _: None)
    assert got.read_bytes() == b"payload"
    assert sorted(str(p) for p in mirror.rglob("*")) == before
    messages = []
    fetch(archive, tmp_path / "dl", mirror, log=messages.append)
    assert messages == ["a.gz: present, sha256 ok"]


def test_fetch_refuses_a_checksum_mismatch_and_leaves_nothing(tmp_path):
    mirror = tmp_path / "mirror"
    mirror.mkdir()
    _archive_file(mirror, "a.gz", b"tampered")
    archive = Archive("a.gz", "http://invalid.invalid/a.gz", "0" * 64, "a.gz")
    with pytest.raises(DataError, match=r"sha256 mismatch for a\.gz: expected 0{64}, got "):
        fetch(archive, tmp_path / "dl", mirror, log=lambda _: None)
    assert list((tmp_path / "dl").iterdir()) == []


def test_fetch_downloads_upstream_when_the_mirror_lacks_the_file(tmp_path):
    source, sha = _archive_file(tmp_path, "up.tgz", b"from upstream")
    archive = Archive("up.tgz", source.as_uri(), sha, "c/up.tgz")
    messages = []
    got = fetch(archive, tmp_path / "dl", tmp_path / "empty_mirror", log=messages.append)
    assert got.read_bytes() == b"from upstream"
    assert any("not in mirror" in m for m in messages)


def test_missing_checksum_stops_before_any_download(tmp_path):
    source, sha = _archive_file(tmp_path, "x.tgz", b"data")
    archives = [Archive("x.tgz", source.as_uri(), None), Archive("y.tgz", source.as_uri(), sha)]
    with pytest.raises(DataError, match=r"no sha256 checksum recorded for: x\.tgz\. .*--checksums"):
        fetch_all(archives, tmp_path / "dl", log=lambda _: None)
    assert not (tmp_path / "dl").exists()
    sums = tmp_path / "SUMS"
    sums.write_text(f"{sha}  ./x.tgz\n")
    paths = fetch_all(archives, tmp_path / "dl", checksums=read_checksums(sums), log=lambda _: None)
    assert [p.name for p in paths] == ["x.tgz", "y.tgz"]
    messages = []
    fetch(Archive("z.tgz", source.as_uri(), None), tmp_path / "dl", allow_unverified=True,
          log=messages.append)
    assert any(f"{sha}  z.tgz" in m for m in messages)


def test_fetch_never_writes_into_the_mirror(tmp_path):
    mirror = tmp_path / "mirror"
    mirror.mkdir()
    with pytest.raises(DataError, match="read-only"):
        fetch(Archive("a", "http://invalid.invalid/a", "0" * 64), mirror / "dl", mirror)


def test_bad_checksum_file_line_is_named(tmp_path):
    sums = tmp_path / "SUMS"
    sums.write_text("# comment\nabc  file\n")
    with pytest.raises(DataError, match=r"SUMS:2: expected"):
        read_checksums(sums)


@needs_mirror
def test_multi30k_checksums_match_the_mirror_listing():
    listing = read_checksums(MIRROR / "SHA256SUMS")
    corpus = get_corpus("multi30k_de_en")
    for archive in corpus.archives:
        assert archive.sha256 == listing[archive.name]
        assert archive.url.startswith("https://github.com/multi30k/dataset/raw/master/data/task1/raw/")
    assert sha256_file(M30K / "val.en.gz") == listing["val.en.gz"]


@needs_mirror
def test_multi30k_download_and_extract_from_the_mirror(tmp_path, capsys):
    assert main(["download", "multi30k_de_en", "--dest", str(tmp_path / "dl"),
                 "--mirror", str(MIRROR)]) == 0
    assert main(["extract", "multi30k_de_en", "--downloads", str(tmp_path / "dl"),
                 "--out", str(tmp_path / "raw"), "--splits", "valid", "test_2017_flickr"]) == 0
    assert count_lines(tmp_path / "raw" / "valid.de") == 1014
    assert check_parallel(tmp_path / "raw" / "test_2017_flickr.de",
                          tmp_path / "raw" / "test_2017_flickr.en") == 1000
    assert next(read_lines(tmp_path / "raw" / "valid.en")) == real_lines("val", "en", 1)[0]


def test_every_registered_corpus_is_complete():
    assert set(CORPORA) == {"multi30k_de_en", "iwslt17_de_en", "kftt_ja_en", "wmt16_ro_en",
                            "wmt14_en_de"}
    for corpus in CORPORA.values():
        names = {a.name for a in corpus.archives}
        assert {"train", "valid"} <= set(corpus.splits)
        for split in corpus.splits.values():
            assert set(split) == {corpus.src, corpus.tgt}
            assert all(part.archive in names for parts in split.values() for part in parts)
        assert all(a.url.startswith(("http://", "https://")) and a.mirror_path
                   for a in corpus.archives)
    with pytest.raises(DataError, match="unknown corpus 'nope'"):
        get_corpus("nope")


# --- extraction from archives ----------------------------------------------------------------

def _tar(path: Path, members: dict[str, bytes]) -> None:
    with tarfile.open(path, "w:gz") as tar:
        for name, data in members.items():
            info = tarfile.TarInfo(name)
            info.size = len(data)
            tar.addfile(info, io.BytesIO(data))


def _toy_corpus() -> Corpus:
    parts = {
        "train": {"de": (Part("t.tgz", "*/train.tags.de-en.de", "tags"),),
                  "en": (Part("t.tgz", "*/train.tags.de-en.en", "tags"),)},
        "valid": {"de": (Part("t.tgz", "*/dev.de.xml", "seg"),),
                  "en": (Part("t.zip", "dev.en.txt"),)},
    }
    return Corpus("toy", "de", "en", (Archive("t.tgz", "http://x", None),
                                      Archive("t.zip", "http://x", None)), parts)


def _toy_archives(folder: Path, en_dev: bytes = b"Hello & good\nTwo\n") -> None:
    tags_de = "<url>http://x</url>\n<talkid>1</talkid>\n<title>Titel</title>\nSatz eins.\nSatz zwei.\n"
    tags_en = "<url>http://x</url>\n<talkid>1</talkid>\n<title>Title</title>\nSentence one.\nSentence two.\n"
    xml = '<doc>\n<seg id="1"> Hallo &amp; gut </seg>\n<seg id="2">Zwei</seg>\n</doc>\n'
    _tar(folder / "t.tgz", {"de-en/train.tags.de-en.de": tags_de.encode(),
                            "de-en/train.tags.de-en.en": tags_en.encode(),
                            "de-en/dev.de.xml": xml.encode()})
    with zipfile.ZipFile(folder / "t.zip", "w") as zf:
        zf.writestr("dev.en.txt", en_dev)


def test_extract_reads_tags_seg_and_plain_members(tmp_path):
    _toy_archives(tmp_path)
    corpus = _toy_corpus()
    assert extract_split(corpus, "train", tmp_path, tmp_path / "raw", log=lambda _: None) == 3
    assert (tmp_path / "raw" / "train.de").read_text().splitlines() == ["Titel", "Satz eins.", "Satz zwei."]
    assert extract_split(corpus, "valid", tmp_path, tmp_path / "raw", log=lambda _: None) == 2
    assert (tmp_path / "raw" / "valid.de").read_text().splitlines() == ["Hallo & gut", "Zwei"]


def test_extract_refuses_misaligned_or_broken_members(tmp_path):
    _toy_archives(tmp_path, en_dev=b"Only one line\n")
    corpus = _toy_corpus()
    with pytest.raises(DataError, match=r"toy valid: 2 de lines \(\*/dev\.de\.xml\) but 1 en lines"):
        extract_split(corpus, "valid", tmp_path, tmp_path / "raw", log=lambda _: None)
    assert not (tmp_path / "raw" / "valid.de").exists() and leftovers(tmp_path / "raw") == []
    _toy_archives(tmp_path, en_dev=b"ok\n\xc3\x28 bad\n")
    with pytest.raises(DataError, match=r"t\.zip:dev\.en\.txt:2: not valid UTF-8"):
        extract_split(corpus, "valid", tmp_path, tmp_path / "raw", log=lambda _: None)
    bad = Corpus("toy", "de", "en", corpus.archives,
                 {"x": {"de": (Part("t.tgz", "*.nothing"),), "en": (Part("t.zip", "dev.en.txt"),)}})
    with pytest.raises(DataError, match=r"no member matching '\*\.nothing'"):
        extract_split(bad, "x", tmp_path, tmp_path / "raw", log=lambda _: None)
    with pytest.raises(DataError, match=r"missing\.tgz: no such file"):
        extract_split(Corpus("m", "de", "en", (Archive("missing.tgz", "http://x", None),),
                             {"x": {"de": (Part("missing.tgz", "a"),), "en": (Part("missing.tgz", "b"),)}}),
                      "x", tmp_path, tmp_path / "raw", log=lambda _: None)
