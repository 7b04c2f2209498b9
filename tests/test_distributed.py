"""Data-parallel training on CPU: two gloo processes train one model.

The end-to-end test trains ``entmax_transformer_tiny`` with α-entmax attention for a few
updates over two processes started by ``sparse_seq2seq.fairseq_plugin.cpu_distributed`` and
checks that both ranks end with bitwise identical parameters that differ from their
(identical) initial ones. fairseq gives each rank a different shard of the batches, so equal
parameters after the updates mean the gradients were all-reduced.
"""
from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest
import torch

from data_prep.samples import write_multi30k_sample
from sparse_seq2seq.fairseq_plugin import cpu_distributed as cd

ROOT = Path(__file__).resolve().parents[1]
MULTI30K = Path(os.environ.get("DATA_MIRROR", ROOT.parent / "shared" / "data")) / "multi30k"
UPDATES = 3


@pytest.fixture(scope="module")
def data_bin(tmp_path_factory) -> Path:
    """160 Multi30k de-en pairs, lowercased and tokenised (data_prep.samples), binarised."""
    if not (MULTI30K / "train.de.gz").is_file():
        pytest.skip(f"Multi30k not found in {MULTI30K}")
    work = tmp_path_factory.mktemp("m30k")
    write_multi30k_sample(MULTI30K, work, {"train": 160})
    proc = subprocess.run(
        [sys.executable, "-m", "fairseq_cli.preprocess", "--source-lang", "de", "--target-lang",
         "en", "--trainpref", str(work / "train"), "--destdir", str(work / "bin"),
         "--joined-dictionary", "--workers", "1"], capture_output=True, text=True, timeout=120)
    assert proc.returncode == 0, proc.stderr[-2000:]
    return work / "bin"


@pytest.mark.slow
def test_two_gloo_ranks_hold_identical_trained_parameters(data_bin, tmp_path):
    replicas = tmp_path / "replicas"
    cmd = [sys.executable, "-m", "sparse_seq2seq.fairseq_plugin.cpu_distributed", "--nprocs", "2",
           "--threads-per-proc", "1", "--save-replicas", str(replicas), "--",
           str(data_bin), "--user-dir", str(ROOT / "user_dir"), "--arch", "entmax_transformer_tiny",
           "--encoder-attn-normalizer", "alpha_entmax", "--decoder-self-attn-normalizer",
           "alpha_entmax", "--decoder-cross-attn-normalizer", "alpha_entmax",
           "--share-all-embeddings", "--criterion", "label_smoothed_cross_entropy",
           "--optimizer", "adam", "--lr", "1e-3", "--max-tokens", "150", "--max-update", str(UPDATES),
           "--save-dir", str(tmp_path / "ckpt"), "--no-save", "--disable-validation",
           "--log-interval", "1", "--num-workers", "0"]
    env = {**os.environ, "OMP_NUM_THREADS": "1"}
    proc = subprocess.run(cmd, capture_output=True, text=True, timeout=300, env=env, cwd=ROOT)
    log = proc.stdout + proc.stderr
    assert proc.returncode == 0, log[-4000:]
    assert "distributed init (rank 1)" in log
    assert "| 2 replicas hold identical parameters" in log
    assert f"num_updates={UPDATES}" in log or f"num_updates {UPDATES}" in log

    init = [torch.load(replicas / f"rank{r}_init.pt", weights_only=True) for r in (0, 1)]
    final = [torch.load(replicas / f"rank{r}.pt", weights_only=True) for r in (0, 1)]
    assert set(final[0]) == set(final[1]) == set(init[0]) and len(final[0]) > 20
    for name in final[0]:  # same start, same end, bitwise
        assert torch.equal(init[0][name], init[1][name]), name
        assert torch.equal(final[0][name], final[1][name]), name
    weights = [n for n, t in init[0].items() if t.is_floating_point() and not n.endswith("version")]
    changed = [n for n in weights if not torch.equal(init[0][n], final[0][n])]
    assert set(changed) == set(weights), sorted(set(weights) - set(changed))
    alphas = [n for n in weights if "normalizer" in n]  # one learned α per head and layer
    assert len(alphas) == 6, alphas


def test_parameter_digest_sees_one_ulp():
    state = {"w": torch.linspace(-1, 1, 50), "b": torch.zeros(3)}
    nudged = {**state, "w": state["w"].clone()}
    nudged["w"][7] = torch.nextafter(nudged["w"][7], torch.tensor(2.0))
    assert cd.parameter_digest(state) == cd.parameter_digest({k: v.clone() for k, v in state.items()})
    assert cd.parameter_digest(state) != cd.parameter_digest(nudged)
    assert cd.parameter_digest(state) != cd.parameter_digest({"w2": state["w"], "b": state["b"]})


def test_launcher_splits_and_guards_its_flags():
    opts, flags = cd.parse_launcher_args(["--nprocs", "3", "--", "bin", "--arch", "x"])
    assert opts.nprocs == 3 and opts.nnodes == 1 and flags == ["bin", "--arch", "x"]
    with pytest.raises(SystemExit):  # no "--" separating the fairseq-train flags
        cd.parse_launcher_args(["--nprocs", "2", "bin"])
    with pytest.raises(SystemExit):  # the launcher owns the rendezvous flags
        cd.parse_launcher_args(["--", "bin", "--distributed-world-size", "4"])
    with pytest.raises(SystemExit):
        cd.parse_launcher_args(["--", "bin", "--distributed-init-method=tcp://h:1"])
    with pytest.raises(SystemExit):  # several machines need an agreed port
        cd.parse_launcher_args(["--nnodes", "2", "--node-rank", "1", "--", "bin"])
    with pytest.raises(SystemExit):
        cd.parse_launcher_args(["--nnodes", "2", "--node-rank", "2", "--master-port", "1", "--", "bin"])


def test_config_is_gloo_on_cpu_and_refuses_torch_ddp(tmp_path):
    flags = [str(tmp_path), "--user-dir", str(ROOT / "user_dir"), "--task", "translation",
             "--arch", "entmax_transformer_tiny", "--optimizer", "adam", "--lr", "1e-3",
             "--max-tokens", "100"]
    cfg = cd.build_config(flags, 4, "tcp://127.0.0.1:1234")
    dt = cfg.distributed_training
    assert cfg.common.cpu and dt.distributed_backend == "gloo" and dt.ddp_backend == "legacy_ddp"
    assert dt.distributed_world_size == 4 and dt.distributed_init_method == "tcp://127.0.0.1:1234"
    with pytest.raises(SystemExit, match="legacy_ddp"):
        cd.build_config(flags + ["--ddp-backend", "pytorch_ddp"], 2, "tcp://127.0.0.1:1234")
