"""fairseq's command line with the plugin: train with α-entmax attention and the entmax loss,
then fairseq-generate (every sentence translated, BLEU and TER with signatures, beam search
with −inf log-probabilities), fairseq-interactive, the hub interface, and checkpoints that
load with torch's safe unpickler."""
import argparse
import pickle
import re

import pytest
import torch

from fairseq_helpers import BIN, USER_DIR, make_corpus, run, train

pytestmark = pytest.mark.slow  # every test here runs fairseq's commands

TEST_SENTENCES = 21  # not a multiple of fairseq's default --required-batch-size-multiple (8)


@pytest.fixture(scope="module")
def trained(tmp_path_factory):
    root = tmp_path_factory.mktemp("cli")
    data_bin = make_corpus(root, train=200, valid=8, test=TEST_SENTENCES)
    proc = train(data_bin, root / "ckpt", ["--task", "translation_sparse", "--criterion", "entmax_loss", "--loss-alpha", "1.5",
                                           "--attn-alpha-init", "random"], updates=6)
    return root, data_bin, root / "ckpt" / "checkpoint_last.pt", proc.stdout + proc.stderr


def generate(data_bin, ckpt, *extra):
    return run([str(BIN / "fairseq-generate"), str(data_bin), "--user-dir", USER_DIR, "--path",
                str(ckpt), "--gen-subset", "test", "--beam", "5", "--batch-size", "8",
                "--required-batch-size-multiple", "1", "--cpu", "--task", "translation_sparse", *extra])


def test_training_logs_alpha_per_head_and_finite_loss(trained):
    log = trained[3]
    assert re.search(r"alpha/enc_l0_h0 1\.\d+", log) and re.search(r"alpha/dec_cross_l1_h3 1\.\d+", log)
    losses = re.findall(r"\| loss ([^ ]+) \|", log)
    assert losses and all(float(v) == float(v) and float(v) < 1e9 for v in losses)
    assert re.search(r"gold_zero 0?\.\d+", log)


def test_generate_translates_every_sentence_and_scores_ter(trained):
    _, data_bin, ckpt, _ = trained
    out = generate(data_bin, ckpt, "--scoring", "ter").stdout
    hyps = re.findall(r"^H-(\d+)\t", out, flags=re.M)
    assert sorted(map(int, hyps)) == list(range(TEST_SENTENCES))
    assert re.search(r"TER = [\d.]+ \(nrefs:1\|case:lc\|tok:tercom\|norm:no\|punct:yes\|asian:no\|version:[\d.]+\) "
                     rf"sentences={TEST_SENTENCES}", out)
    cased = generate(data_bin, ckpt, "--scoring", "ter", "--ter-case-sensitive").stdout
    assert "case:mixed" in cased


def test_beam_search_stops_at_max_length_with_minus_inf_scores(trained):
    _, data_bin, ckpt, _ = trained
    out = generate(data_bin, ckpt, "--max-len-a", "0", "--max-len-b", "2", "--scoring", "sacrebleu").stdout
    hyps = re.findall(r"^H-(\d+)\t(\S+)\t(.*)$", out, flags=re.M)
    assert len(hyps) == TEST_SENTENCES
    assert all(len(text.split()) <= 2 for _, _, text in hyps)
    assert "BLEU" in out


def test_interactive_translates_stdin(trained):
    _, data_bin, ckpt, _ = trained
    proc = run([str(BIN / "fairseq-interactive"), str(data_bin), "--user-dir", USER_DIR, "--path",
                str(ckpt), "--beam", "3", "--cpu", "--source-lang", "de", "--target-lang", "en", "--task", "translation_sparse"],
               input="ein mann .\nzwei hunde spielen .\n")
    assert len(re.findall(r"^H-\d+\t", proc.stdout, flags=re.M)) == 2


def test_hub_interface_loads_and_translates(trained):
    from sparse_seq2seq.fairseq_plugin.entmax_transformer import EntmaxTransformerModel

    _, data_bin, ckpt, _ = trained
    hub = EntmaxTransformerModel.from_pretrained(str(ckpt.parent), checkpoint_file=ckpt.name,
                                                 data_name_or_path=str(data_bin), user_dir=USER_DIR,
                                                 source_lang="de", target_lang="en")
    out = hub.translate(["ein mann .", "eine frau ."], beam=2)
    assert len(out) == 2 and all(isinstance(s, str) for s in out)


def test_checkpoint_loads_with_weights_only(trained):
    import sparse_seq2seq.fairseq_plugin  # noqa: F401  (registers the safe globals)

    state = torch.load(trained[2], map_location="cpu", weights_only=True)
    assert any(k.endswith("alpha_logit") for k in state["model"])


class Smuggled:
    def __reduce__(self):
        return (print, ("code ran while loading a checkpoint",))


def test_checkpoint_with_unknown_global_is_refused(tmp_path):
    from fairseq import checkpoint_utils

    import sparse_seq2seq.fairseq_plugin  # noqa: F401

    path = tmp_path / "evil.pt"
    torch.save({"model": {}, "cfg": {"model": argparse.Namespace(arch="x")}, "x": Smuggled()}, path)
    with pytest.raises(pickle.UnpicklingError, match=r"(?s)Unsupported global.*print|weights_only"):
        checkpoint_utils.load_checkpoint_to_cpu(str(path))


@pytest.mark.parametrize("damage", ["truncated", "empty"])
def test_generate_refuses_a_damaged_checkpoint_in_one_line_naming_it(trained, tmp_path, damage):
    import subprocess

    _, data_bin, ckpt, _ = trained
    bad = tmp_path / f"{damage}.pt"
    bad.write_bytes(ckpt.read_bytes()[: ckpt.stat().st_size // 3] if damage == "truncated" else b"")
    proc = subprocess.run([str(BIN / "fairseq-generate"), str(data_bin), "--user-dir", USER_DIR,
                           "--path", str(bad), "--gen-subset", "test", "--cpu", "--task",
                           "translation_sparse"], capture_output=True, text=True)
    assert proc.returncode != 0
    assert "Traceback" not in proc.stderr
    reason = "truncated" if damage == "truncated" else "empty"
    assert re.search(rf"^fairseq-generate: error: {re.escape(str(bad))}: not a usable checkpoint: .*{reason}",
                     proc.stderr, flags=re.M), proc.stderr[-2000:]
