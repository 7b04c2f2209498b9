"""Head analysis: the statistics against hand-computed values on tiny tensors, the α log
parser, the support outline, and ``sparse-seq2seq-heads`` end to end on a tiny trained
checkpoint (α in its table = 1 + sigmoid of the checkpoint's ``alpha_logit``)."""
from __future__ import annotations

import json
import math
import re
from pathlib import Path

import numpy as np
import pytest
import torch

from sparse_seq2seq.analysis.stats import (HeadStatistics, available_keys, js_divergence,
                                           support_sizes, valid_pairs)
from sparse_seq2seq.analysis.training_log import parse_alpha_name, read_alpha_log
from sparse_seq2seq.attention import SparseMultiheadAttention

import fairseq_helpers as fh

LN2 = math.log(2)


# -- statistics on hand-made tensors ---------------------------------------------------------
def test_valid_pairs_padding_and_causal():
    query_real = torch.tensor([[True, True, False]])
    key_real = torch.tensor([[True, True, False]])
    plain = valid_pairs(query_real, key_real)
    assert plain[0].tolist() == [[True, True, False], [True, True, False], [False, False, False]]
    causal = valid_pairs(query_real, key_real, causal=True)
    assert causal[0].tolist() == [[True, False, False], [True, True, False], [False, False, False]]
    assert available_keys(causal).tolist() == [[1, 2, 0]]
    with pytest.raises(ValueError, match="as many queries as keys"):
        valid_pairs(torch.ones(1, 2, dtype=torch.bool), key_real, causal=True)


def test_support_sizes_ignore_padding():
    # one sentence, 2 heads, 2 queries, 4 keys; key 3 is padding
    probs = torch.tensor([[[[0.5, 0.5, 0.0, 0.0], [0.2, 0.3, 0.5, 0.0]],
                           [[1.0, 0.0, 0.0, 0.0], [0.0, 0.0, 0.6, 0.4]]]])
    valid = valid_pairs(torch.tensor([[True, True]]), torch.tensor([[True, True, True, False]]))
    # the 0.4 on the padded key (which a masked model never gives) is not counted
    assert support_sizes(probs, valid).tolist() == [[[2, 3], [1, 1]]]


def test_head_statistics_hand_computed():
    # 2 sentences, 2 heads, 3 queries, 3 keys; sentence 1 has one padded position
    probs = torch.zeros(2, 2, 3, 3)
    probs[0, 0] = torch.tensor([[1 / 3] * 3, [0.5, 0.5, 0.0], [1.0, 0.0, 0.0]])
    probs[0, 1] = torch.tensor([[1 / 3] * 3, [0.2, 0.3, 0.5], [0.1, 0.1, 0.8]])
    probs[1, 0] = torch.tensor([[0.5, 0.5, 0.0], [0.5, 0.5, 0.0], [0.0, 0.0, 0.0]])
    probs[1, 1] = torch.tensor([[1.0, 0.0, 0.0], [0.0, 1.0, 0.0], [0.0, 0.0, 0.0]])
    real = torch.tensor([[True, True, True], [True, True, False]])
    stats = HeadStatistics(num_heads=2)
    stats.update(probs, valid_pairs(real, real))
    assert stats.queries == 5 and stats.js_queries == 5
    # head 0 supports: 3, 2, 1 | 2, 2 ; head 1: 3, 3, 3 | 1, 1
    torch.testing.assert_close(stats.mean_support, torch.tensor([10 / 5, 11 / 5], dtype=torch.float64))
    torch.testing.assert_close(stats.density, torch.tensor([(1 + 2 / 3 + 1 / 3 + 1 + 1) / 5,
                                                            (1 + 1 + 1 + 0.5 + 0.5) / 5], dtype=torch.float64))
    torch.testing.assert_close(stats.dense_fraction, torch.tensor([3 / 5, 3 / 5], dtype=torch.float64))
    assert stats.fully_dense_heads.tolist() == [False, False]
    # a second batch accumulates: one fully dense query per head keeps the counts consistent
    stats.update(torch.full((1, 2, 1, 2), 0.5), torch.ones(1, 1, 2, dtype=torch.bool))
    assert stats.queries == 6
    torch.testing.assert_close(stats.mean_support, torch.tensor([12 / 6, 13 / 6], dtype=torch.float64))


