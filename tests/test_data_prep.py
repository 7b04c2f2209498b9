"""data_prep: downloads with checksums, strict corpus reading, tokenisation, sentencepiece,
extraction from archives, fairseq-generate output; bad input fails loudly and leaves nothing."""
from __future__ import annotations

import hashlib
import io
import os
import subprocess
import sys
import tarfile
import zipfile
from pathlib import Path

import pytest

from data_prep import DataError
from data_prep.atomic import _UMASK, atomic_dir, atomic_paths
from data_prep.binarize import binarize, fairseq_subsets
from data_prep.cli import main
from data_prep.corpora import CORPORA, Archive, Corpus, Part, get_corpus
from data_prep.text_lines import check_parallel, count_lines, read_lines
from data_prep.download import fetch, fetch_all, read_checksums, sha256_file
from data_prep.extract import extract_split
from data_prep.hypotheses import read_hypotheses, write_hypotheses
from data_prep.moses import detokenize_file, process_line, process_pair
from data_prep.samples import head
from data_prep import spm

REPO = Path(__file__).resolve().parents[1]
MIRROR = Path(os.environ.get("DATA_MIRROR") or REPO.parent / "shared" / "data")
if not MIRROR.is_absolute():
    MIRROR = (REPO / MIRROR).resolve()
M30K = MIRROR / "multi30k"
needs_mirror = pytest.mark.skipif(not M30K.is_dir(), reason="no Multi30k in DATA_MIRROR")


def _real_lines(name: str, lang: str, count: int) -> list[str]:
    return head(M30K / f"{name}.{lang}.gz", count)


@pytest.fixture
def pair(tmp_path: Path) -> tuple[Path, Path]:
    """The first 60 lines of Multi30k train (de, en) as plain files."""
    if not M30K.is_dir():
        pytest.skip("no Multi30k in DATA_MIRROR")
    src, tgt = tmp_path / "train.de", tmp_path / "train.en"
    src.write_text("\n".join(_real_lines("train", "de", 60)) + "\n", encoding="utf-8")
    tgt.write_text("\n".join(_real_lines("train", "en", 60)) + "\n", encoding="utf-8")
    return src, tgt


def _leftovers(folder: Path) -> list[str]:
    return sorted(p.name for p in folder.iterdir() if ".partial" in p.name)


# --- corpus validation: every error names the file and the line -----------------------------

def test_read_parallel_counts_a_good_corpus(pair):
    assert check_parallel(*pair) == 60
    assert count_lines(pair[0]) == 60


def test_empty_corpus_is_refused(tmp_path):
    src, tgt = tmp_path / "a.de", tmp_path / "a.en"
    src.write_bytes(b"")
    tgt.write_bytes(b"")
    with pytest.raises(DataError, match=r"a\.de: empty corpus"):
        check_parallel(src, tgt)
    tgt.write_text("one\n", encoding="utf-8")
    with pytest.raises(DataError, match=r"a\.de: empty corpus \(0 lines\) but .*a\.en has 1 lines"):
        check_parallel(src, tgt)


def test_gzip_files_are_read_transparently():
    if not M30K.is_dir():
        pytest.skip("no Multi30k in DATA_MIRROR")
    first = next(read_lines(M30K / "val.en.gz"))
    assert first == _real_lines("val", "en", 1)[0]
    assert count_lines(M30K / "val.de.gz") == 1014


# --- atomic outputs --------------------------------------------------------------------------

def test_atomic_paths_keep_old_output_when_the_block_fails(tmp_path):
    out = tmp_path / "out.txt"
    out.write_text("old\n")
    with pytest.raises(RuntimeError):
        with atomic_paths(out) as (tmp,):
            tmp.write_text("half")
            raise RuntimeError("boom")
    assert out.read_text() == "old\n"
    assert _leftovers(tmp_path) == []
    with atomic_paths(out) as (tmp,):
        tmp.write_text("new\n")
    assert out.read_text() == "new\n"
    assert out.stat().st_mode & 0o777 == 0o666 & ~_UMASK


def test_atomic_dir_replaces_a_folder_only_on_success(tmp_path):
    target = tmp_path / "bin"
    with atomic_dir(target) as tmp:
        (tmp / "a").write_text("1")
    with pytest.raises(ValueError):
        with atomic_dir(target) as tmp:
            (tmp / "b").write_text("2")
            raise ValueError
    assert sorted(p.name for p in target.iterdir()) == ["a"]
    assert _leftovers(tmp_path) == []


# --- the prepare-text command on bad input: error, exit code, nothing written ----------------

