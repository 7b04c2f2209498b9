"""``sparse-seq2seq-export``: a tiny model trained on sentencepiece-encoded text becomes a
folder that ``fairseq-interactive`` and ``from_pretrained`` use on raw text with no flags
for the tokenizer or sentencepiece, with a model card giving its scores and learned α."""
from __future__ import annotations

import json
import re

import pytest
import torch

pytest.importorskip("fairseq")
pytest.importorskip("sentencepiece")

from fairseq_helpers import BIN, USER_DIR, make_spm_corpus, run, train  # noqa: E402
from sparse_seq2seq.fairseq_plugin.export import main as export_main  # noqa: E402

SCORES = {"test_set": "test_2016_flickr",
          "bleu": {"score": 12.345, "signature": "nrefs:1|case:mixed|eff:no|tok:13a|smooth:exp|version:2.6.0"},
          "ter": {"score": 80.5, "signature": "nrefs:1|case:lc|tok:tercom|norm:no|punct:yes|asian:no|version:2.6.0"},
          "chrf": {"score": 30.25, "signature": "nrefs:1|case:mixed|eff:yes|nc:6|nw:0|space:no|version:2.6.0"}}
TRAIN_COMMAND = "fairseq-train bin --arch entmax_transformer_tiny --task translation_sparse"
pytestmark = pytest.mark.slow  # trains a model

RAW = ["ein mann fährt fahrrad.", "zwei hunde spielen im schnee."]  # the corpus is lowercased


@pytest.fixture(scope="module")
def exported(tmp_path_factory):
    root = tmp_path_factory.mktemp("export")
    data_bin, spm = make_spm_corpus(root, train=200, valid=8, test=8, vocab_size=300)
    train(data_bin, root / "ckpt", ["--task", "translation_sparse", "--attn-alpha-init", "random"], updates=4)
    (root / "scores.json").write_text(json.dumps(SCORES), encoding="utf-8")
    ckpt = root / "ckpt" / "checkpoint_last.pt"
    out = root / "model"
    assert export_main([str(ckpt), "--data", str(data_bin), "--spm", str(spm), "--out", str(out),
                        "--scores", str(root / "scores.json"), "--tokenizer", "moses",
                        "--name", "tiny-de-en", "--train-command", TRAIN_COMMAND]) == 0
    return root, ckpt, out


def test_folder_holds_weights_without_optimizer_state_dictionaries_and_spm(exported):
    _, ckpt, out = exported
    assert sorted(p.name for p in out.iterdir()) == ["README.md", "dict.de.txt", "dict.en.txt", "model.pt",
                                                     "sentencepiece.bpe.model"]
    original = torch.load(ckpt, weights_only=True)
    state = torch.load(out / "model.pt", weights_only=True)
    assert original["last_optimizer_state"] and state["last_optimizer_state"] is None
    assert state["model"].keys() == original["model"].keys()
    assert all(torch.equal(state["model"][k], v) for k, v in original["model"].items())
    assert state["cfg"]["bpe"]["_name"] == "sentencepiece" and state["cfg"]["tokenizer"]["_name"] == "moses"


def test_interactive_translates_raw_text_with_no_text_flags(exported):
    _, _, out = exported
    proc = run([str(BIN / "fairseq-interactive"), str(out), "--path", str(out / "model.pt"),
                "--user-dir", USER_DIR, "--task", "translation_sparse", "-s", "de", "-t", "en",
                "--beam", "2", "--cpu"], input="\n".join(RAW) + "\n")
    sources = re.findall(r"^S-\d+\t(.*)$", proc.stdout, flags=re.M)
    detokenized = re.findall(r"^D-\d+\t\S+\t(.*)$", proc.stdout, flags=re.M)
    assert len(sources) == len(detokenized) == len(RAW)
    # the source went through Moses (the final period split off) and sentencepiece ...
    decoded = ["".join(s.split()).replace("\u2581", " ").strip() for s in sources]
    assert decoded[0] == "ein mann fährt fahrrad ."
    assert all("\u2581" in s for s in sources)
    # ... and the output (D- lines) was turned back into plain text
    assert not any("\u2581" in d for d in detokenized)


def test_from_pretrained_translates_raw_text(exported):
    from sparse_seq2seq.fairseq_plugin.entmax_transformer import EntmaxTransformerModel

    _, _, out = exported
    hub = EntmaxTransformerModel.from_pretrained(str(out))
    assert "\u2581" in hub.apply_bpe(hub.tokenize(RAW[0]))
    translations = hub.translate(RAW, beam=2)
    assert len(translations) == len(RAW)
    assert all(isinstance(t, str) and "\u2581" not in t for t in translations)


def test_card_gives_data_command_scores_and_alpha_per_head(exported):
    from sparse_seq2seq.analysis.collect import checkpoint_infos

    _, ckpt, out = exported
    card = (out / "README.md").read_text(encoding="utf-8")
    assert card.startswith("# tiny-de-en\n") and TRAIN_COMMAND in card
    for key, label in (("bleu", "BLEU"), ("ter", "TER"), ("chrf", "chrF")):
        assert f"| {label} | {SCORES[key]['score']:.2f} | `{SCORES[key]['signature']}` |" in card
    assert "test_2016_flickr" in card and "4 updates" in card
    infos = checkpoint_infos(torch.load(ckpt, weights_only=True))
    assert len({round(a, 3) for i in infos for a in i.alphas}) > 1  # random init: heads differ
    for info in infos:
        row = " | ".join(f"{a:.3f}" for a in info.alphas)
        assert re.search(rf"\| {info.layer} \| alpha_entmax \| {re.escape(row)} \|", card), info


def test_bad_scores_file_is_named_and_the_folder_left_as_it_was(exported, capsys):
    root, ckpt, out = exported
    before = {p.name: p.read_bytes() for p in out.iterdir()}
    bad = root / "bad_scores.json"
    bad.write_text(json.dumps({k: v for k, v in SCORES.items() if k != "chrf"}), encoding="utf-8")
    assert export_main([str(ckpt), "--data", str(root / "bin"), "--spm", str(root / "spm" / "spm.model"),
                        "--out", str(out), "--scores", str(bad)]) == 1
    assert f'{bad}: needs "chrf"' in capsys.readouterr().err
    assert {p.name: p.read_bytes() for p in out.iterdir()} == before
    assert sorted(p.name for p in root.iterdir() if p.name.startswith("model")) == ["model"]
