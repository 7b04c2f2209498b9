"""Faults in the data stages, reproduced: a bad later split, a missing split, SIGTERM while
fairseq-preprocess runs, a corrupt archive, a stage run before its input exists. Each time the
earlier outputs stay byte for byte as they were, nothing partial is left behind, no process
keeps running and the error names what to fix."""
from __future__ import annotations

import gzip
import hashlib
import os
import re
import shutil
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest

from data_prep import DataError
from data_prep.atomic import all_or_nothing, atomic_paths
from data_prep.cli import main
from recipe_helpers import REPO, SLICE_ARGS, needs_mirror, recipe, sliced  # noqa: F401


def snapshot(folder: Path) -> dict[str, str]:
    """{relative path: sha256} of every file below ``folder`` (symlinks followed)."""
    return {str(p.relative_to(folder)): hashlib.sha256(p.read_bytes()).hexdigest()
            for p in sorted(folder.rglob("*")) if p.is_file()}


def partials(folder: Path) -> list[str]:
    return [str(p) for p in folder.rglob("*") if ".partial" in p.name or p.name.endswith(".old")]


def corrupt_line(path: Path, number: int) -> None:
    lines = path.read_bytes().split(b"\n")
    lines[number - 1] = b"\xc0 broken"
    path.write_bytes(b"\n".join(lines))


# --- the command line: every split or none ---------------------------------------------------

def test_all_or_nothing_defers_every_rename_to_the_end_of_the_block(tmp_path):
    a, b = tmp_path / "a", tmp_path / "b"
    a.write_text("old a\n")
    with pytest.raises(DataError):
        with all_or_nothing():
            with atomic_paths(a) as (tmp,):
                tmp.write_text("new a\n")
            assert a.read_text() == "old a\n"  # not yet: the group has not succeeded
            with atomic_paths(b):
                raise DataError("b is bad")
    assert a.read_text() == "old a\n" and not b.exists() and partials(tmp_path) == []
    with all_or_nothing():
        with all_or_nothing():
            with atomic_paths(a) as (tmp,):
                tmp.write_text("new a\n")
        assert a.read_text() == "old a\n"  # the inner group hands over to the outer one
    assert a.read_text() == "new a\n"


def _three_splits(folder: Path) -> None:
    folder.mkdir(parents=True, exist_ok=True)
    for split, n in (("train", 5), ("valid", 3), ("test", 3)):
        (folder / f"{split}.de").write_text("".join(f"Satz {i} .\n" for i in range(n)))
        (folder / f"{split}.en").write_text("".join(f"Sentence {i} .\n" for i in range(n)))


def test_prepare_text_with_a_bad_later_split_replaces_no_earlier_output(tmp_path, capsys):
    raw, tok = tmp_path / "raw", tmp_path / "tok"
    _three_splits(raw)
    args = ["prepare-text", "--src", "de", "--tgt", "en", "--in-dir", str(raw), "--out-dir",
            str(tok), "--splits", "train", "valid", "test"]
    assert main(args) == 0
    before = snapshot(tok)
    (raw / "train.en").write_text("".join(f"Other {i} .\n" for i in range(5)))
    corrupt_line(raw / "test.en", 2)
    assert main(args) == 1
    assert f"{raw / 'test.en'}:2: not valid UTF-8" in capsys.readouterr().err
    assert snapshot(tok) == before and partials(tmp_path) == []


def test_spm_encode_with_a_missing_split_writes_nothing(tmp_path, capsys):
    tok, spm_dir = tmp_path / "tok", tmp_path / "spm"
    _three_splits(tok)
    (tok / "test.en").unlink()
    spm_dir.mkdir()
    (spm_dir / "train.de").write_text("earlier\n")
    assert main(["spm-encode", "--model", str(tmp_path / "no.model"), "--src", "de", "--tgt", "en",
                 "--in-dir", str(tok), "--out-dir", str(spm_dir), "--splits", "train", "valid",
                 "test"]) == 1
    assert f"{tok / 'test.en'}: no such file" in capsys.readouterr().err
    assert snapshot(spm_dir) == {"train.de": hashlib.sha256(b"earlier\n").hexdigest()}