def test_softmax_heads_are_fully_dense_and_sparsemax_heads_are_not():
    torch.manual_seed(0)
    x = torch.randn(7, 3, 16) * 4
    pad = torch.zeros(3, 7, dtype=torch.bool)
    pad[1, 5:] = True
    real = ~pad
    for name, dense in (("softmax", True), ("sparsemax", False)):
        attn = SparseMultiheadAttention(16, 4, self_attention=True, normalizer=name).eval()
        attn.keep_attention = True
        attn(x, x, x, key_padding_mask=pad)
        stats = HeadStatistics(4)
        stats.update(attn.last_attention, valid_pairs(real, real))
        assert stats.queries == 7 + 5 + 7
        assert bool(stats.fully_dense_heads.all()) is dense
        if dense:  # every query attends to all its real tokens: (7·7 + 5·5 + 7·7) / 19
            torch.testing.assert_close(stats.mean_support, torch.full((4,), 123 / 19, dtype=torch.float64))
        else:
            assert (stats.mean_support < 123 / 19).all()


def test_js_is_zero_for_identical_heads():
    torch.manual_seed(1)
    p = torch.softmax(torch.randn(2, 1, 5, 6), -1).expand(2, 4, 5, 6)
    valid = torch.ones(2, 5, 6, dtype=torch.bool)
    js, defined = js_divergence(p, valid)
    assert defined.all()
    torch.testing.assert_close(js, torch.zeros(2, 5, dtype=torch.float64), atol=1e-7, rtol=0)


@pytest.mark.parametrize("keys", (4, 8, 16))
def test_js_of_disjoint_one_hot_heads_is_log_heads_over_log_n(keys):
    # 4 heads each on a different token: mixture uniform over 4 tokens, each entropy 0
    p = torch.zeros(1, 4, 1, keys)
    for h in range(4):
        p[0, h, 0, h] = 1.0
    js, _ = js_divergence(p, torch.ones(1, 1, keys, dtype=torch.bool))
    assert js.item() == pytest.approx(math.log(4) / math.log(keys))  # 1, 2/3, 1/2


def test_js_hand_computed_and_base_is_the_number_of_real_keys():
    # heads [1, 0] and [1/2, 1/2] over 2 real keys (+1 padded): mixture [3/4, 1/4]
    p = torch.tensor([[[[1.0, 0.0, 0.0]], [[0.5, 0.5, 0.0]]]])
    valid = torch.tensor([[[True, True, False]]])
    mixture = -(0.75 * math.log(0.75) + 0.25 * math.log(0.25)) / LN2
    expected = mixture - (0.0 + 1.0) / 2
    js, defined = js_divergence(p, valid)
    assert defined.item() and js.item() == pytest.approx(expected)  # 0.3113


def test_js_leaves_out_queries_with_one_key():
    # causal self-attention: the first query sees one key; JS there is undefined (0/0)
    probs = torch.zeros(1, 2, 3, 3)
    probs[0, :, 0, 0] = 1.0
    probs[0, 0, 1, :2] = torch.tensor([1.0, 0.0])
    probs[0, 1, 1, :2] = torch.tensor([0.0, 1.0])
    probs[0, :, 2] = torch.tensor([1 / 3] * 3)
    real = torch.ones(1, 3, dtype=torch.bool)
    valid = valid_pairs(real, real, causal=True)
    js, defined = js_divergence(probs, valid)
    assert defined.tolist() == [[False, True, True]]
    assert js[0, 1].item() == pytest.approx(1.0) and js[0, 2].item() == pytest.approx(0.0, abs=1e-9)
    stats = HeadStatistics(2)
    stats.update(probs, valid)
    assert stats.queries == 3 and stats.js_queries == 2 and stats.js == pytest.approx(0.5)
    # head 0: supports 1, 1, 3 of 1, 2, 3 keys → dense on queries 0 and 2
    torch.testing.assert_close(stats.dense_fraction, torch.tensor([2 / 3, 2 / 3], dtype=torch.float64))


def test_statistics_reject_bad_shapes():
    with pytest.raises(ValueError, match="probs must be"):
        support_sizes(torch.zeros(2, 3, 4), torch.ones(2, 3, 4, dtype=torch.bool))
    with pytest.raises(ValueError, match="valid must be"):
        support_sizes(torch.zeros(1, 2, 3, 4), torch.ones(1, 3, 5, dtype=torch.bool))
    with pytest.raises(ValueError, match="expected 4 heads"):
        HeadStatistics(4).update(torch.zeros(1, 2, 3, 4), torch.ones(1, 3, 4, dtype=torch.bool))


