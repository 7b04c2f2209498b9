"""fairseq-train precision flags with the plugin's models: --bf16 refused at once with what to
use instead (fairseq would end in an AttributeError), --fp16 trains on CPU, --amp on CPU says
it is float32, and the models and the entmax loss hold up in half precision."""
import logging
import re
import subprocess
import sys

import pytest
import torch

from fairseq_helpers import BIN, USER_DIR, make_corpus, run

TINY = ["--arch", "entmax_transformer_tiny", "--encoder-embed-dim", "32", "--encoder-ffn-embed-dim", "64",
        "--decoder-embed-dim", "32", "--decoder-ffn-embed-dim", "64", "--share-all-embeddings"]


def parse(*flags, arch_flags=TINY):
    from fairseq import options

    import sparse_seq2seq.fairseq_plugin  # noqa: F401

    argv = ["data-not-read", "--user-dir", USER_DIR, *arch_flags, *flags]
    old, sys.argv = sys.argv, ["fairseq-train", *argv]
    try:
        return options.parse_args_and_arch(options.get_training_parser(), argv)
    finally:
        sys.argv = old


@pytest.mark.parametrize("flag", ["--bf16", "--memory-efficient-bf16"])
@pytest.mark.parametrize("cpu", [[], ["--cpu"]])
def test_bf16_is_refused_with_what_to_use(flag, cpu, capsys):
    with pytest.raises(SystemExit) as exit_info:
        parse(*cpu, flag)
    assert exit_info.value.code == 2
    err = capsys.readouterr().err
    assert f"error: {flag} is TPU training in fairseq" in err and "torch_xla" in err
    assert "use --amp" in err and "--fp16" in err


@pytest.mark.parametrize("order", [["--cpu", "--fp16"], ["--fp16", "--cpu"]])
def test_fp16_on_cpu_does_not_flatten_grads(order):
    args = parse(*order)
    assert args.fp16 and args.fp16_no_flatten_grads


def test_fp16_keeps_memory_efficient_variant_and_other_models_untouched():
    args = parse("--cpu", "--memory-efficient-fp16")
    assert args.fp16 and not args.fp16_no_flatten_grads
    plain = parse("--cpu", "--fp16", arch_flags=["--arch", "transformer"])
    assert plain.fp16 and not plain.fp16_no_flatten_grads  # fairseq's own model: fairseq's rules


def test_amp_on_cpu_says_it_trains_in_float32(caplog):
    with caplog.at_level(logging.WARNING, logger="sparse_seq2seq.fairseq_plugin.precision"):
        args = parse("--amp", "--cpu")
    assert args.amp
    said = [r.getMessage() for r in caplog.records if "--amp without CUDA" in r.getMessage()]
    assert len(said) == 1 and "float32" in said[0]


@pytest.fixture(scope="module")
def data_bin(tmp_path_factory):
    return make_corpus(tmp_path_factory.mktemp("m30k"), train=60, valid=8, test=8)


def build(data_bin):
    from fairseq import tasks

    args = parse("--cpu", "--task", "translation_sparse", "--criterion", "entmax_loss",
                 "--attn-alpha-init", "random")
    args.data = str(data_bin)
    task = tasks.setup_task(args)
    task.load_dataset("valid")
    torch.manual_seed(0)
    model = task.build_model(args)
    dataset = task.dataset("valid")
    return model, task.build_criterion(args), dataset.collater([dataset[i] for i in range(8)])


@pytest.mark.parametrize("dtype", [torch.float16, torch.bfloat16])
def test_half_precision_model_and_entmax_loss(data_bin, dtype):
    """What fairseq's --fp16 does to the model (``.half()``): the loss is summed in float32
    and stays within half-precision error of the float32 model's; every α gets a gradient."""
    model, criterion, sample = build(data_bin)
    model.eval()  # no dropout: the two losses are of the same function
    reference, _, _ = criterion(model, sample)
    model = model.to(dtype)
    loss, _, log = criterion(model, sample)
    assert loss.dtype == torch.float32 and log["loss"].dtype == torch.float32
    torch.testing.assert_close(loss, reference.detach(), rtol=0.02, atol=0)
    loss.backward()
    grads = [p.grad for n, p in model.named_parameters() if n.endswith("alpha_logit")]
    assert len(grads) == 6 and all(g is not None and torch.isfinite(g).all() and g.dtype == dtype for g in grads)


@pytest.mark.slow
def test_fairseq_train_fp16_on_cpu_and_bf16_refused_before_the_data(data_bin, tmp_path):
    common = [str(BIN / "fairseq-train"), "--user-dir", USER_DIR, *TINY, "--task", "translation_sparse",
              "--criterion", "entmax_loss", "--optimizer", "adam", "--lr", "1e-3", "--max-tokens", "1000",
              "--cpu", "--disable-validation", "--no-save", "--seed", "1", "--num-workers", "0",
              "--log-format", "simple", "--log-interval", "1"]
    proc = run([*common, str(data_bin), "--fp16", "--max-update", "3"])
    out = proc.stdout + proc.stderr
    losses = [float(v) for v in re.findall(r"\bloss=([\d.]+)", out)]
    assert len(losses) == 3 and all(0 < v < 20 for v in losses)
    assert re.search(r"loss_scale=\d+", out) and "fp16-no-flatten-grads" in out
    refused = subprocess.run([*common, str(tmp_path / "no-such-data"), "--bf16"], capture_output=True, text=True)
    assert refused.returncode == 2
    assert "error: --bf16 is TPU training in fairseq" in refused.stderr
    assert "Traceback" not in refused.stderr and "no-such-data" not in refused.stderr
