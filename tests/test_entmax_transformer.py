"""The entmax_transformer model: cached decoding equals a full pass for every normaliser,
every α gets a gradient, softmax reproduces fairseq's transformer, entmax output layer."""
import sys

import pytest
import torch

from fairseq_helpers import USER_DIR, make_corpus

pytestmark = pytest.mark.slow  # fairseq models on a binarised corpus

NORMALIZERS = ("softmax", "sparsemax", "entmax15", "alpha_entmax")


@pytest.fixture(scope="module")
def data_bin(tmp_path_factory):
    return make_corpus(tmp_path_factory.mktemp("m30k"), train=60, valid=8, test=8)


def build(data_bin, *extra, arch="entmax_transformer_tiny"):
    from fairseq import options, tasks

    import sparse_seq2seq.fairseq_plugin  # noqa: F401

    parser = options.get_training_parser()
    argv = [str(data_bin), "--user-dir", USER_DIR, "--arch", arch, "--encoder-embed-dim", "32",
            "--encoder-ffn-embed-dim", "64", "--decoder-embed-dim", "32",
            "--decoder-ffn-embed-dim", "64", "--share-all-embeddings", "--cpu", *extra]
    old, sys.argv = sys.argv, ["fairseq-train", *argv]
    try:
        args = options.parse_args_and_arch(parser, argv)
    finally:
        sys.argv = old
    task = tasks.setup_task(args)
    task.load_dataset("valid")
    torch.manual_seed(0)
    return task.build_model(args), task, args


def batch(task):
    dataset = task.dataset("valid")
    return dataset.collater([dataset[i] for i in range(4)])


def normalizer_flags(name):
    return ["--encoder-attn-normalizer", name, "--decoder-self-attn-normalizer", name,
            "--decoder-cross-attn-normalizer", name, "--attn-alpha-init", "random"]


@pytest.mark.parametrize("normalizer", NORMALIZERS)
def test_incremental_decoding_equals_full_pass(data_bin, normalizer):
    model, task, _ = build(data_bin, *normalizer_flags(normalizer))
    model.eval()
    sample = batch(task)
    net = sample["net_input"]
    prev = net["prev_output_tokens"]
    with torch.no_grad():
        enc = model.encoder(net["src_tokens"], src_lengths=net["src_lengths"])
        full = model.decoder(prev, encoder_out=enc)[0]
        state = {}
        steps = [model.decoder(prev[:, :t + 1], encoder_out=enc, incremental_state=state)[0]
                 for t in range(prev.size(1))]
    cached = torch.cat(steps, dim=1)
    real = prev.ne(task.target_dictionary.pad())
    torch.testing.assert_close(cached[real], full[real], atol=1e-4, rtol=1e-4)


def test_every_alpha_gets_a_gradient(data_bin):
    model, task, args = build(data_bin, *normalizer_flags("alpha_entmax"), "--criterion", "entmax_loss")
    model.train()
    criterion = task.build_criterion(args)
    loss, _, log = criterion(model, batch(task))
    loss.backward()
    logits = [(n, p) for n, p in model.named_parameters() if n.endswith("alpha_logit")]
    assert len(logits) == 2 + 2 + 2  # enc self, dec self, dec cross per layer (2 layers)
    for name, param in logits:
        assert param.grad is not None and torch.isfinite(param.grad).all(), name
        assert (param.grad != 0).all(), name
    assert torch.isfinite(log["loss"]) and 0 <= int(log["gold_zero"]) <= log["ntokens"]


def test_normaliser_per_attention_type(data_bin):
    from sparse_seq2seq.fairseq_plugin.entmax_transformer import attention_modules

    model, _, _ = build(data_bin, "--encoder-attn-normalizer", "sparsemax",
                        "--decoder-self-attn-normalizer", "softmax",
                        "--decoder-cross-attn-normalizer", "alpha_entmax", "--attn-alpha-init", "1.3")
    kinds = {(kind, m.normalizer.name) for kind, _, m in attention_modules(model)}
    assert kinds == {("enc", "sparsemax"), ("dec_self", "softmax"), ("dec_cross", "alpha_entmax")}
    alphas = [m.alpha for kind, _, m in attention_modules(model) if kind == "dec_cross"]
    torch.testing.assert_close(torch.stack(alphas), torch.full((2, 4), 1.3))


def test_softmax_reproduces_fairseq_transformer(data_bin):
    ours, task, _ = build(data_bin, *normalizer_flags("softmax"))
    theirs, _, _ = build(data_bin, "--encoder-layers", "2", "--decoder-layers", "2",
                         "--encoder-attention-heads", "4", "--decoder-attention-heads", "4",
                         arch="transformer")
    theirs.load_state_dict(ours.state_dict(), strict=True)
    ours.eval(), theirs.eval()
    net = batch(task)["net_input"]
    with torch.no_grad():
        torch.testing.assert_close(ours(**net)[0], theirs(**net)[0], atol=1e-5, rtol=1e-5)