def test_a_truncated_or_corrupt_gz_is_named(tmp_path, capsys):
    from data_prep.corpora import get_corpus
    corpus = get_corpus("multi30k_de_en")
    downloads = tmp_path / "downloads"
    downloads.mkdir()
    text = "".join(f"line {i}\n" for i in range(5000)).encode()
    for archive in corpus.archives:
        (downloads / archive.name).write_bytes(gzip.compress(text))
    broken = downloads / corpus.splits["valid"]["en"][0].archive
    broken.write_bytes(broken.read_bytes()[:200])  # truncated
    args = ["extract", "multi30k_de_en", "--downloads", str(downloads), "--out",
            str(tmp_path / "raw"), "--splits", "train", "valid"]
    assert main(args) == 1
    err = capsys.readouterr().err
    assert f"error: {broken}: truncated or corrupt gzip file" in err and "Traceback" not in err
    broken.write_bytes(b"not gzip at all")
    assert main(args) == 1
    assert f"error: {broken}: truncated or corrupt gzip file" in capsys.readouterr().err
    assert not (tmp_path / "raw").exists() or partials(tmp_path / "raw") == []
    assert not (tmp_path / "raw" / "train.de").exists()  # every split, or none


# --- SIGTERM: the command, its children and its partial files go -----------------------------

def _session_processes(sid: int) -> list[str]:
    """Command lines of the live processes of session ``sid`` (zombies left out)."""
    found = []
    for stat in Path("/proc").glob("[0-9]*/stat"):
        try:
            fields = stat.read_text().rsplit(")", 1)[1].split()
            cmdline = (stat.parent / "cmdline").read_bytes().replace(b"\0", b" ").decode()
        except (OSError, IndexError):
            continue
        if int(fields[3]) == sid and fields[0] != "Z":
            found.append(cmdline)
    return found


def _terminate_when_preprocess_runs(proc: subprocess.Popen, watch: Path | None = None) -> list[str]:
    """SIGTERM once fairseq-preprocess runs; return the temporary names then below ``watch``."""
    deadline = time.time() + 120
    while not any("preprocess" in c for c in _session_processes(proc.pid)):
        assert proc.poll() is None, "the command ended before fairseq-preprocess started"
        assert time.time() < deadline, "fairseq-preprocess never started"
        time.sleep(0.05)
    time.sleep(1.0)  # inside fairseq-preprocess
    seen = sorted(p.name for p in watch.rglob("*") if ".partial" in p.name) if watch else []
    os.kill(proc.pid, signal.SIGTERM)  # the parent only, as a scheduler or a user would
    proc.wait(timeout=60)
    return seen


def _no_process_left(sid: int) -> list[str]:
    for _ in range(50):
        left = _session_processes(sid)
        if not left:
            return []
        time.sleep(0.1)
    return left


