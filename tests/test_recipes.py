"""The staged recipes: options, the plan, dry runs, checksum errors, the Multi30k data stages
on real data, and (when the model plugin imports) a tiny end-to-end run."""
from __future__ import annotations

import hashlib
import importlib.util
import io
import json
import re
import shutil
import subprocess
import sys
import tarfile
from pathlib import Path

import pytest

from recipe_helpers import MIRROR, RECIPES, REPO, SLICE_ARGS, needs_mirror, recipe, sliced  # noqa: F401

pytestmark = pytest.mark.slow  # every test here runs a recipe (bash, python -m data_prep, fairseq)

PAPER = ["iwslt17_de_en", "kftt_ja_en", "wmt16_ro_en", "wmt14_en_de"]
ALL = ["multi30k_de_en"] + PAPER


# --- options ---------------------------------------------------------------------------------

def test_help_lists_every_option_with_its_value():
    result = recipe("multi30k_de_en", "--help")
    assert result.returncode == 0
    for flag, value in (("--max-update", "'2000'"), ("--encoder-attn-normalizer", "'alpha_entmax'"),
                        ("--vocab-size", "'8000'"), ("--work-dir", "exp/multi30k_de_en'")):
        line = next(l for l in result.stdout.splitlines() if l.split()[:1] == [flag])
        assert value in line


@pytest.mark.parametrize("args, message", [
    (["--nope", "1"], "unknown option --nope"),
    (["--stage"], "option --stage needs a value"),
    (["--stage", "two"], "--stage 'two': expected a non-negative integer"),
    (["--tokenizer", "spacy"], "--tokenizer 'spacy': expected one of: moses none"),
    (["--attn-normalizer", "relu"], "expected one of: softmax sparsemax entmax15 alpha_entmax"),
    (["stage2"], "unexpected argument 'stage2'"),
])
def test_bad_options_are_refused(args, message):
    result = recipe("multi30k_de_en", *args)
    assert result.returncode == 1
    assert message in result.stderr


def test_environment_sets_options_and_flags_win(tmp_path):
    work = tmp_path / "w"
    result = recipe("multi30k_de_en", "--stage", "0", "--stop-stage", "0", "--work-dir", str(work),
                    env={"MAX_UPDATE": "7", "ARCH": "entmax_transformer_tiny"})
    assert re.search(r"--max-update +'7'", result.stdout)
    assert re.search(r"--arch +'entmax_transformer_tiny'", result.stdout)
    result = recipe("multi30k_de_en", "--stage=0", "--stop-stage", "0", "--max-update", "9",
                    "--work-dir", str(work), env={"MAX_UPDATE": "7"})
    assert re.search(r"--max-update +'9'", result.stdout)
    assert not work.exists()


EVERY_SCRIPT = [(n, "run.sh") for n in ALL + ["mlqe_pe_ape", "wmt18_ape", "synthetic_ape",
                                               "lvm_ssvae", "lvm_emergent", "lvm_bitvector"]]
EVERY_SCRIPT += [("multi30k_de_en", "compare.sh"), ("mlqe_pe_ape", "table.sh")]


@pytest.mark.parametrize("name, script", EVERY_SCRIPT)
def test_every_recipe_has_help_with_its_stages_and_the_same_option_names(name, script):
    result = recipe(name, "--help", script=script)
    assert result.returncode == 0, result.stderr
    out = result.stdout
    assert "stages (--stage N --stop-stage M):" in out and re.search(r"^  stage \d+: \w+", out, re.M)
    flags = {line.split()[0] for line in out.splitlines() if line.startswith("  --")}
    assert {"--stage", "--stop-stage", "--dry-run", "--work-dir", "--python-bin"} <= flags
    assert "--out" not in flags and "--python" not in flags
    assert "(also --out)" in out and "(also --python)" in out


