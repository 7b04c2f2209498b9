"""Sparse attention in transformers models: the attention function, an encoder (the real
MiniLM BERT), learned α and its round trip through save_pretrained / from_pretrained."""
from __future__ import annotations

import json
import os
import subprocess
import sys

import pytest
import torch
import torch.nn.functional as F

if not torch.cuda.is_available():  # read when the Triton kernels are first loaded
    os.environ.setdefault("TRITON_INTERPRET", "1")

transformers = pytest.importorskip("transformers")

import sparse_seq2seq.hf as shf  # noqa: E402
from sparse_seq2seq.hf.attention import allowed_keys, plain_mask  # noqa: E402
from sparse_seq2seq.kernels import materialised_attention  # noqa: E402
from transformers import AutoModel, AutoTokenizer, BertConfig, BertModel  # noqa: E402
from transformers.masking_utils import AttentionMaskInterface  # noqa: E402

from hf_helpers import CALLS, capturing, central_difference, minilm_path, reference_probs  # noqa: E402

SENTENCES = ["The cat sat on the mat.",
             "Sparse attention gives some tokens exactly zero weight, and the rest share it."]


class Module(torch.nn.Module):
    """What the attention function reads from an attention module."""

    def __init__(self, is_causal: bool = False):
        super().__init__()
        self.is_causal = is_causal


def _qkv(batch=2, heads=3, tq=5, tk=6, dim=8, kv_heads=None, seed=0):
    g = torch.Generator().manual_seed(seed)
    q = torch.randn(batch, heads, tq, dim, generator=g)
    k = torch.randn(batch, kv_heads or heads, tk, dim, generator=g)
    v = torch.randn(batch, kv_heads or heads, tk, dim, generator=g)
    return q, k, v


@pytest.fixture(scope="module")
def minilm():
    path = minilm_path()
    return path, AutoTokenizer.from_pretrained(str(path))


def _tiny_bert(**kw) -> BertModel:
    torch.manual_seed(0)
    config = BertConfig(vocab_size=40, hidden_size=32, num_hidden_layers=2, num_attention_heads=4,
                        intermediate_size=48, max_position_embeddings=32, **kw)
    return BertModel(config).eval()


# -- registration -------------------------------------------------------------------------
def test_importing_the_library_does_not_import_transformers():
    code = "import sys, sparse_seq2seq; sys.exit('transformers' in sys.modules)"
    assert subprocess.run([sys.executable, "-c", code]).returncode == 0


def test_names_are_registered_with_their_masks():
    for name in shf.IMPLEMENTATIONS:
        assert name in transformers.AttentionInterface() and name in AttentionMaskInterface()


# -- the attention function -----------------------------------------------------------------
@pytest.mark.parametrize("normalizer", ["softmax", "sparsemax", "entmax15"])
def test_boolean_and_additive_masks_agree_and_match_the_reference(normalizer):
    q, k, v = _qkv()
    allowed = torch.rand(2, 1, 5, 6, generator=torch.Generator().manual_seed(1)) > 0.3
    allowed[0, 0, 2] = False  # a query with no key
    additive = torch.where(allowed, 0.0, torch.finfo(torch.float32).min)
    out_b, p_b = shf.attention_forward(Module(), q, k, v, allowed, scaling=0.5, normalizer=normalizer)
    out_f, p_f = shf.attention_forward(Module(), q, k, v, additive, scaling=0.5, normalizer=normalizer)
    torch.testing.assert_close(out_b, out_f)
    ref = reference_probs(q @ k.transpose(-1, -2) * 0.5, allowed, normalizer)
    torch.testing.assert_close(p_b.double(), ref, atol=1e-6, rtol=1e-5)
    assert out_b.shape == (2, 5, 3, 8)  # (batch, q_len, heads, head_dim)
    assert torch.equal(out_b[0, 2], torch.zeros(3, 8)) and torch.equal(p_b[0, :, 2], torch.zeros(3, 6))
    torch.testing.assert_close(out_b, (p_b @ v).transpose(1, 2))


