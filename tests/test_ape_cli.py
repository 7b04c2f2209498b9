"""The post-editing pipeline as a user runs it, on a tiny random BERT: binarise triplets,
``fairseq-train --task ape --arch bert_ape``, ``fairseq-generate`` (an output for every test
triplet, TER with its sacrebleu signature) with the BERT folder gone, detokenise, score;
and the three recipes parse their options and print their commands."""
from __future__ import annotations

import json
import os
import random
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

from ape_helpers import tiny_bert, triplets

ROOT = Path(__file__).resolve().parents[1]
BIN = Path(sys.executable).parent
ENV = {**os.environ, "HF_HUB_OFFLINE": "1", "PYTHONPATH": str(ROOT), "OMP_NUM_THREADS": "1"}


def run(*command: str, cwd: Path = ROOT) -> str:
    result = subprocess.run(command, cwd=cwd, env=ENV, capture_output=True, text=True)
    assert result.returncode == 0, result.stdout[-3000:] + result.stderr[-3000:]
    return result.stdout + result.stderr


def fake_triplets(n: int, seed: int) -> list[tuple[str, str, str]]:
    rng = random.Random(seed)
    en, de = "the cat sat a dog".split(), "der die das katze hund sitzt ein".split()
    rows = []
    for _ in range(n):
        mt = " ".join(rng.choice(de) for _ in range(rng.randint(2, 5)))
        rows.append((" ".join(rng.choice(en) for _ in range(rng.randint(2, 5))), mt,
                     mt if rng.random() < 0.5 else mt + " ."))
    return rows


@pytest.mark.slow
def test_train_generate_detokenize_score(tmp_path):
    bert = tiny_bert(tmp_path / "bert")
    text = tmp_path / "text"
    for name, n, seed in (("train", 24, 0), ("dev", 5, 1), ("test", 11, 2)):
        triplets(text / name, fake_triplets(n, seed))
    ape = [sys.executable, "-m", "data_prep.ape"]
    run(*ape, "binarize", "--bert", str(bert), "--train", str(text / "train"), "--valid",
        str(text / "dev"), "--split", f"test={text / 'test'}", "--destdir", str(tmp_path / "bin"))
    run(str(BIN / "fairseq-train"), str(tmp_path / "bin"), "--user-dir", str(ROOT / "user_dir"),
        "--task", "ape", "--arch", "bert_ape", "--bert-path", str(bert), "--criterion",
        "label_smoothed_cross_entropy", "--label-smoothing", "0.1", "--optimizer", "adam",
        "--lr", "1e-3", "--lr-scheduler", "polynomial_decay", "--warmup-updates", "1",
        "--total-num-update", "2", "--max-update", "2", "--max-tokens", "200", "--cpu",
        "--save-dir", str(tmp_path / "ckpt"), "--no-epoch-checkpoints", "--disable-validation",
        "--num-workers", "0")
    shutil.rmtree(bert)  # decoding needs only the checkpoint and the binarised folder
    out = run(str(BIN / "fairseq-generate"), str(tmp_path / "bin"), "--user-dir",
              str(ROOT / "user_dir"), "--task", "ape", "--path",
              str(tmp_path / "ckpt" / "checkpoint_last.pt"), "--gen-subset", "test", "--beam", "2",
              "--batch-size", "4", "--max-len-a", "0", "--max-len-b", "8", "--cpu",
              "--scoring", "ter")
    ids = sorted(int(line.split("\t")[0][2:]) for line in out.splitlines() if line.startswith("D-"))
    assert ids == list(range(11))  # the default --required-batch-size-multiple 8 drops none
    assert "TER = " in out and "nrefs:1|case:lc|tok:tercom" in out and "sentences=11" in out
    (tmp_path / "gen.out").write_text(out, encoding="utf-8")
    run(*ape, "detokenize", "--generate-output", str(tmp_path / "gen.out"), "--triplets",
        str(text / "test"), "--wordpiece", str(tmp_path / "bin" / "wordpiece"), "--output",
        str(tmp_path / "hyp.txt"))
    assert len((tmp_path / "hyp.txt").read_text(encoding="utf-8").splitlines()) == 11
    table = run(*ape, "score", "--triplets", str(text / "test"), "--hyp", str(tmp_path / "hyp.txt"),
                "--json", str(tmp_path / "scores.json"))
    assert "do-nothing (mt)" in table and "case:mixed|tok:tercom" in table
    rows = json.loads((tmp_path / "scores.json").read_text())
    assert set(rows) == {"do-nothing (mt)", str(tmp_path / "hyp.txt")}
    assert all(r["sentences"] == 11 for r in rows.values())


def test_detokenize_refuses_missing_hypotheses(tmp_path):
    triplets(tmp_path / "t", fake_triplets(3, 0))
    (tmp_path / "gen.out").write_text("D-0\t-1.0\tder hund\nD-2\t-1.0\tdie katze\n")
    result = subprocess.run([sys.executable, "-m", "data_prep.ape", "detokenize",
                             "--generate-output", str(tmp_path / "gen.out"), "--triplets",
                             str(tmp_path / "t"), "--wordpiece", "unused", "--output",
                             str(tmp_path / "hyp")], cwd=ROOT, env=ENV, capture_output=True, text=True)
    assert result.returncode == 1 and "missing ids 1" in result.stderr
    assert not (tmp_path / "hyp").exists()


@pytest.mark.parametrize("recipe,args", [
    ("mlqe_pe_ape", ["--init", "random"]),
    ("synthetic_ape", ["--style", "both"]),
    ("wmt18_ape", ["--wmt-dir", "/data/wmt18", "--escape-dir", "/data/escape"]),
])
def test_recipes_print_their_commands(recipe, args, tmp_path):
    out = run("bash", str(ROOT / "recipes" / recipe / "run.sh"), "--dry-run", "true", "--device",
              "cpu", "--bert", str(tmp_path), "--work-dir", str(tmp_path / "w"), *args)
    assert "fairseq-train" in out and "--task ape" in out and "fairseq-generate" in out
    assert "--required-batch-size-multiple 1" in out and "-m data_prep.ape score" in out
    if recipe == "mlqe_pe_ape":
        assert "--bert-weights random" in out and "--lr-scheduler polynomial_decay" in out
    if recipe == "wmt18_ape":
        assert "--oversample 35" in out and "--arch bert_ape_base" in out
    if recipe == "synthetic_ape":
        assert "-m data_prep.ape folds" in out and out.count("-m data_prep.ape assemble") == 2
        assert "--restore-file" in out and "entmax_transformer_tiny" in out
    assert not (tmp_path / "w").exists()  # a dry run writes nothing