def test_attention_types_come_from_the_registry(tmp_path):
    types = subprocess.run([sys.executable, "-m", "sparse_seq2seq.registry", "--types"], cwd=REPO,
                           capture_output=True, text=True, check=True).stdout.splitlines()
    flags = [line.split()[1] for line in types]
    help_ = recipe("multi30k_de_en", "--help").stdout
    declared = [l.split()[0] for l in help_.splitlines() if re.match(r"  --\S+-attn-normalizer ", l)]
    assert declared == flags
    for name, args in (("multi30k_de_en", ["--stage", "5", "--stop-stage", "5"]),
                       ("mlqe_pe_ape", ["--stage", "3", "--stop-stage", "3", "--bert", str(tmp_path)])):
        out = recipe(name, *args, "--dry-run", "true", "--attn-normalizer", "sparsemax",
                     "--work-dir", str(tmp_path / "w")).stdout
        train = _train_line(out)
        assert [f for f in re.findall(r"(--\S+-attn-normalizer) sparsemax", train)] == flags


def test_old_option_spellings_are_aliases(tmp_path):
    work = tmp_path / "w"
    result = recipe("lvm_ssvae", "--stage", "3", "--stop-stage", "3", "--dry-run", "true",
                    "--out", str(work), "--python", sys.executable)
    assert result.returncode == 0, result.stderr
    assert f"{sys.executable} -m sparse_seq2seq.lvm.experiments.reporting {work} " in result.stdout
    assert not work.exists()


def test_no_recipe_scrapes_stage_names_or_keeps_its_own_runner():
    for path in RECIPES.glob("*/*.sh"):
        text = path.read_text()
        if path.parent.name == "common":
            continue
        assert "stage_names" not in text and "sed -n" not in text, path
        assert not re.search(r"^(run|run_to)\(\)", text, re.M), path
        assert not re.search(r"\$stage -le \d", text), path


# --- the plan (stage 0) and dry runs ---------------------------------------------------------

@pytest.mark.parametrize("name", ALL)
def test_plan_shows_sources_and_checksums_and_writes_nothing(name, tmp_path):
    work = tmp_path / "w"
    result = recipe(name, "--stage", "0", "--stop-stage", "0", "--work-dir", str(work))
    assert result.returncode == 0, result.stderr
    out = result.stdout
    assert f"recipe {name}:" in out and "stage 5: train" in out
    urls = re.findall(r"url +(\S+)", out)
    assert urls and all(u.startswith(("http://", "https://")) for u in urls)
    if name == "multi30k_de_en":
        assert "NOT RECORDED" not in out and out.count("sha256 ") == 8
    else:
        assert "NOT RECORDED" in out
    assert not work.exists()


def _train_line(out: str) -> str:
    return next(line for line in out.splitlines() if line.startswith("+ fairseq-train "))


@pytest.mark.parametrize("name, arch, interval", [
    ("iwslt17_de_en", "entmax_transformer", 5000), ("kftt_ja_en", "entmax_transformer", 5000),
    ("wmt16_ro_en", "entmax_transformer", 10000), ("wmt14_en_de", "entmax_transformer_wmt_en_de", 10000)])
def test_paper_recipes_train_with_the_paper_setup(name, arch, interval, tmp_path):
    work = tmp_path / "w"
    result = recipe(name, "--stage", "1", "--dry-run", "true", "--work-dir", str(work))
    assert result.returncode == 0, result.stderr
    train = _train_line(result.stdout)
    for piece in ("--task translation_sparse ", f"--arch {arch} ", "--encoder-attn-normalizer alpha_entmax",
                  "--decoder-self-attn-normalizer alpha_entmax",
                  "--decoder-cross-attn-normalizer alpha_entmax", "--attn-alpha-init random",
                  "--criterion entmax_loss --loss-alpha 1.5", "--lr 6.25e-4",
                  "--lr-scheduler inverse_sqrt", "--warmup-updates 20000", "--max-tokens 8192",
                  f"--validate-interval-updates {interval}", "--share-all-embeddings",
                  f"--user-dir {REPO / 'user_dir'}"):
        assert piece in train
    assert "--vocab-size 32000" in result.stdout and "--model-type unigram" in result.stdout
    assert "--character-coverage 1.0" in result.stdout
    assert "-m data_prep binarize" in result.stdout
    generate = next(l for l in result.stdout.splitlines() if l.startswith("+ fairseq-generate"))
    assert "--required-batch-size-multiple 1" in generate and "--remove-bpe sentencepiece" in generate
    assert "--task translation_sparse " in generate
    assert re.search(r"-m data_prep score --reference \S+/raw/\w+\.\w+ --hypotheses \S+\.detok "
                     r"--test-set \w+ --ter-case-sensitive false --json \S+/\.scores\.partial/\w+\.json",
                     result.stdout)
    assert "+ sparse-seq2seq-heads" in result.stdout
    export = next(l for l in result.stdout.splitlines() if l.startswith("+ sparse-seq2seq-export "))
    test = {"iwslt17_de_en": "tst2015", "kftt_ja_en": "test", "wmt16_ro_en": "newstest2016",
            "wmt14_en_de": "newstest2014"}[name]
    for piece in (f"{work}/checkpoints/checkpoint_best.pt --data {work}/bin --spm {work}/spm/spm.model",
                  f"--out {work}/.export.partial --scores {work}/scores/{test}.json",
                  f"--tokenizer moses --name {name} --train-command fairseq-train\\ {work}/bin"):
        assert piece in export
    assert not work.exists()


