"""The experiments' pieces: data reading, games, importance sampling, reporting, and short real runs."""
import gzip
import itertools
import json
import math
import os
import struct
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
import torch

from sparse_seq2seq.lvm.experiments import data as lvm_data
from sparse_seq2seq.lvm.experiments.bitvector_vae import BitVectorVAE, elbo_parts, importance_sampled_nll, posterior
from sparse_seq2seq.lvm.experiments.emergent import Receiver, sample_games
from sparse_seq2seq.lvm.experiments.reporting import results_table
from sparse_seq2seq.lvm.experiments.ssvae import SSVAE

HAVE_DATA = lvm_data.data_root() is not None and (lvm_data.data_root() / "mnist").is_dir()


def test_idx_parser_reads_what_it_is_given():
    images = np.arange(2 * 3 * 4, dtype=np.uint8).reshape(2, 3, 4)
    raw = b"\x00\x00\x08\x03" + struct.pack(">III", 2, 3, 4) + images.tobytes()
    assert np.array_equal(lvm_data._read_idx(raw), images)
    with pytest.raises(ValueError):
        lvm_data._read_idx(b"\x00\x00\x0d\x01" + struct.pack(">I", 1) + b"\x00\x00\x00\x00")


def test_mirror_files_are_checked(tmp_path, monkeypatch):
    folder = tmp_path / "mnist"
    folder.mkdir()
    raw = b"\x00\x00\x08\x01" + struct.pack(">I", 3) + bytes([1, 2, 3])
    for name in lvm_data.IDX_FILES:
        (folder / f"{name}.gz").write_bytes(gzip.compress(raw))
    monkeypatch.setenv("DATA_MIRROR", str(tmp_path))
    assert lvm_data.data_root() == tmp_path
    with pytest.raises(ValueError, match="md5"):
        lvm_data.load_idx_dataset("mnist")
    arrays = lvm_data.load_idx_dataset("mnist", verify=False)
    assert arrays[0].tolist() == [1, 2, 3]


def test_games_have_distinct_candidates():
    for n_images in (50, 10000):
        cands, target = sample_games(n_images, 300, 16, torch.Generator().manual_seed(0))
        assert cands.shape == (300, 16) and target.shape == (300,)
        assert all(len(set(row.tolist())) == 16 for row in cands)
        assert int(target.min()) >= 0 and int(target.max()) < 16


def test_receiver_pair_fast_path_equals_gather():
    torch.manual_seed(0)
    rec = Receiver(feat_dim=5, n_symbols=7, embed=4)
    cand = rec.embed_candidates(torch.randn(3, 6, 5))
    z = torch.eye(7)[torch.randint(7, (6,))]
    rows = torch.arange(3).repeat_interleave(2)
    fast = rec.pair_log_probs(rows, z, cand)
    slow = rec(z, cand[rows])
    assert torch.allclose(fast, slow, atol=1e-6)
    shuffled = torch.tensor([0, 2, 1, 0, 2, 1])
    assert torch.allclose(rec.pair_log_probs(shuffled, z, cand), rec(z, cand[shuffled]), atol=1e-6)


def test_ssvae_neg_elbo_is_positive_per_pair():
    model = SSVAE(latent_dim=3, hidden=8)
    x = torch.bernoulli(torch.full((5, 784), 0.3))
    y = torch.eye(10)[torch.tensor([0, 3, 3, 9, 1])]
    out = model.neg_elbo(x, y)
    assert out.shape == (5,) and torch.all(out > 0)


@pytest.mark.parametrize("method", ["sfe", "sparsemap", "topk_sparsemax"])
def test_importance_sampling_recovers_the_exact_likelihood(method):
    """D = 3: log p(x) = log Σ_z p(x|z) 2^-D exactly; the IS estimate with 200000 samples must be close."""
    torch.manual_seed(0)
    model = BitVectorVAE(latent_dim=3, hidden=8, pixels=6)
    with torch.no_grad():  # a gentler decoder keeps the importance weights' variance small
        for param in model.decoder.parameters():
            param.mul_(0.5)
    x = torch.bernoulli(torch.full((4, 6), 0.5))
    z_all = torch.tensor(list(itertools.product((0.0, 1.0), repeat=3)))
    with torch.no_grad():
        exact = torch.stack([-torch.logsumexp(-model.neg_log_lik(xi.expand(8, -1), z_all), 0) + 3 * math.log(2)
                             for xi in x])
    est = importance_sampled_nll(model, x, method, k=3, budget=1, samples=200000, generator=torch.Generator().manual_seed(1))
    assert torch.allclose(est, exact, atol=0.03), (est, exact)