def test_additive_biases_are_added_and_minus_inf_forbids():
    q, k, v = _qkv(tq=4, tk=4)
    bias = torch.randn(1, 1, 4, 4)
    bias[..., 0, 3] = float("-inf")
    _, p = shf.attention_forward(Module(), q, k, v, bias, normalizer="entmax15")
    ref = reference_probs(q @ k.transpose(-1, -2) / 8 ** 0.5 + bias, bias > float("-inf"), "entmax15")
    torch.testing.assert_close(p.double(), ref, atol=1e-6, rtol=1e-5)


def test_no_mask_is_causal_for_a_causal_module_and_grouped_heads_share_keys():
    q, k, v = _qkv(tq=5, tk=5, heads=4, kv_heads=2)
    _, p = shf.attention_forward(Module(is_causal=True), q, k, v, None, normalizer="sparsemax")
    scores = q @ k.repeat_interleave(2, dim=1).transpose(-1, -2) / 8 ** 0.5
    ref = reference_probs(scores, torch.ones(5, 5, dtype=torch.bool).tril(), "sparsemax")
    torch.testing.assert_close(p.double(), ref, atol=1e-6, rtol=1e-5)
    _, p_single = shf.attention_forward(Module(is_causal=True), q[:, :, -1:], k, v, None, normalizer="sparsemax")
    torch.testing.assert_close(p_single, p[:, :, -1:])  # one query (decoding) sees every key


@pytest.mark.parametrize("dtype", [torch.float16, torch.bfloat16])
def test_half_precision_is_computed_in_float32_and_returned_in_its_dtype(dtype):
    q, k, v = (t.to(dtype) for t in _qkv(dim=16))
    q = q * 60  # q·k overflows float16 (> 65504) if computed in it
    out, p = shf.attention_forward(Module(), q, k, v, None, normalizer="entmax15")
    assert out.dtype == dtype and p.dtype == dtype
    out32, p32 = shf.attention_forward(Module(), q.float(), k.float(), v.float(), None, normalizer="entmax15")
    torch.testing.assert_close(p, p32.to(dtype))  # the same float32 probabilities, rounded
    assert bool(torch.isfinite(out).all())
    torch.testing.assert_close(out.float(), out32, atol=0.05, rtol=0.02)


def test_dropout_drops_probabilities_in_training_only():
    q, k, v = _qkv()
    module = Module()
    _, p = shf.attention_forward(module.eval(), q, k, v, None, dropout=0.5, normalizer="entmax15")
    module.train()
    torch.manual_seed(3)
    out, _ = shf.attention_forward(module, q, k, v, None, dropout=0.5, normalizer="entmax15")
    torch.manual_seed(3)
    expected = (F.dropout(p, 0.5, training=True) @ v).transpose(1, 2)
    torch.testing.assert_close(out, expected)
    assert not torch.allclose(out, (p @ v).transpose(1, 2))


def test_plain_masks_are_recognised_and_mean_what_the_kernel_computes():
    q, k, v = _qkv(tq=4, tk=6)
    pad = torch.tensor([[False] * 6, [False] * 4 + [True] * 2])
    future = torch.arange(6)[None, :] > torch.arange(4)[:, None] + 2  # bottom-right
    padding = (~pad)[:, None, None, :].expand(2, 1, 4, 6)
    causal = padding & ~future
    window = causal & (torch.arange(6)[None, :] >= torch.arange(4)[:, None])
    found = plain_mask(padding, False, 4, 6)
    assert torch.equal(found[0], pad) and found[1] is False
    found = plain_mask(torch.where(causal, 0.0, float("-inf")), False, 4, 6)
    assert torch.equal(found[0], pad) and found[1] is True
    assert plain_mask(window, False, 4, 6) is None
    assert plain_mask(torch.where(padding, 0.5, float("-inf")), False, 4, 6) is None  # a bias
    assert plain_mask(None, True, 4, 6) is None  # top-left causal is not the kernel's
    for mask in (padding, causal):
        kpm, is_causal = plain_mask(mask, False, 4, 6)
        ours, _ = shf.attention_forward(Module(), q, k, v, mask, normalizer="entmax15")
        kernel = materialised_attention(q, k, v, 1.5, key_padding_mask=kpm, causal=is_causal)
        torch.testing.assert_close(ours, kernel.transpose(1, 2), atol=1e-5, rtol=1e-4)
    assert torch.equal(allowed_keys(torch.where(causal, 0.0, torch.finfo(torch.float32).min)), causal)