def test_softmax_baseline_and_other_criteria_drop_entmax_only_flags(tmp_path):
    result = recipe("multi30k_de_en", "--stage", "5", "--stop-stage", "5", "--dry-run", "true",
                    "--arch", "transformer", "--criterion", "label_smoothed_cross_entropy",
                    "--work-dir", str(tmp_path / "w"))
    train = _train_line(result.stdout)
    assert "--arch transformer " in train and "--label-smoothing 0.1" in train
    assert "normalizer" not in train and "--loss-alpha" not in train
    result = recipe("multi30k_de_en", "--stage", "5", "--stop-stage", "5", "--dry-run", "true",
                    "--attn-normalizer", "entmax15", "--work-dir", str(tmp_path / "w"))
    assert _train_line(result.stdout).count(" entmax15 ") == 3


def test_demo_stops_on_a_number_of_updates_and_ends_with_the_export(tmp_path):
    work = tmp_path / "w"
    result = recipe("multi30k_de_en", "--stage", "5", "--dry-run", "true", script="demo.sh",
                    env={"WORK_DIR": str(work)})
    assert result.returncode == 0, result.stderr
    train = _train_line(result.stdout)
    assert "--max-update 600 " in train and "--stop-time-hours" not in train
    assert "--seed 1 " in train and "--arch entmax_transformer_tiny " in train
    assert "+ sparse-seq2seq-export " in result.stdout
    assert f"--scores {work}/scores/test_2016_flickr.json" in result.stdout
    assert not work.exists()


# --- downloads: missing checksums, a mirror for any corpus -----------------------------------

@pytest.mark.parametrize("name", PAPER)
def test_download_without_recorded_checksums_fails_before_downloading(name, tmp_path):
    work = tmp_path / "w"
    result = recipe(name, "--stage", "1", "--stop-stage", "1", "--work-dir", str(work))
    assert result.returncode == 1
    assert "no sha256 checksum recorded for:" in result.stderr
    assert "--allow-unverified true" in result.stderr
    assert not (work / "downloads").exists() and not (work / "raw").exists()


def _kftt_mirror(root: Path) -> str:
    """A small archive laid out like kftt-data-1.0.tar.gz; returns its sha256."""
    text = {
        "train": (["京都は日本の都市である。", "金閣寺は有名な寺です。", "鴨川が流れている。"],
                  ["Kyoto is a city in Japan.", "Kinkaku-ji is a famous temple.", "The Kamo River flows."]),
        "dev": (["東寺は古い。"], ["To-ji is old."]),
        "test": (["嵐山は美しい。", "祇園祭は七月にある。"], ["Arashiyama is beautiful.", "Gion Matsuri is in July."]),
    }
    buffer = io.BytesIO()
    with tarfile.open(fileobj=buffer, mode="w:gz") as tar:
        for split, (ja, en) in text.items():
            for lang, lines in (("ja", ja), ("en", en)):
                data = ("\n".join(lines) + "\n").encode("utf-8")
                info = tarfile.TarInfo(f"kftt-data-1.0/data/orig/kyoto-{split}.{lang}")
                info.size = len(data)
                tar.addfile(info, io.BytesIO(data))
    (root / "kftt_ja_en").mkdir(parents=True)
    (root / "kftt_ja_en" / "kftt-data-1.0.tar.gz").write_bytes(buffer.getvalue())
    return hashlib.sha256(buffer.getvalue()).hexdigest()