@pytest.mark.slow
@needs_mirror
def test_sigterm_stops_binarize_and_fairseq_preprocess_leaving_nothing(sliced, tmp_path):
    spm_dir = sliced / "spm"
    command = [sys.executable, "-m", "data_prep", "binarize", "--src", "de", "--tgt", "en",
               "--train", str(spm_dir / "train"), "--valid", str(spm_dir / "valid"),
               "--destdir", str(tmp_path / "bin"), "--workers", "2"]
    proc = subprocess.Popen(command, cwd=REPO, start_new_session=True,
                            stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    _terminate_when_preprocess_runs(proc)
    assert proc.returncode == 143
    assert _no_process_left(proc.pid) == []
    assert list(tmp_path.iterdir()) == []


@pytest.mark.slow
@needs_mirror
def test_sigterm_during_a_recipe_stage_stops_everything_and_keeps_the_earlier_outputs(sliced, tmp_path):
    work = tmp_path / "w"
    shutil.copytree(sliced, work, symlinks=True)
    before = snapshot(work / "bin")
    env = {"PATH": os.environ["PATH"], "HOME": os.environ.get("HOME", "/tmp"),
           "PYTHON_BIN": sys.executable, "DEVICE": "cpu", "NJ": "2"}
    proc = subprocess.Popen(["bash", str(REPO / "recipes/multi30k_de_en/run.sh"), "--stage", "4",
                             "--stop-stage", "4", "--force", "true", "--work-dir", str(work),
                             *SLICE_ARGS], cwd=REPO, env=env, start_new_session=True,
                            stdout=subprocess.DEVNULL, stderr=subprocess.PIPE)
    seen = _terminate_when_preprocess_runs(proc, watch=work)
    # the stage's folder written aside, and data_prep's temporary folder for it: .partial once
    assert len(seen) == 2 and ".bin.partial" in seen, seen
    (temporary,) = [name for name in seen if name != ".bin.partial"]
    assert re.fullmatch(r"\.bin\.[a-z0-9_]{8}\.partial", temporary), seen
    assert proc.returncode == 143
    assert "stopped by SIGTERM" in proc.stderr.read().decode()
    assert _no_process_left(proc.pid) == []
    assert snapshot(work / "bin") == before and partials(work) == []


def test_run_to_writes_beside_its_file_under_one_partial_suffix(tmp_path):
    """run_to FILE writes DIR/.NAME.<random>.partial (the names of data_prep.atomic); FILE in
    a folder written aside, or aside itself (DIR/.NAME.partial), gets .partial once."""
    script = """source recipes/common/stages.sh
    work_dir=$1 dry_run=false
    mkdir -p "$(aside gen)"
    run_to "$(aside gen)/test.out" ls -a "$(aside gen)"
    run_to "$(aside scores)" ls -a "$work_dir"
    run_to "$work_dir/bad" false || echo "failed: $?"
    """
    result = subprocess.run(["bash", "-c", script, "bash", str(tmp_path)], cwd=REPO,
                            capture_output=True, text=True)
    assert result.returncode == 0, result.stderr
    assert result.stdout.splitlines()[-1] == "failed: 1"
    gen = [n for n in (tmp_path / ".gen.partial" / "test.out").read_text().split() if n not in (".", "..")]
    assert len(gen) == 1 and re.fullmatch(r"\.test\.out\.\w{6}\.partial", gen[0]), gen
    listing = [n for n in (tmp_path / ".scores.partial").read_text().split() if n not in (".", "..")]
    assert listing[0] == ".gen.partial" and re.fullmatch(r"\.scores\.\w{6}\.partial", listing[1]), listing
    assert sorted(p.name for p in tmp_path.iterdir()) == [".gen.partial", ".scores.partial"]
    assert os.listdir(tmp_path / ".gen.partial") == ["test.out"]


# --- whole recipe stages ---------------------------------------------------------------------

@pytest.mark.slow
@needs_mirror
def test_a_forced_stage_with_a_bad_later_split_keeps_the_earlier_outputs(sliced, tmp_path):
    work = tmp_path / "w"
    shutil.copytree(sliced, work, symlinks=True)
    before = {name: snapshot(work / name) for name in ("tok", "spm", ".stages")}
    corrupt_line(work / "raw" / "test_2016_flickr.en", 3)
    result = recipe("multi30k_de_en", "--stage", "2", "--stop-stage", "4", "--force", "true",
                    "--work-dir", str(work), *SLICE_ARGS)
    assert result.returncode == 1
    assert f"{work / 'raw' / 'test_2016_flickr.en'}:3: not valid UTF-8" in result.stderr
    assert {name: snapshot(work / name) for name in before} == before and partials(work) == []
    # a split missing from the sentencepiece stage: spm/ as it was, too
    result = recipe("multi30k_de_en", "--stage", "3", "--stop-stage", "3", "--force", "true",
                    "--work-dir", str(work), "--vocab-size", "300", "--test-sets",
                    "test_2016_flickr test_2099", timeout=600)
    assert result.returncode == 1 and f"{work / 'tok' / 'test_2099.de'}: no such file" in result.stderr
    assert snapshot(work / "spm") == before["spm"] and partials(work) == []


def test_a_stage_before_its_input_exists_says_which_stage_to_run_and_creates_nothing(tmp_path):
    work = tmp_path / "w"
    result = recipe("multi30k_de_en", "--stage", "5", "--stop-stage", "5", "--work-dir", str(work))
    assert result.returncode == 1
    assert (f"stage 5 (train) needs {work / 'bin'}, which stage 4 (binarise) writes: "
            "run it first (--stage 4)") in result.stderr
    assert not work.exists()
    result = recipe("mlqe_pe_ape", "--stage", "4", "--stop-stage", "4", "--work-dir", str(work))
    assert result.returncode == 1 and "stage 4 (decode) needs" in result.stderr
    assert not work.exists()


def _triplet_folder(folder: Path, bad_test: bool = False) -> None:
    folder.mkdir(parents=True, exist_ok=True)
    for split, n in (("train", 6), ("dev", 2), ("test", 3)):
        for side, word in (("src", "the cat"), ("mt", "die Katze"), ("pe", "die Katze .")):
            lines = [f"{word} {i}" for i in range(n)]
            if bad_test and split == "test" and side == "pe":
                lines = lines[:-1]
            (folder / f"{split}.{side}").write_text("\n".join(lines) + "\n")


@pytest.mark.slow
def test_a_failed_post_editing_data_stage_keeps_the_earlier_triplets(tmp_path):
    good, bad, work = tmp_path / "good", tmp_path / "bad", tmp_path / "w"
    _triplet_folder(good)
    _triplet_folder(bad, bad_test=True)
    (bad / "train.mt").write_text("".join(f"other {i}\n" for i in range(6)))
    args = ("--stage", "1", "--stop-stage", "1", "--work-dir", str(work))
    result = recipe("wmt18_ape", *args, "--wmt-dir", str(good))
    assert result.returncode == 0, result.stderr
    before = snapshot(work / "text")
    result = recipe("wmt18_ape", *args, "--wmt-dir", str(bad))
    assert result.returncode == 1 and "line counts differ" in result.stderr
    assert snapshot(work / "text") == before and partials(work) == []
