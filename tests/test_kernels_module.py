"""SparseMultiheadAttention with the fused kernel forced (SPARSE_SEQ2SEQ_ATTN_KERNEL=triton,
CPU through Triton's interpreter) gives the materialised path's outputs, gradients (every
parameter, α included), head densities and incremental decoding."""
import os
import warnings

import pytest
import torch

if not torch.cuda.is_available():
    os.environ["TRITON_INTERPRET"] = "1"

import triton  # noqa: E402,F401  (CI installs triton: a missing triton fails these tests)

from sparse_seq2seq import attention as attention_module  # noqa: E402
from sparse_seq2seq.attention import KERNEL_ENV, SparseMultiheadAttention  # noqa: E402
from sparse_seq2seq.kernels import attention as fa  # noqa: E402
from sparse_seq2seq.kernels import launch  # noqa: E402

EMBED, HEADS = 64, 2  # head dim 32
DEVICE = "cuda" if torch.cuda.is_available() else "cpu"


@pytest.fixture(autouse=True)
def small_tiles():
    saved = dict(launch.INTERPRETER_BLOCKS)
    launch.INTERPRETER_BLOCKS.update(BM=16, BN=16)
    yield
    launch.INTERPRETER_BLOCKS.update(saved)


def _module(normalizer, **kwargs):
    """α per head 1.35 and 1.8 for alpha_entmax: near α = 2, p^{2−α} is steep at the edge of
    the support, and float32 τ (either path's) moves a gradient entry on the edge by 1e-3."""
    torch.manual_seed(0)
    module = SparseMultiheadAttention(EMBED, HEADS, normalizer=normalizer, **kwargs)
    if normalizer == "alpha_entmax":
        with torch.no_grad():
            module.normalizer.alpha_logit.copy_(torch.logit(torch.tensor([0.35, 0.8])))
    return module.to(DEVICE)


def _run(monkeypatch, mode, module, *args, **kwargs):
    """Forward and backward under ``mode``; output, parameter gradients, densities."""
    monkeypatch.setenv(KERNEL_ENV, mode)
    module.zero_grad()
    module.normalizer.record_density = True
    out, _ = module(*args, need_weights=False, **kwargs)
    out.square().sum().backward()
    grads = {n: p.grad.clone() for n, p in module.named_parameters()}
    density = module.normalizer.last_density
    module.normalizer.last_density = None
    return out.detach(), grads, density


def _same(monkeypatch, module, *args, **kwargs):
    calls = []
    real = fa.SparseAttentionFunction.apply
    monkeypatch.setattr(fa.SparseAttentionFunction, "apply",
                        lambda *a: calls.append(1) or real(*a))
    fused = _run(monkeypatch, "triton", module, *args, **kwargs)
    assert calls, "the fused kernel did not run"
    calls.clear()
    ref = _run(monkeypatch, "off", module, *args, **kwargs)
    assert not calls
    torch.testing.assert_close(fused[0], ref[0], atol=1e-5, rtol=1e-5)
    for name in ref[1]:
        torch.testing.assert_close(fused[1][name], ref[1][name], atol=1e-4, rtol=1e-4,
                                   msg=lambda m: f"{name}: {m}")
    if ref[2] is not None:
        torch.testing.assert_close(fused[2], ref[2])


@pytest.mark.parametrize("normalizer", ["alpha_entmax", "entmax15"])
def test_causal_self_attention_with_padding(monkeypatch, normalizer):
    module = _module(normalizer, self_attention=True).train()
    x = torch.randn(20, 2, EMBED, device=DEVICE)
    pad = torch.zeros(2, 20, dtype=torch.bool, device=DEVICE)
    pad[1, 13:] = True
    future = torch.triu(torch.full((20, 20), float("-inf"), device=DEVICE), 1)
    _same(monkeypatch, module, x, x, x, key_padding_mask=pad, attn_mask=future)


@pytest.mark.parametrize("normalizer", ["alpha_entmax", "sparsemax"])
def test_cross_attention_with_padding(monkeypatch, normalizer):
    module = _module(normalizer, encoder_decoder_attention=True).train()
    x, enc = torch.randn(7, 3, EMBED, device=DEVICE), torch.randn(33, 3, EMBED, device=DEVICE)
    pad = torch.zeros(3, 33, dtype=torch.bool, device=DEVICE)
    pad[0, 20:] = True
    pad[2, 1:] = True
    _same(monkeypatch, module, x, enc, enc, key_padding_mask=pad)


def _decode(module, x, enc, enc_pad, beam):
    """Step-by-step outputs of self-attention followed by context attention (beam-shared keys)."""
    state = {}
    self_attn, cross = module
    steps = []
    for t in range(x.size(0)):
        y, _ = self_attn(x[t:t + 1], x[t:t + 1], x[t:t + 1], incremental_state=state,
                         need_weights=False)
        y, _ = cross(y, enc, enc, key_padding_mask=enc_pad, incremental_state=state,
                     static_kv=True, need_weights=False)
        steps.append(y)
    return torch.cat(steps)


