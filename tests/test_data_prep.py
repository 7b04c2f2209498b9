"""data_prep: strict corpus reading, atomic outputs, the command line on bad input, and
fairseq-generate output and fairseq-preprocess; bad input fails loudly and leaves nothing."""
from __future__ import annotations

import re
import subprocess
import sys

import pytest

from data_prep import DataError
from data_prep.atomic import _UMASK, atomic_dir, atomic_paths
from data_prep.binarize import binarize, fairseq_subsets
from data_prep.cli import main
from data_prep.hypotheses import read_hypotheses, write_hypotheses
from data_prep.text_lines import check_parallel, count_lines, read_lines

from data_prep_helpers import leftovers, pair  # noqa: F401
from recipe_helpers import M30K, REPO, real_lines


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
    assert first == real_lines("val", "en", 1)[0]
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
    assert leftovers(tmp_path) == []
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
    assert leftovers(tmp_path) == []


TEMP = r"[a-z0-9_]{8}"  # the random part tempfile puts in a name


def test_temporary_names_carry_partial_once(tmp_path):
    """A target already written aside (``.bin.partial``: a recipe stage's output folder) gets
    the temporary names of ``bin``, not ``..bin.partial.<random>.partial``."""
    aside = tmp_path / ".bin.partial"
    aside.mkdir()
    (aside / "stale").write_text("x")
    with atomic_paths(tmp_path / "out.txt", tmp_path / "foo.bin.partial") as temps:
        names = [temp.name for temp in temps]
        assert re.fullmatch(rf"\.out\.txt\.{TEMP}\.partial", names[0]), names
        assert re.fullmatch(rf"\.foo\.bin\.{TEMP}\.partial", names[1]), names
        for temp in temps:
            temp.write_text("new\n")
    with atomic_dir(aside) as tmp:
        assert re.fullmatch(rf"\.bin\.{TEMP}\.partial", tmp.name) and tmp.parent == tmp_path
        (tmp / "a").write_text("1")
    assert sorted(p.name for p in tmp_path.iterdir()) == [".bin.partial", "foo.bin.partial", "out.txt"]
    assert sorted(p.name for p in aside.iterdir()) == ["a"]
    with atomic_dir(tmp_path / ".stages") as tmp:  # a hidden name that is not aside keeps its dot
        assert re.fullmatch(rf"\.\.stages\.{TEMP}\.partial", tmp.name)


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
    assert not (tmp_path / "bin").exists() and leftovers(tmp_path) == []