# -- figures' helpers and the training-log parser -----------------------------------------------
def test_support_outline_traces_the_border():
    from sparse_seq2seq.analysis.plots import support_outline

    assert support_outline(np.zeros((3, 3), bool)).shape == (0, 2, 2)
    one = support_outline(np.array([[False, True], [False, False]]))
    assert sorted(map(tuple, one.reshape(-1, 4).tolist())) == sorted(
        [(0.5, -0.5, 1.5, -0.5), (0.5, 0.5, 1.5, 0.5), (0.5, -0.5, 0.5, 0.5), (1.5, -0.5, 1.5, 0.5)])
    # an L of three cells has a perimeter of 8 unit edges
    assert len(support_outline(np.array([[True, False], [True, True]]))) == 8


def test_read_alpha_log_all_formats(tmp_path):
    log = tmp_path / "train.log"
    log.write_text(
        "2026-01-01 00:00:00 | INFO | train_inner | epoch 001:      1 / 5 alpha/enc_l0_h0=1.5, "
        "alpha/dec_cross_l1_h2=1.25, loss=5.1, num_updates=1, lr=0.001\n"
        "2026-01-01 00:00:01 | INFO | train_inner | epoch 001:      2 / 5 alpha/enc_l0_h0=1.52, "
        "alpha/dec_cross_l1_h2=1.2, loss=5, num_updates=2, lr=0.001\n"
        "2026-01-01 00:00:02 | INFO | train | epoch 001 | alpha/enc_l0_h0 1.51 | "
        "alpha/dec_cross_l1_h2 1.22 | loss 5.05 | num_updates 2\n"
        "2026-01-01 00:00:02 | INFO | valid | epoch 001 | loss 4.9 | num_updates 2\n")
    trajectory = read_alpha_log(log)
    assert trajectory.source == "interval" and trajectory.updates == [1.0, 2.0]
    assert trajectory.alphas == {("enc", 0, 0): [1.5, 1.52], ("dec_cross", 1, 2): [1.25, 1.2]}
    epochs = tmp_path / "epochs.log"
    epochs.write_text("epoch 001 | alpha/enc_l0_h0 1.51 | loss 5.05 | num_updates 7\n"
                      "epoch 002 | alpha/enc_l0_h0 1.61 | loss 4.05 | num_updates 14\n")
    trajectory = read_alpha_log(epochs)
    assert trajectory.source == "epoch" and trajectory.updates == [7.0, 14.0]
    assert trajectory.alphas[("enc", 0, 0)] == [1.51, 1.61]
    js = tmp_path / "json.log"
    js.write_text('{"epoch": 1, "update": 0.4, "alpha/dec_self_l0_h3": "1.75", "num_updates": "2"}\n')
    assert read_alpha_log(js).alphas == {("dec_self", 0, 3): [1.75]}
    plain = tmp_path / "softmax.log"
    plain.write_text("epoch 001 | loss 5 | num_updates 2\n")
    with pytest.raises(ValueError, match="softmax.log: no alpha"):
        read_alpha_log(plain)
    assert parse_alpha_name("alpha/enc_l10_h3") == ("enc", 10, 3) and parse_alpha_name("loss") is None


def test_checkpoint_alphas_for_every_normalizer():
    from argparse import Namespace

    from sparse_seq2seq.analysis.cli import build_report, format_tables
    from sparse_seq2seq.analysis.collect import checkpoint_infos

    cfg = Namespace(encoder_attn_normalizer="softmax", decoder_self_attn_normalizer="sparsemax",
                    decoder_cross_attn_normalizer="alpha_entmax", encoder_layers=1, decoder_layers=1,
                    encoder_attention_heads=2, decoder_attention_heads=2)
    logits = torch.tensor([-1.0, 2.0])
    weights = {"encoder.layers.0.self_attn.q_proj.weight": torch.zeros(1),
               "decoder.layers.0.self_attn.q_proj.weight": torch.zeros(1),
               "decoder.layers.0.encoder_attn.normalizer.alpha_logit": logits}
    infos = checkpoint_infos({"cfg": {"model": cfg}, "model": weights})
    assert [(i.kind, i.layer, i.normalizer) for i in infos] == [
        ("enc", 0, "softmax"), ("dec_self", 0, "sparsemax"), ("dec_cross", 0, "alpha_entmax")]
    assert infos[0].alphas == [1.0, 1.0] and infos[1].alphas == [2.0, 2.0]
    assert infos[2].alphas == pytest.approx((1 + torch.sigmoid(logits)).tolist())
    table = format_tables(build_report(infos, None))
    assert "(softmax)" in table and "1.269" in table and "1.881" in table
    with pytest.raises(ValueError, match="not an entmax_transformer"):
        checkpoint_infos({"cfg": {"model": Namespace(encoder_layers=1)}, "model": weights})