def test_paper_recipe_reads_a_mirror_with_a_checksum_file(tmp_path):
    mirror = tmp_path / "mirror"
    sha = _kftt_mirror(mirror)
    work = tmp_path / "w"
    sums = tmp_path / "kftt.sha256"
    sums.write_text(f"{'f' * 64}  kftt-data-1.0.tar.gz\n")
    result = recipe("kftt_ja_en", "--stage", "1", "--stop-stage", "1", "--work-dir", str(work),
                    "--checksums", str(sums), env={"DATA_MIRROR": str(mirror)})
    assert result.returncode == 1 and "sha256 mismatch for kftt-data-1.0.tar.gz" in result.stderr
    assert list((work / "downloads").iterdir()) == []
    sums.write_text(f"{sha}  kftt-data-1.0.tar.gz\n")
    result = recipe("kftt_ja_en", "--stage", "1", "--stop-stage", "1", "--work-dir", str(work),
                    "--checksums", str(sums), env={"DATA_MIRROR": str(mirror)})
    assert result.returncode == 0, result.stderr
    assert f"copying from mirror {mirror / 'kftt_ja_en' / 'kftt-data-1.0.tar.gz'}" in result.stdout
    assert (work / "raw" / "test.ja").read_text(encoding="utf-8").splitlines()[1] == "祇園祭は七月にある。"
    assert (work / "raw" / "train.en").read_text().splitlines()[0] == "Kyoto is a city in Japan."
    assert (work / "raw" / "valid.ja").read_text(encoding="utf-8") == "東寺は古い。\n"


# --- Multi30k: real data ---------------------------------------------------------------------

@needs_mirror
def test_multi30k_download_stage_reads_the_mirror(tmp_path):
    work = tmp_path / "w"
    result = recipe("multi30k_de_en", "--stage", "1", "--stop-stage", "1", "--work-dir", str(work),
                    env={"DATA_MIRROR": str(MIRROR)})
    assert result.returncode == 0, result.stderr
    assert "copying from mirror" in result.stdout and "sha256 ok" in result.stdout
    counts = {p.name: sum(1 for _ in open(p, encoding="utf-8")) for p in (work / "raw").iterdir()}
    assert counts == {"train.de": 29000, "train.en": 29000, "valid.de": 1014, "valid.en": 1014,
                      "test_2016_flickr.de": 1000, "test_2016_flickr.en": 1000,
                      "test_2017_flickr.de": 1000, "test_2017_flickr.en": 1000}
    again = recipe("multi30k_de_en", "--stage", "1", "--stop-stage", "1", "--work-dir", str(work),
                   env={"DATA_MIRROR": str(MIRROR)})
    assert "up to date" in again.stdout


def test_multi30k_data_stages_tokenise_segment_and_binarise(sliced):
    log = (sliced / "stages_2_4.log").read_text()
    assert re.search(r"=== stage 2 done in \d+ s", log) and "=== stage 4 done" in log
    tok = (sliced / "tok" / "train.en").read_text(encoding="utf-8").splitlines()
    assert len(tok) == 400 and tok[0].endswith(" .")
    assert (sliced / "spm" / "spm.model").is_file()
    assert len((sliced / "spm" / "test_2016_flickr.de").read_text().splitlines()) == 30
    assert (sliced / "bin" / "splits.tsv").read_text().splitlines() == [
        "train\ttrain\t400", "valid\tvalid\t40", "test\ttest_2016_flickr\t30"]
    assert (sliced / "bin" / "dict.de.txt").read_bytes() == (sliced / "bin" / "dict.en.txt").read_bytes()
    for split in ("train", "valid", "test"):
        assert (sliced / "bin" / f"{split}.de-en.en.bin").stat().st_size > 0