@pytest.mark.parametrize("method", ["gumbel", "sparsemap", "topk_sparsemax"])
def test_elbo_parts_against_enumeration(method):
    """D = 3: the reconstruction term and KL(π ‖ uniform) of elbo_parts equal their sums over all 8
    codes (exactly for sparse π, within Monte-Carlo error for Bernoulli π), and recon + KL bounds
    −log p(x) from above."""
    torch.manual_seed(0)
    model = BitVectorVAE(latent_dim=3, hidden=8, pixels=6)
    x = torch.bernoulli(torch.full((4, 6), 0.5))
    z_all = torch.tensor(list(itertools.product((0.0, 1.0), repeat=3)))
    parts = elbo_parts(model, x, method, k=3, budget=1, samples=20000, generator=torch.Generator().manual_seed(1))
    with torch.no_grad():
        eta = model.encoder(x)
        nll = torch.stack([model.neg_log_lik(xi.expand(8, -1), z_all) for xi in x])  # (4, 8)
        if method == "gumbel":
            q = torch.sigmoid(eta)
            pi = torch.exp(z_all @ q.log().T + (1 - z_all) @ (1 - q).log().T).T  # (4, 8)
        else:
            probs, structs = posterior(method, eta, 3, 1)
            match = (structs.unsqueeze(2) == z_all).all(-1).to(probs.dtype)  # (4, C, 8)
            pi = (probs.unsqueeze(-1) * match).sum(1)
        entropy = -torch.xlogy(pi, pi).sum(-1)
        exact_nll = -torch.logsumexp(-nll, 1) + 3 * math.log(2)
    atol = 0.05 if method == "gumbel" else 1e-5
    assert torch.allclose(parts["recon"], (pi * nll).sum(-1), atol=atol)
    assert torch.allclose(parts["entropy"], entropy, atol=1e-5)
    assert torch.allclose(parts["kl"], 3 * math.log(2) - entropy, atol=1e-5)
    assert torch.all(parts["recon"] + parts["kl"] >= exact_nll - atol)


def test_sparse_posteriors_are_distributions():
    eta = torch.randn(5, 6)
    for method in ("sparsemap", "sparsemap_budget", "topk_sparsemax"):
        probs, structs = posterior(method, eta, k=4, budget=2)
        assert torch.allclose(probs.sum(-1), torch.ones(5), atol=1e-6)
        assert structs.shape[:2] == probs.shape and structs.shape[2] == 6
    assert posterior("sfe", eta, 4, 2) is None


def test_decoder_calls_per_example_overall_recent_and_last():
    from sparse_seq2seq.lvm.experiments.common import DecoderCalls

    calls = DecoderCalls()
    for made, examples in ((10, 5), (4, 4), (3, 1)):
        calls.add(made, examples)
    assert calls.overall == 17 / 10 and calls.last(2) == (1 + 3) / 2 and calls.last(100) == 2.0
    assert calls.recent() == 2.0  # mean of 2, 1 and 3 per example
    calls.add(6, 2)
    assert calls.recent() == 3.0 and calls.overall == 23 / 12


def test_results_table_mean_and_std():
    recs = [{"method": "dense", "seed": s, "final": {"acc": v}} for s, v in ((1, 90.0), (2, 92.0))]
    recs.append({"method": "sparsemax", "seed": 1, "final": {"acc": 91.0}})
    table = results_table(recs, ["acc"])
    assert "| dense | 1,2 | 91.00 ± 1.41 |" in table
    assert "| sparsemax | 1 | 91.00 |" in table


@pytest.mark.slow
@pytest.mark.skipif(not HAVE_DATA, reason="needs the data mirror")
def test_short_real_runs_write_records(tmp_path):
    from sparse_seq2seq.lvm.experiments import bitvector_vae, ssvae

    ssvae.main(["train", "--method", "sparsemax", "--max-steps", "3", "--eval-every", "2", "--hidden", "16",
                "--out", str(tmp_path), "--no-progress"])
    rec = json.loads((tmp_path / "sparsemax_seed1.json").read_text())
    assert rec["final"]["steps"] == 3 and 1 <= rec["final"]["decoder_calls"] <= 10
    bitvector_vae.main(["--method", "sparsemap_budget", "--latent-dim", "8", "--max-steps", "2", "--hidden", "16",
                        "--eval-size", "2", "--is-samples", "16", "--is-check-samples", "4", "64",
                        "--train-size", "256", "--out", str(tmp_path), "--no-progress"])
    rec = json.loads((tmp_path / "sparsemap_budget_seed1.json").read_text())
    assert rec["final"]["nll_bpd"] > 0 and rec["config"]["budget"] == 2
    assert rec["final"]["nll_bpd_4_samples"] > 0 and rec["final"]["nll_bpd_64_samples"] > 0
    assert rec["final"]["elbo_kl_bpd"] >= 0 and rec["final"]["posterior_entropy_bits"] >= 0


@pytest.mark.slow
def test_emergent_recipe_takes_per_method_learning_rates(tmp_path):
    """``--method-lrs`` overrides ``--lr`` for the methods it names, and bad entries stop the recipe."""
    root = Path(__file__).resolve().parents[1]
    feats = tmp_path / "features"
    feats.mkdir()
    rng = np.random.default_rng(0)
    for name in ("train", "test"):
        np.save(feats / f"{name}.npy", rng.normal(size=(40, 8)).astype(np.float32))
    cmd = ["bash", str(root / "recipes" / "lvm_emergent" / "run.sh"), "--stage", "1", "--stop-stage", "1",
           "--features-dir", str(feats), "--out", str(tmp_path / "out"), "--epochs", "1",
           "--games-per-epoch", "64", "--methods", "dense sparsemax", "--lr", "0.004",
           "--method-lrs", "sparsemax=0.002 gumbel=0.1", "--python", sys.executable]
    env = {**os.environ, "PYTHONPATH": str(root)}
    result = subprocess.run(cmd, capture_output=True, text=True, env=env)
    assert result.returncode == 0, result.stderr[-2000:]
    lrs = {m: json.loads((tmp_path / "out" / f"{m}_seed1.json").read_text())["config"]["lr"]
           for m in ("dense", "sparsemax")}
    assert lrs == {"dense": 0.004, "sparsemax": 0.002}
    bad = subprocess.run(cmd[:-4] + ["--method-lrs", "sparsemax"], capture_output=True, text=True, env=env)
    assert bad.returncode == 1 and "expected METHOD=LR" in bad.stderr