# -- an encoder: the real MiniLM --------------------------------------------------------------
def test_minilm_softmax_equals_eager_and_entmax_rows_are_sparse_and_exact(minilm):
    path, tokenizer = minilm
    batch = tokenizer(SENTENCES, padding=True, return_tensors="pt")
    real = batch["attention_mask"].bool()
    eager = AutoModel.from_pretrained(str(path), attn_implementation="eager").eval()
    ours = AutoModel.from_pretrained(str(path), attn_implementation=shf.SOFTMAX).eval()
    with torch.no_grad():
        expected = eager(**batch).last_hidden_state
        torch.testing.assert_close(ours(**batch).last_hidden_state[real], expected[real], atol=1e-5, rtol=1e-4)

    model = AutoModel.from_pretrained(str(path), attn_implementation=capturing("entmax15")).eval()
    CALLS.clear()
    with torch.no_grad():
        sparse = model(**batch).last_hidden_state
    assert len(CALLS) == 6 and not torch.allclose(sparse[real], expected[real], atol=1e-2)
    allowed = real[:, None, None, :]
    for call in CALLS:
        weights = call["weights"]
        ref = reference_probs(call["q"] @ call["k"].transpose(-1, -2) * call["scaling"], allowed, "entmax15")
        torch.testing.assert_close(weights.double(), ref, atol=2e-6, rtol=1e-4)
        assert bool((weights.expand(-1, -1, -1, -1)[allowed.expand_as(weights)] == 0).any())
        assert bool((weights.masked_select(~allowed) == 0).all())


def test_minilm_from_pretrained_with_entmax15_and_bfloat16(minilm):
    path, tokenizer = minilm
    batch = tokenizer(SENTENCES, padding=True, return_tensors="pt")
    real = batch["attention_mask"].bool()
    model = AutoModel.from_pretrained(str(path), attn_implementation="entmax15").eval()
    half = AutoModel.from_pretrained(str(path), attn_implementation="entmax15", dtype=torch.bfloat16).eval()
    with torch.no_grad():
        full = model(**batch).last_hidden_state
        low = half(**batch).last_hidden_state
    assert low.dtype == torch.bfloat16 and bool(torch.isfinite(low).all())
    cos = F.cosine_similarity(low.float()[real], full[real], dim=-1)
    assert float(cos.min()) > 0.98


def test_alpha_entmax_from_a_plain_checkpoint_starts_at_its_init(minilm):
    path, tokenizer = minilm
    model = AutoModel.from_pretrained(str(path), attn_implementation="alpha_entmax").eval()
    alphas = [m.entmax_alpha.alpha for _, m in shf.attention_modules(model)]
    assert len(alphas) == 6
    for alpha in alphas:
        torch.testing.assert_close(alpha, torch.full((12,), 1.5))
    with torch.no_grad():
        out = model(**tokenizer(SENTENCES, padding=True, return_tensors="pt")).last_hidden_state
    assert bool(torch.isfinite(out).all())


# -- learned α ----------------------------------------------------------------------------------
def test_sparsify_gives_every_head_an_alpha_that_gets_gradients(minilm):
    path, tokenizer = minilm
    model = shf.sparsify(AutoModel.from_pretrained(str(path)), "alpha_entmax", alpha_init=1.5).train()
    logits = [n for n, _ in model.named_parameters() if n.endswith("entmax_alpha.alpha_logit")]
    assert len(logits) == 6 and model.config._attn_implementation == "alpha_entmax"
    out = model(**tokenizer(SENTENCES, padding=True, return_tensors="pt")).last_hidden_state
    out.pow(2).mean().backward()
    for _, module in shf.attention_modules(model):
        grad = module.entmax_alpha.alpha_logit.grad
        assert grad is not None and grad.shape == (12,) and bool(torch.isfinite(grad).all())
        assert bool((grad != 0).all())