@pytest.mark.parametrize("damage", ["missing", "unequal", "empty", "non_utf8"])
def test_prepare_text_rejects_bad_input_and_writes_nothing(pair, tmp_path, capsys, damage):
    src, tgt = pair
    expected = {
        "missing": f"{tgt}: no such file",
        "unequal": f"{src}:60: line counts differ: {tgt} has 59 lines, {src} has 60",
        "empty": f"{src}: empty corpus",
        "non_utf8": f"{tgt}:3: not valid UTF-8 (byte 0xe9 at column 4)",
    }[damage]
    if damage == "missing":
        tgt.unlink()
    elif damage == "unequal":
        tgt.write_text("".join(tgt.read_text(encoding="utf-8").splitlines(True)[:59]), encoding="utf-8")
    elif damage == "empty":
        src.write_bytes(b"")
        tgt.write_bytes(b"")
    else:
        lines = tgt.read_bytes().split(b"\n")
        lines[2] = b"caf\xe9"
        tgt.write_bytes(b"\n".join(lines))
    out = tmp_path / "tok"
    out.mkdir()
    (out / "train.en").write_text("previous output\n")
    code = main(["prepare-text", "--src", "de", "--tgt", "en", "--in-dir", str(tmp_path),
                 "--out-dir", str(out), "--splits", "train", "--workers", "2"])
    assert code == 1
    assert expected in capsys.readouterr().err
    assert sorted(p.name for p in out.iterdir()) == ["train.en"]
    assert (out / "train.en").read_text() == "previous output\n"


def test_commands_take_one_prefix_pair_or_several_splits(pair, tmp_path, capsys):
    src, _ = pair
    lines = src.read_text(encoding="utf-8").splitlines()
    lines[0] = ""
    src.write_text("\n".join(lines) + "\n", encoding="utf-8")
    prefix = str(tmp_path / "train")
    assert main(["prepare-text", "--src", "de", "--tgt", "en", "--input", prefix,
                 "--output", str(tmp_path / "kept"), "--tokenizer", "none"]) == 0
    assert main(["prepare-text", "--src", "de", "--tgt", "en", "--input", prefix,
                 "--output", str(tmp_path / "tok"), "--drop-empty", "true"]) == 0
    assert count_lines(tmp_path / "kept.de") == 60 and count_lines(tmp_path / "tok.en") == 59
    assert main(["prepare-text", "--src", "de", "--tgt", "en", "--in-dir", str(tmp_path),
                 "--out-dir", str(tmp_path / "d"), "--splits", "train", "kept"]) == 0
    assert count_lines(tmp_path / "d" / "train.de") == 59  # train: the --filter-split
    assert count_lines(tmp_path / "d" / "kept.de") == 60
    assert main(["prepare-text", "--src", "de", "--tgt", "en", "--input", prefix]) == 1
    assert "give --input and --output prefixes, or --in-dir" in capsys.readouterr().err


def test_bad_input_fails_the_command_line_process(tmp_path):
    (tmp_path / "x.de").write_text("a\nb\n")
    (tmp_path / "x.en").write_text("a\n")
    result = subprocess.run([sys.executable, "-m", "data_prep", "check",
                             str(tmp_path / "x.de"), str(tmp_path / "x.en")],
                            cwd=REPO, capture_output=True, text=True)
    assert result.returncode == 1
    assert f"error: {tmp_path / 'x.de'}:2: line counts differ" in result.stderr


# --- sacremoses ------------------------------------------------------------------------------

def test_moses_normalises_and_tokenises_without_escaping():
    assert process_line("„Hallo“, sagte er…  & ging.", "de") == '" Hallo " , sagte er ... & ging .'
    assert process_line("Don't stop.", "en", normalize=False) == "Don 't stop ."
    assert process_line("  a   b ", "en", normalize=False, tokenize=False) == "a b"


def test_process_pair_tokenises_real_data_and_drops_empty_pairs(pair, tmp_path):
    src, tgt = pair
    lines = src.read_text(encoding="utf-8").splitlines()
    lines[4] = "   "
    src.write_text("\n".join(lines) + "\n", encoding="utf-8")
    read, written = process_pair(src, tgt, tmp_path / "t.de", tmp_path / "t.en", "de", "en",
                                 drop_empty=True, workers=2, log=lambda _: None)
    assert (read, written) == (60, 59)
    tokenised = (tmp_path / "t.en").read_text(encoding="utf-8").splitlines()
    assert len(tokenised) == 59
    assert tokenised[0] == process_line(_real_lines("train", "en", 1)[0], "en")
    assert tokenised[0].endswith(" .")
    kept, _ = process_pair(src, tgt, tmp_path / "k.de", tmp_path / "k.en", "de", "en",
                           drop_empty=False, log=lambda _: None)
    assert count_lines(tmp_path / "k.de") == kept == 60


