"""Invalid ``--attn-alpha-init`` / ``--loss-alpha`` are refused when fairseq-train parses its
flags, before any data is read: the data folder given here does not exist, and the error
is the flag's, not the data's."""
import os
import subprocess

import pytest

from fairseq_helpers import BIN, USER_DIR

pytestmark = pytest.mark.slow

MODELS = {"entmax_transformer": ["--arch", "entmax_transformer_tiny", "--task", "translation_sparse"],
          "bert_ape": ["--arch", "bert_ape_tiny", "--task", "ape"]}


def fairseq_train(tmp_path, *flags) -> subprocess.CompletedProcess:
    env = dict(os.environ, PYTHONWARNINGS="ignore", OMP_NUM_THREADS="1")
    return subprocess.run([str(BIN / "fairseq-train"), str(tmp_path / "no-such-data"), "--user-dir", USER_DIR,
                           "--max-tokens", "100", "--cpu", *flags], capture_output=True, text=True, env=env)


@pytest.mark.parametrize("model, flag, value", [  # every value is checked in test_registry.py
    ("entmax_transformer", "--attn-alpha-init", "3"), ("bert_ape", "--attn-alpha-init", "rand"),
    ("entmax_transformer", "--loss-alpha", "1"), ("bert_ape", "--loss-alpha", "2.5")])
def test_bad_alpha_is_a_flag_error(tmp_path, model, flag, value):
    proc = fairseq_train(tmp_path, *MODELS[model], "--criterion", "entmax_loss", flag, value)
    assert proc.returncode == 2, proc.stderr[-2000:]
    assert f"error: argument {flag}: {flag} must be a number in (1, 2]" in proc.stderr
    assert f"got '{value}'" in proc.stderr
    assert "no-such-data" not in proc.stderr and "Traceback" not in proc.stderr


@pytest.mark.parametrize("model", sorted(MODELS))
def test_good_alpha_gets_as_far_as_the_data(tmp_path, model):
    proc = fairseq_train(tmp_path, *MODELS[model], "--criterion", "entmax_loss", "--loss-alpha", "2",
                         "--attn-alpha-init", "random")
    assert proc.returncode != 0
    assert "FileNotFoundError" in proc.stderr and "no-such-data" in proc.stderr
    assert "must be a number in (1, 2]" not in proc.stderr