def test_alpha_gradient_matches_finite_differences():
    model = shf.sparsify(_tiny_bert(attention_probs_dropout_prob=0.0), "alpha_entmax", alpha_init=1.4)
    model = model.double()
    ids = torch.randint(1, 40, (2, 6), generator=torch.Generator().manual_seed(0))
    mask = torch.ones_like(ids)
    mask[1, 4:] = 0
    weight = torch.randn(2, 6, 32, dtype=torch.float64, generator=torch.Generator().manual_seed(1))

    def loss():
        return (model(input_ids=ids, attention_mask=mask).last_hidden_state * weight).sum()

    loss().backward()
    logit = model.encoder.layer[1].attention.self.entmax_alpha.alpha_logit
    eps = 1e-6
    for head in range(4):
        assert float(logit.grad[head]) == pytest.approx(
            central_difference(logit, head, loss, eps), rel=1e-4, abs=1e-8)


def test_save_pretrained_and_from_pretrained_keep_alpha_and_the_implementation(tmp_path):
    model = shf.sparsify(_tiny_bert(), "alpha_entmax", alpha_init="random")
    with torch.no_grad():
        model.encoder.layer[0].attention.self.entmax_alpha.alpha_logit.copy_(torch.tensor([-2.0, -0.5, 0.5, 3.0]))
    model.save_pretrained(tmp_path)
    saved = json.loads((tmp_path / "config.json").read_text())
    assert saved["attn_implementation"] == "alpha_entmax" and saved["entmax_alpha_init"] == "random"
    loaded = AutoModel.from_pretrained(tmp_path).eval()
    assert loaded.config._attn_implementation == "alpha_entmax"
    for (name, a), (_, b) in zip(model.state_dict().items(), loaded.state_dict().items()):
        assert torch.equal(a, b), name
    ids = torch.randint(1, 40, (2, 5), generator=torch.Generator().manual_seed(2))
    with torch.no_grad():
        torch.testing.assert_close(loaded(input_ids=ids).last_hidden_state, model(input_ids=ids).last_hidden_state)
    assert AutoModel.from_pretrained(tmp_path, attn_implementation="eager").config._attn_implementation == "eager"

    fixed = tmp_path / "entmax15"
    shf.sparsify(_tiny_bert(), "entmax15").save_pretrained(fixed)
    reloaded = AutoModel.from_pretrained(fixed)
    assert reloaded.config._attn_implementation == "entmax15"
    assert not any("entmax_alpha" in n for n, _ in reloaded.named_parameters())


def test_sparsify_refuses_bad_arguments_and_softmax_undoes_it():
    model = _tiny_bert()
    with pytest.raises(ValueError, match="normalizer must be one of"):
        shf.sparsify(model, "entmax2")
    with pytest.raises(ValueError, match="alpha_init"):
        shf.sparsify(model, "alpha_entmax", alpha_init=2.5)
    assert not any("entmax_alpha" in n for n, _ in model.named_parameters())  # nothing half-done
    with pytest.raises(TypeError, match="PreTrainedModel"):
        shf.sparsify(torch.nn.Linear(2, 2), "entmax15")
    shf.sparsify(model, "alpha_entmax")
    shf.sparsify(model, "softmax")
    assert model.config._attn_implementation == "eager" and not hasattr(model.config, "attn_implementation")
    assert not any("entmax_alpha" in n for n, _ in model.named_parameters())