# -- the command on a tiny trained checkpoint --------------------------------------------------
@pytest.fixture(scope="module")
def trained(tmp_path_factory):
    if not (fh.DATA_MIRROR / "multi30k" / "train.de.gz").is_file():
        pytest.skip(f"Multi30k not found under DATA_MIRROR={fh.DATA_MIRROR}")
    root = tmp_path_factory.mktemp("heads")
    data_bin = fh.make_corpus(root, train=200, valid=12, test=4)
    log = root / "train.log"
    fh.run([str(fh.BIN / "fairseq-train"), str(data_bin), "--user-dir", fh.USER_DIR,
            "--arch", "entmax_transformer_tiny", "--encoder-embed-dim", "32", "--encoder-ffn-embed-dim", "64",
            "--criterion", "entmax_loss", "--attn-alpha-init", "random", "--optimizer", "adam",
            "--lr", "1e-3", "--max-tokens", "1000", "--max-update", "3", "--cpu", "--seed", "1",
            "--save-dir", str(root / "ckpt"), "--no-epoch-checkpoints", "--share-all-embeddings",
            "--disable-validation", "--num-workers", "0", "--log-format", "simple",
            "--log-interval", "1", "--log-file", str(log)])
    checkpoint = root / "ckpt" / "checkpoint_last.pt"
    import sparse_seq2seq.fairseq_plugin  # noqa: F401  (safe globals for the checkpoint)

    weights = torch.load(checkpoint, map_location="cpu", weights_only=True)["model"]
    expected = {}
    for kind, stack, attr in (("enc", "encoder", "self_attn"), ("dec_self", "decoder", "self_attn"),
                              ("dec_cross", "decoder", "encoder_attn")):
        for layer in range(2):
            logits = weights[f"{stack}.layers.{layer}.{attr}.normalizer.alpha_logit"].double()
            expected[(kind, layer)] = (1 + torch.sigmoid(logits)).tolist()
    return {"root": root, "bin": data_bin, "log": log, "checkpoint": checkpoint, "alphas": expected}


def _table_alphas(stdout: str):
    """{(type, layer): [α per head]} read back from the printed tables."""
    found, kind = {}, None
    for line in stdout.splitlines():
        header = re.match(r"== .* \[(\w+)\]", line)
        if header:
            kind = header.group(1)
        row = re.match(r"\s*(\d+)\s+(\d+)\s+(\d\.\d{3})(\s|$)", line)
        if row and kind:
            found.setdefault((kind, int(row.group(1))), []).append(float(row.group(3)))
    return found


def _assert_png(path: Path):
    from PIL import Image

    assert path.is_file(), path
    with Image.open(path) as image:
        assert image.format == "PNG" and min(image.size) > 100
        image.verify()


def _assert_alphas_match(table, expected):
    assert set(table) == set(expected)
    for key, alphas in expected.items():
        assert table[key] == pytest.approx(alphas, abs=5e-4 + 1e-9), key
    # the random initialisation makes the heads differ: the check is not vacuous
    assert len({round(a, 3) for alphas in expected.values() for a in alphas}) > 4