def test_detokenize_undoes_tokenisation(tmp_path):
    sentences = ["A man, in a red shirt, is running.", "Two dogs play in the snow!",
                 "It's a \"big\" dog (brown)."]
    tok = tmp_path / "tok.en"
    tok.write_text("\n".join(process_line(s, "en", normalize=False) for s in sentences) + "\n")
    assert detokenize_file(tok, tmp_path / "detok.en", "en") == 3
    assert (tmp_path / "detok.en").read_text().splitlines() == sentences


# --- sentencepiece ---------------------------------------------------------------------------

def test_joint_sentencepiece_round_trips_and_filters_long_pairs(tmp_path):
    if not M30K.is_dir():
        pytest.skip("no Multi30k in DATA_MIRROR")
    de, en = tmp_path / "train.de", tmp_path / "train.en"
    de.write_text("\n".join(_real_lines("train", "de", 1500)) + "\n", encoding="utf-8")
    en.write_text("\n".join(_real_lines("train", "en", 1500)) + "\n", encoding="utf-8")
    model = spm.train([de, en], tmp_path / "spm", vocab_size=400, log=lambda _: None)
    assert model.is_file() and (tmp_path / "spm.vocab").is_file()
    import sentencepiece
    proc = sentencepiece.SentencePieceProcessor(model_file=str(model))
    assert proc.get_piece_size() == 400
    read, written = spm.encode_pair(model, de, en, tmp_path / "p.de", tmp_path / "p.en",
                                    log=lambda _: None)
    assert read == written == 1500
    pieces = (tmp_path / "p.de").read_text(encoding="utf-8").splitlines()
    assert proc.decode_pieces(pieces[10].split()) == _real_lines("train", "de", 11)[10]
    longest = max(len(p.split()) for p in pieces)
    _, kept = spm.encode_pair(model, de, en, tmp_path / "q.de", tmp_path / "q.en",
                              max_len=longest - 1, log=lambda _: None)
    assert 0 < kept < 1500


def test_sentencepiece_refuses_unequal_training_sides(pair, tmp_path):
    src, tgt = pair
    tgt.write_text("only one line\n")
    with pytest.raises(DataError, match="line counts differ"):
        spm.train([src, tgt], tmp_path / "m", vocab_size=100, log=lambda _: None)
    assert not (tmp_path / "m.model").exists()
    assert _leftovers(tmp_path) == []


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
    assert next(read_lines(tmp_path / "raw" / "valid.en")) == _real_lines("val", "en", 1)[0]


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
    assert not (tmp_path / "raw" / "valid.de").exists() and _leftovers(tmp_path / "raw") == []
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


# --- fairseq-generate output and fairseq-preprocess ------------------------------------------

GENERATE_OUTPUT = """S-1\tzwei Hunde
T-1\ttwo dogs
H-1\t-0.51\ttwo dogs
D-1\t-0.51\ttwo dogs
P-1\t-0.2 -0.3
S-0\tein Mann
H-0\t-0.40\ta man
D-0\t-0.40\ta man
S-2\tleer
H-2\t-1.00\t
D-2\t-1.00\t
Generate test with beam=5: BLEU4 = 10.00
"""


def test_hypotheses_come_back_in_input_order(tmp_path):
    gen = tmp_path / "gen.out"
    gen.write_text(GENERATE_OUTPUT)
    assert read_hypotheses(gen) == {0: "a man", 1: "two dogs", 2: ""}
    assert write_hypotheses(gen, tmp_path / "hyp", expected=3) == 3
    assert (tmp_path / "hyp").read_text() == "a man\ntwo dogs\n\n"


def test_a_dropped_sentence_is_an_error(tmp_path):
    gen = tmp_path / "gen.out"
    gen.write_text(GENERATE_OUTPUT)
    with pytest.raises(DataError, match=r"3 hypotheses for a test set of 5 lines; missing ids 3, 4 "
                                        r"\(fairseq-generate needs --required-batch-size-multiple 1"):
        write_hypotheses(gen, tmp_path / "hyp", expected=5)
    assert not (tmp_path / "hyp").exists()


def test_binarize_checks_inputs_before_running_fairseq(pair, tmp_path):
    src, tgt = pair
    assert fairseq_subsets(["a", "b", "c"]) == ["test", "test1", "test2"]
    (tmp_path / "valid.de").write_text("a\nb\n")
    (tmp_path / "valid.en").write_text("a\n")
    with pytest.raises(DataError, match=r"valid\.de:2: line counts differ"):
        binarize("de", "en", str(tmp_path / "train"), str(tmp_path / "valid"), [],
                 tmp_path / "bin", log=lambda _: None)
    assert not (tmp_path / "bin").exists() and _leftovers(tmp_path) == []