def test_multi30k_data_stages_are_skipped_when_up_to_date(sliced):
    result = recipe("multi30k_de_en", "--stage", "2", "--stop-stage", "4", "--work-dir", str(sliced),
                    *SLICE_ARGS)
    assert result.returncode == 0
    assert result.stdout.count("up to date:") == 3
    result = recipe("multi30k_de_en", "--stage", "2", "--stop-stage", "3", "--work-dir", str(sliced),
                    "--vocab-size", "290", "--test-sets", "test_2016_flickr")
    assert result.returncode == 0 and "up to date: " + str(sliced / "tok") in result.stdout
    assert "spm-train" in result.stdout
    assert not (sliced / ".stages" / "4").exists()  # the binaries are now out of date


def test_bad_raw_data_stops_the_recipe_naming_file_and_line(sliced, tmp_path):
    work = tmp_path / "w"
    shutil.copytree(sliced / "raw", work / "raw")
    lines = (work / "raw" / "valid.en").read_bytes().split(b"\n")
    lines[11] = b"\xc0 broken"
    (work / "raw" / "valid.en").write_bytes(b"\n".join(lines))
    result = recipe("multi30k_de_en", "--stage", "2", "--stop-stage", "4", "--work-dir", str(work),
                    *SLICE_ARGS)
    assert result.returncode == 1
    assert f"{work / 'raw' / 'valid.en'}:12: not valid UTF-8" in result.stderr
    assert sorted(p.name for p in work.iterdir()) == ["raw"]  # not even the train split's tokens


# --- end to end, only where the model plugin is importable -----------------------------------

def _plugin_imports() -> bool:
    if importlib.util.find_spec("sparse_seq2seq.fairseq_plugin") is None:
        return False
    probe = subprocess.run([sys.executable, "-c", "import sparse_seq2seq.fairseq_plugin"],
                           cwd=REPO, capture_output=True)
    return probe.returncode == 0


def test_tiny_model_trains_translates_every_sentence_and_is_scored(sliced):
    """Needs the model code (skipped when sparse_seq2seq.fairseq_plugin does not import):
    stages 5-9 with entmax_transformer_tiny for two updates: scores.json and the model folder."""
    if not _plugin_imports():
        pytest.skip("model plugin (sparse_seq2seq.fairseq_plugin) not importable")
    result = recipe("multi30k_de_en", "--stage", "5", "--stop-stage", "9", "--work-dir", str(sliced),
                    *SLICE_ARGS, "--arch", "entmax_transformer_tiny", "--model-args", "",
                    "--max-update", "2", "--max-tokens", "1024", "--warmup-updates", "2",
                    "--train-args", "--disable-validation", "--checkpoint", "checkpoint_last.pt",
                    "--beam", "2", "--gen-batch-size", "10", "--gen-args", "--max-len-b 12",
                    "--tensorboard", "false", timeout=600)
    assert result.returncode == 0, result.stdout[-3000:] + result.stderr[-3000:]
    hyps = (sliced / "generate" / "test_2016_flickr.detok").read_text(encoding="utf-8")
    assert len(hyps.splitlines()) == 30
    scores = (sliced / "scores" / "test_2016_flickr.txt").read_text()
    assert re.search(r"BLEU\|nrefs:1\|case:mixed\|eff:no\|tok:13a\|smooth:exp\|version:\S+ = ", scores)
    assert re.search(r"TER\|nrefs:1\|.*\|version:\S+ = ", scores)
    assert "test_2016_flickr  BLEU|" in result.stdout and "test_2016_flickr  chrF2|" in result.stdout
    saved = json.loads((sliced / "scores" / "test_2016_flickr.json").read_text())
    assert list(saved) == ["test_set", "bleu", "ter", "chrf"] and saved["test_set"] == "test_2016_flickr"
    for key in ("bleu", "ter", "chrf"):
        assert set(saved[key]) == {"score", "signature"} and isinstance(saved[key]["score"], float)
        assert f"|{saved[key]['signature']} = {saved[key]['score']:.2f}" in scores
    card = (sliced / "export" / "README.md").read_text(encoding="utf-8")
    assert saved["chrf"]["signature"] in card and "fairseq-train" in card
    assert (sliced / "export" / "model.pt").is_file() and not (sliced / ".export.partial").exists()