@pytest.mark.slow
def test_cli_with_data_prints_table_json_and_figures(trained):
    out = trained["root"] / "out"
    proc = fh.run([str(fh.BIN / "sparse-seq2seq-heads"), str(trained["checkpoint"]),
                   "--data", str(trained["bin"]), "--subset", "valid", "--max-sentences", "10",
                   "--sentence", "2", "--log", str(trained["log"]), "--out", str(out),
                   "--user-dir", fh.USER_DIR])
    stdout = proc.stdout
    assert "sentences: 10" in stdout
    for name in ("encoder self-attention", "decoder self-attention", "decoder-encoder (context) attention",
                 "JS diversity", "fully dense heads", "support", "density"):
        assert name in stdout
    _assert_alphas_match(_table_alphas(stdout), trained["alphas"])

    report = json.loads((out / "heads.json").read_text())
    assert report["sentences"] == 10 and report["sentence"] == 2 and report["subset"] == "valid"
    modules = {(m["type"], m["layer"]): m for m in report["attention"]}
    assert set(modules) == set(trained["alphas"])
    for key, module in modules.items():
        assert [h["alpha"] for h in module["heads"]] == pytest.approx(trained["alphas"][key], abs=1e-5)
        assert 0 <= module["js_divergence"] <= 1
        for head in module["heads"]:
            assert 1 <= head["mean_support"] and 0 < head["density"] <= 1
            assert 0 <= head["dense_fraction"] <= 1
    # every source has >= 2 tokens; the first decoder position (one key) is left out of JS
    enc, dec_self = modules[("enc", 0)], modules[("dec_self", 0)]
    assert enc["js_queries"] == enc["queries"]
    assert dec_self["js_queries"] == dec_self["queries"] - 10
    assert modules[("dec_cross", 1)]["queries"] == dec_self["queries"]
    for kind, summary in report["summary"].items():
        assert 0 <= summary["fully_dense_heads"] <= 1 and summary["heads"] == 8

    figures = [Path(f) for f in report["figures"]]
    assert {f.name for f in figures} == {
        "alpha_per_head.png", "alpha_over_training.png", "attention_enc_sentence2.png",
        "attention_dec_self_sentence2.png", "attention_dec_cross_sentence2.png"}
    for figure in figures:
        assert str(figure) in stdout
        _assert_png(figure)


@pytest.mark.slow
def test_cli_without_data_reports_alpha_only(trained, capsys):
    from sparse_seq2seq.analysis.cli import main

    out = trained["root"] / "alpha_only"
    assert main([str(trained["checkpoint"]), "--out", str(out)]) == 0
    stdout = capsys.readouterr().out
    assert "no --data" in stdout and "skipped" in stdout and "JS diversity" not in stdout
    _assert_alphas_match(_table_alphas(stdout), trained["alphas"])
    report = json.loads((out / "heads.json").read_text())
    assert report["sentences"] is None and report["notes"]
    assert all("mean_support" not in h for m in report["attention"] for h in m["heads"])
    assert [Path(f).name for f in report["figures"]] == ["alpha_per_head.png"]
    _assert_png(out / "alpha_per_head.png")


@pytest.mark.slow
def test_training_log_alphas_follow_the_checkpoint(trained):
    trajectory = read_alpha_log(trained["log"])
    assert trajectory.source == "interval" and trajectory.updates == [1.0, 2.0, 3.0]
    assert len(trajectory.alphas) == 24
    for (kind, layer, head), values in trajectory.alphas.items():
        # logged before each update, rounded to 3 decimals; adam moves a logit ~1e-3 per step
        assert values[-1] == pytest.approx(trained["alphas"][(kind, layer)][head], abs=3e-3)


@pytest.mark.slow
@pytest.mark.parametrize("damage", ("empty", "truncated"))
def test_cli_names_an_empty_or_truncated_checkpoint_in_one_line(trained, tmp_path, damage):
    from sparse_seq2seq.analysis.cli import main

    bad = tmp_path / f"{damage}.pt"
    raw = trained["checkpoint"].read_bytes()
    bad.write_bytes(b"" if damage == "empty" else raw[: len(raw) // 2])
    for extra in ([], ["--data", str(trained["bin"])]):
        with pytest.raises(SystemExit) as caught:
            main([str(bad), "--out", str(tmp_path / "out"), "--no-progress", *extra])
        message = str(caught.value)
        assert message.startswith(f"sparse-seq2seq-heads: error: {bad}: not a usable checkpoint")
        assert "\n" not in message
    assert not (tmp_path / "out").exists()


@pytest.mark.slow
def test_cli_errors_are_clear(trained, tmp_path):
    from sparse_seq2seq.analysis.cli import main

    with pytest.raises(SystemExit, match="no checkpoint at"):
        main([str(tmp_path / "missing.pt")])
    with pytest.raises(SystemExit, match="no data folder at"):
        main([str(trained["checkpoint"]), "--data", str(tmp_path / "nowhere")])
    with pytest.raises(SystemExit, match="nosuch"):
        main([str(trained["checkpoint"]), "--data", str(trained["bin"]), "--subset", "nosuch"])