@pytest.mark.parametrize("loss_alpha", (1.5, 2.0, 1.3))
def test_entmax_trained_model_decodes_with_entmax(data_bin, loss_alpha):
    model, task, _ = build(data_bin, "--criterion", "entmax_loss", "--loss-alpha", str(loss_alpha))
    model.eval()
    with torch.no_grad():
        out = model(**batch(task)["net_input"])
        probs = model.get_normalized_probs(out, log_probs=False)
        logp = model.get_normalized_probs(out, log_probs=True)
    torch.testing.assert_close(probs.sum(-1), torch.ones(probs.shape[:-1]), atol=1e-5, rtol=0)
    assert (probs == 0).any(), "an entmax output layer should be sparse"
    assert torch.equal(torch.isneginf(logp), probs == 0) and not torch.isnan(logp).any()
    assert model.output_alpha == loss_alpha


def test_bad_loss_alpha_is_refused(data_bin):
    from sparse_seq2seq.fairseq_plugin.entmax_loss import EntmaxLossCriterion

    with pytest.raises(ValueError, match="--loss-alpha"):
        EntmaxLossCriterion(None, loss_alpha=1.0)


def test_training_forward_logs_alpha_and_density_per_head(data_bin):
    """α of each α-entmax head and the density of each sparse head of that very batch,
    under the registry's names; softmax heads log neither, evaluation logs nothing."""
    from fairseq.logging import metrics

    from sparse_seq2seq.normalizers import head_density
    from sparse_seq2seq.registry import attention_modules, parse_head_scalar_name

    model, task, _ = build(data_bin, "--encoder-attn-normalizer", "sparsemax",
                           "--decoder-self-attn-normalizer", "softmax",
                           "--decoder-cross-attn-normalizer", "alpha_entmax", "--attn-alpha-init", "random",
                           "--dropout", "0", "--attention-dropout", "0")
    modules = {(kind, layer): m for kind, layer, m in attention_modules(model)}
    for m in modules.values():
        m.keep_attention = True
    net = batch(task)["net_input"]
    model.train()
    with metrics.aggregate(new_root=True) as agg:
        model(**net)
    logged = {parse_head_scalar_name(name): value for name, value in agg.get_smoothed_values().items()}
    assert None not in logged
    expected = {}
    src_pad = net["src_tokens"].eq(task.source_dictionary.pad())
    for (kind, layer), m in modules.items():
        if kind == "dec_cross":
            for head, alpha in enumerate(m.alpha.tolist()):
                expected[("alpha", kind, layer, head)] = alpha
        if kind != "dec_self":
            probs = m.last_attention  # (bsz, heads, tgt, src)
            scores = torch.zeros_like(probs).masked_fill(src_pad[:, None, None, :], float("-inf"))
            for head, density in enumerate(head_density(scores, probs).tolist()):
                expected[("density", kind, layer, head)] = density
    assert set(logged) == set(expected) and len(expected) == 2 * 4 + 4 * 4
    for key, value in expected.items():
        assert logged[key] == pytest.approx(value, abs=1e-3), key
    model.eval()
    with metrics.aggregate(new_root=True) as agg, torch.no_grad():
        model(**net)
    assert not agg.get_smoothed_values()


def test_layers_carry_named_attention_options(data_bin):
    model, _, _ = build(data_bin, *normalizer_flags("entmax15"))
    layer = model.decoder.layers[0]
    assert layer.self_attention_options.normalizer == "entmax15"
    assert layer.cross_attention_options.alpha_init == "random"
    assert model.encoder.layers[0].attention_options.normalizer == "entmax15"


@pytest.mark.parametrize("name", ["transformer", "transformer_iwslt_de_en", "transformer_wmt_en_de"])
def test_architectures_have_the_sizes_of_their_fairseq_namesakes(name):
    import argparse

    from fairseq.models import ARCH_CONFIG_REGISTRY

    import sparse_seq2seq.fairseq_plugin  # noqa: F401

    ours, theirs = argparse.Namespace(), argparse.Namespace()
    ARCH_CONFIG_REGISTRY[f"entmax_{name}"](ours)
    ARCH_CONFIG_REGISTRY[name](theirs)
    for key, value in vars(theirs).items():
        assert getattr(ours, key) == value, key
    assert ours.encoder_attn_normalizer == "alpha_entmax"