def test_incremental_decoding_with_shared_beam_keys(monkeypatch):
    """Beam 2 over 2 sentences: cached self-attention and context attention whose encoder
    keys are kept once per sentence (bsz ≠ kv_bsz); fused equals materialised."""
    torch.manual_seed(1)
    self_attn = _module("alpha_entmax", self_attention=True).eval()
    cross = _module("entmax15", encoder_decoder_attention=True).eval()
    beam = 2
    for m in (self_attn, cross):
        m.set_beam_size(beam)
    x = torch.randn(4, 2 * beam, EMBED, device=DEVICE)
    enc = torch.randn(9, 2, EMBED, device=DEVICE).repeat_interleave(beam, dim=1)
    enc_pad = torch.zeros(2, 9, dtype=torch.bool, device=DEVICE)
    enc_pad[1, 6:] = True
    enc_pad = enc_pad.repeat_interleave(beam, dim=0)
    out = {}
    with torch.no_grad():
        for mode in ("triton", "off"):
            monkeypatch.setenv(KERNEL_ENV, mode)
            out[mode] = _decode((self_attn, cross), x, enc, enc_pad, beam)
    torch.testing.assert_close(out["triton"], out["off"], atol=1e-5, rtol=1e-5)


def test_weights_from_the_fused_path_equal_the_materialised_ones(monkeypatch):
    """need_weights (fairseq asks for the last layer's context attention) keeps the fused
    output; the weights come from the kernel's τ: per head and averaged, with beams."""
    module = _module("alpha_entmax", encoder_decoder_attention=True).eval()
    module.set_beam_size(2)
    x = torch.randn(1, 4, EMBED, device=DEVICE)
    enc = torch.randn(11, 2, EMBED, device=DEVICE).repeat_interleave(2, dim=1)
    pad = torch.zeros(4, 11, dtype=torch.bool, device=DEVICE)
    pad[2:, 7:] = True
    got, calls = {}, []
    real = fa.SparseAttentionFunction.apply
    monkeypatch.setattr(fa.SparseAttentionFunction, "apply", lambda *a: calls.append(1) or real(*a))
    with torch.no_grad():
        for mode in ("triton", "off"):
            monkeypatch.setenv(KERNEL_ENV, mode)
            out, heads = module(x, enc, enc, key_padding_mask=pad, need_head_weights=True)
            _, mean = module(x, enc, enc, key_padding_mask=pad, need_weights=True)
            got[mode] = (out, heads, mean)
    assert len(calls) == 2  # both "triton" calls ran the kernel, the "off" ones did not
    assert got["triton"][1].shape == (HEADS, 4, 1, 11) and got["triton"][2].shape == (4, 1, 11)
    for a, b in zip(got["triton"], got["off"]):
        torch.testing.assert_close(a, b, atol=1e-5, rtol=1e-5)


def test_fallbacks_are_said_once(monkeypatch):
    monkeypatch.setenv(KERNEL_ENV, "triton")
    monkeypatch.setattr(attention_module, "_WARNED", set())
    module = SparseMultiheadAttention(96, 2, normalizer="entmax15", self_attention=True).to(DEVICE)
    x = torch.randn(5, 1, 96, device=DEVICE)
    with pytest.warns(UserWarning, match="head dim 48"):
        module(x, x, x, need_weights=False)
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        module(x, x, x, need_weights=False)  # said already
    module = _module("sparsemax", self_attention=True, dropout=0.1).train()
    x = torch.randn(5, 1, EMBED, device=DEVICE)
    module.keep_attention = True
    with pytest.warns(UserWarning, match="kept for analysis"):
        module(x, x, x, need_weights=False)


def test_bad_mode_is_refused(monkeypatch):
    monkeypatch.setenv(KERNEL_ENV, "fast")
    module = _module("sparsemax", self_attention=True)
    x = torch.randn(3, 1, EMBED)
    with pytest.raises(ValueError, match=KERNEL_ENV):
        module(x, x, x)


def test_attention_dropout_runs_inside_the_kernel(monkeypatch):
    """Training with attention dropout keeps the fused path (no fallback said): the mask
    follows torch's seed, and evaluation has no dropout."""
    monkeypatch.setenv(KERNEL_ENV, "triton")
    monkeypatch.setattr(attention_module, "_WARNED", set())
    module = _module("entmax15", self_attention=True, dropout=0.3).train()
    x = torch.randn(9, 2, EMBED, device=DEVICE)
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        torch.manual_seed(4)
        first, _ = module(x, x, x, need_weights=False)
        torch.manual_seed(4)
        again, _ = module(x, x, x, need_weights=False)
        torch.manual_seed(5)
        other, _ = module(x, x, x, need_weights=False)
    assert torch.equal(first, again) and not torch.allclose(first, other)
    module.eval()
    monkeypatch.setenv(KERNEL_ENV, "off")
    reference, _ = module(x, x, x, need_weights=False)
    monkeypatch.setenv(KERNEL_ENV, "triton")
    torch.testing.assert_close(module(x, x, x, need_weights=False)[0], reference,
                               atol=1e-5, rtol=1e-5)
    assert not torch.allclose(first, reference)