# -- on a GPU: the fused kernel ----------------------------------------------------------------
@pytest.mark.cuda
@pytest.mark.skipif(not torch.cuda.is_available(), reason="needs a CUDA GPU")
def test_cuda_fused_kernel_matches_the_materialised_path(minilm, monkeypatch):
    from sparse_seq2seq.kernels import attention as kernels

    path, tokenizer = minilm
    batch = tokenizer(SENTENCES, padding=True, return_tensors="pt")
    real = batch["attention_mask"].bool()
    calls = []
    original = kernels.fused_attention
    monkeypatch.setattr(kernels, "fused_attention", lambda *a, **kw: calls.append(1) or original(*a, **kw))
    for name in ("entmax15", "alpha_entmax"):
        cpu = AutoModel.from_pretrained(str(path), attn_implementation=name).eval()
        gpu = AutoModel.from_pretrained(str(path), attn_implementation=name).cuda().eval()
        calls.clear()
        out_gpu = gpu(**{k: t.cuda() for k, t in batch.items()}).last_hidden_state
        out_cpu = cpu(**batch).last_hidden_state
        assert len(calls) == 6
        torch.testing.assert_close(out_gpu.cpu()[real], out_cpu[real], atol=2e-3, rtol=1e-3)
        if name == "alpha_entmax":
            out_gpu[real.cuda()].pow(2).mean().backward()
            out_cpu[real].pow(2).mean().backward()
            for (_, a), (_, b) in zip(shf.attention_modules(gpu), shf.attention_modules(cpu)):
                torch.testing.assert_close(a.entmax_alpha.alpha_logit.grad.cpu(), b.entmax_alpha.alpha_logit.grad,
                                           atol=1e-4, rtol=2e-2)


@pytest.mark.skipif(torch.cuda.is_available(), reason="on a GPU the CUDA test runs the kernel itself")
def test_plain_masks_of_real_models_take_the_fused_kernel(monkeypatch):
    """The dispatch to sparse_seq2seq.kernels, run on CPU through Triton's interpreter."""
    import triton  # noqa: F401  (installed by the set-up: a missing triton fails this test)
    from sparse_seq2seq.hf import attention as hf_attention
    from sparse_seq2seq.kernels import attention as kernels
    from transformers import GPT2Config, GPT2Model

    assert os.environ.get("TRITON_INTERPRET") == "1"

    torch.manual_seed(0)
    bert = BertModel(BertConfig(vocab_size=40, hidden_size=64, num_hidden_layers=1, num_attention_heads=2,
                                intermediate_size=64, max_position_embeddings=32)).eval()
    gpt2 = GPT2Model(GPT2Config(vocab_size=40, n_positions=32, n_embd=64, n_layer=1, n_head=2,
                                bos_token_id=1, eos_token_id=2)).eval()
    ids = torch.randint(1, 40, (2, 9), generator=torch.Generator().manual_seed(0))
    mask = torch.ones_like(ids)
    mask[1, 6:] = 0  # right padding: every query keeps a key, also under the causal mask
    seen = []
    original = kernels.fused_attention
    monkeypatch.setattr(kernels, "fused_attention",
                        lambda *a, **kw: seen.append((kw["key_padding_mask"], kw["causal"])) or original(*a, **kw))
    for model, causal, name in ((bert, False, "entmax15"), (gpt2, True, "alpha_entmax")):
        shf.sparsify(model, name, alpha_init="random")
        with torch.no_grad():
            monkeypatch.setattr(hf_attention, "_on_gpu", lambda q: False)
            expected = model(input_ids=ids, attention_mask=mask).last_hidden_state
            monkeypatch.setattr(hf_attention, "_on_gpu", lambda q: True)
            seen.clear()
            fused = model(input_ids=ids, attention_mask=mask).last_hidden_state
        assert len(seen) == 1 and seen[0][1] is causal and torch.equal(seen[0][0], mask == 0)
        real = mask.bool()
        torch.testing.assert_close(fused[real], expected[real], atol=1e-5, rtol=1e-4)


def test_a_mask_is_read_once_for_all_layers(monkeypatch):
    """HF passes one mask tensor to every layer: its values are read (a device sync on a GPU)
    once, and a mask changed in place is read again."""
    from sparse_seq2seq.hf import attention as hf_attention
    reads = []
    real = hf_attention._read_plain_mask
    monkeypatch.setattr(hf_attention, "_read_plain_mask",
                        lambda *a: reads.append(1) or real(*a))
    padding = torch.ones(2, 1, 4, 6, dtype=torch.bool)
    padding[1, ..., 4:] = False
    found = [plain_mask(padding, False, 4, 6) for _ in range(6)]
    assert len(reads) == 1 and all(f[0] is found[0][0] for f in found)
    padding[1, ..., 3] = False
    kpm, _ = plain_mask(padding, False, 4, 6)
    assert len(reads) == 2 and kpm[1].tolist() == [False] * 3 + [True] * 3
