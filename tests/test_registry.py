"""The registry of attention types, normalisers, per-head scalar names and shared flags."""
import argparse
import subprocess
import sys

import entmax
import pytest
import torch

from sparse_seq2seq import registry
from sparse_seq2seq.normalizers import build_normalizer, head_density


def test_attention_types_name_their_flags_and_cfg_attributes():
    assert registry.ATTENTION_KEYS == ("enc", "dec_self", "dec_cross")
    assert [t.flag for t in registry.ATTENTION_TYPES] == [
        "--encoder-attn-normalizer", "--decoder-self-attn-normalizer", "--decoder-cross-attn-normalizer"]
    assert registry.attention_type("dec_cross").module == "encoder_attn"
    with pytest.raises(ValueError, match="unknown attention type 'cross'"):
        registry.attention_type("cross")


def test_cli_prints_one_line_per_type_and_normaliser():
    types = subprocess.run([sys.executable, "-m", "sparse_seq2seq.registry", "--types"],
                           capture_output=True, text=True, check=True).stdout.splitlines()
    assert [line.split(" ", 2) for line in types] == [[t.key, t.flag, t.label] for t in registry.ATTENTION_TYPES]
    names = subprocess.run([sys.executable, "-m", "sparse_seq2seq.registry", "--normalizers"],
                           capture_output=True, text=True, check=True).stdout.split()
    assert names == ["softmax", "sparsemax", "entmax15", "alpha_entmax"]


@pytest.mark.parametrize("name, reference", [
    ("softmax", lambda x: torch.softmax(x, -1)), ("sparsemax", lambda x: entmax.sparsemax(x, -1)),
    ("entmax15", lambda x: entmax.entmax15(x, -1))])
def test_fixed_normalisers_match_the_entmax_package(name, reference):
    x = torch.randn(3, 2, 4, 7, dtype=torch.float64)
    spec = registry.normalizer_spec(name)
    torch.testing.assert_close(spec.mapping(x), reference(x))
    torch.testing.assert_close(registry.mapping_for_alpha(spec.alpha)(x), reference(x))


def test_mapping_for_other_alpha_is_entmax_bisection():
    x = torch.randn(5, 9, dtype=torch.float64)
    torch.testing.assert_close(registry.mapping_for_alpha(1.3)(x),
                               entmax.entmax_bisect(x, 1.3, dim=-1, n_iter=100), atol=1e-6, rtol=0)


def test_normalizer_alpha_per_name():
    assert build_normalizer("softmax", 4).alpha is None
    assert float(build_normalizer("sparsemax", 4).alpha) == 2
    assert float(build_normalizer("entmax15", 4).alpha) == 1.5
    learned = build_normalizer("alpha_entmax", 4, "1.25").alpha
    assert learned.shape == (4,) and torch.allclose(learned, torch.full((4,), 1.25))
    with pytest.raises(ValueError, match="unknown attention normalizer 'tsallis'"):
        build_normalizer("tsallis", 4)


@pytest.mark.parametrize("metric", registry.HEAD_METRICS)
def test_head_scalar_names_round_trip(metric):
    for kind in registry.ATTENTION_KEYS:
        name = registry.head_scalar_name(metric, kind, 11, 3)
        assert name == f"{metric}/{kind}_l11_h3"
        assert registry.parse_head_scalar_name(name) == (metric, kind, 11, 3)
    assert registry.alpha_scalar_name("enc", 0, 3) == "alpha/enc_l0_h3"
    assert registry.density_scalar_name("dec_self", 2, 0) == "density/dec_self_l2_h0"
    assert registry.parse_alpha_name("alpha/dec_cross_l1_h3") == ("dec_cross", 1, 3)
    for other in ("density/enc_l0_h3", "alpha/encoder_l0_h3", "alpha/enc_l0", "loss", "alpha/enc_l0_h3x"):
        assert registry.parse_alpha_name(other) is None
    with pytest.raises(ValueError):
        registry.head_scalar_name("entropy", "enc", 0, 0)


def test_head_density_counts_support_over_unmasked_keys():
    scores = torch.full((1, 2, 3, 4), float("-inf"))
    probs = torch.zeros(1, 2, 3, 4)
    scores[0, 0, 0, :2] = 0.0  # row of 2 keys, both in the support
    probs[0, 0, 0, :2] = 0.5
    scores[0, 0, 1, :] = 0.0  # row of 4 keys, one in the support
    probs[0, 0, 1, 3] = 1.0
    # row 2 of head 0 is fully masked and does not count
    scores[0, 1] = 0.0
    probs[0, 1, :, 0] = 1.0  # head 1: one key of four everywhere
    torch.testing.assert_close(head_density(scores, probs), torch.tensor([(1 + 0.25) / 2, 0.25]))


def test_normaliser_records_density_only_when_asked_and_training():
    scores = torch.randn(2, 3, 5, 6)
    norm = build_normalizer("sparsemax", 3)
    norm(scores)
    assert norm.last_density is None
    norm.record_density = True
    probs = norm(scores)
    expected = (probs > 0).float().mean(dim=(0, 2, 3))
    torch.testing.assert_close(norm.last_density, expected)
    norm.eval()
    norm.last_density = None
    norm(scores)
    assert norm.last_density is None


def test_alpha_init_and_fixed_alpha_flags_refuse_bad_values():
    parser = argparse.ArgumentParser()
    registry.add_attention_args(parser)
    assert parser.parse_args(["--attn-alpha-init", "random"]).attn_alpha_init == "random"
    assert parser.parse_args(["--attn-alpha-init", "2"]).attn_alpha_init == "2"
    for bad in ("1", "2.5", "nan", "abc", "-1.5"):
        with pytest.raises(argparse.ArgumentTypeError, match="--attn-alpha-init must be"):
            registry.alpha_init_arg(bad)
    loss_alpha = registry.entmax_alpha_arg("--loss-alpha")
    assert loss_alpha("1.5") == 1.5
    for bad in ("1", "0.5", "inf", "x"):
        with pytest.raises(argparse.ArgumentTypeError, match="--loss-alpha must be a number in"):
            loss_alpha(bad)
