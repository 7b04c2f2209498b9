"""The Triton kernels on a GPU: half-precision tolerances, head dim 128, long rows, speed
and memory against the materialised path, and beam search with the fused attention giving
the hypotheses of the materialised path. Skipped without CUDA."""
import os
import re
import time

import pytest
import torch

pytestmark = [pytest.mark.cuda,
              pytest.mark.skipif(not torch.cuda.is_available(), reason="needs a CUDA GPU")]

CUDA = "cuda"


def _qkv(batch, heads, tq, tk, dim, dtype, seed=0):
    gen = torch.Generator(device=CUDA).manual_seed(seed)
    make = lambda t: torch.randn(batch, heads, t, dim, generator=gen, device=CUDA).to(dtype)
    return [x.requires_grad_() for x in (make(tq), make(tk), make(tk))]


@pytest.mark.parametrize("dtype,tol", [(torch.float32, 1e-4), (torch.float16, 2e-2),
                                       (torch.bfloat16, 6e-2)])
@pytest.mark.parametrize("dim", [32, 64, 128])
@pytest.mark.parametrize("causal", [False, True])
def test_half_precision_against_float32_reference(dtype, tol, dim, causal):
    """Rows of 77 and 200 keys: the row-resident kernels (float32 beyond 64 keys: streamed)."""
    _half_precision_case(dtype, tol, dim, causal, 77, 77 if causal else 200)


@pytest.mark.parametrize("dtype,tol", [(torch.float16, 2e-2), (torch.bfloat16, 6e-2)])
@pytest.mark.parametrize("dim", [64, 128])
def test_half_precision_streamed_rows(dtype, tol, dim):
    """Rows of 600 keys: longer than the resident kernels hold, so the streamed ones run."""
    _half_precision_case(dtype, tol, dim, False, 40, 600)


def _half_precision_case(dtype, tol, dim, causal, tq, tk):
    from sparse_seq2seq.kernels import attention as fa

    q, k, v = _qkv(2, 4, tq, tk, dim, dtype)
    alpha = torch.tensor([1.2, 1.5, 1.8, 2.0], device=CUDA, requires_grad=True)
    kpm = torch.zeros(2, k.size(2), dtype=torch.bool, device=CUDA)
    kpm[1, 50:] = True
    out = fa.fused_attention(q, k, v, alpha, kpm, causal)
    assert out.dtype == dtype
    ref = fa.materialised_attention(q.float(), k.float(), v.float(), alpha, kpm, causal)
    torch.testing.assert_close(out.float(), ref, atol=tol, rtol=tol)
    grad = torch.randn_like(ref)
    got = torch.autograd.grad(out, [q, k, v, alpha], grad.to(dtype))
    want = torch.autograd.grad(ref, [q, k, v, alpha], grad)
    for name, g, w in zip("qkva", got, want):
        scale = w.abs().max().clamp(min=1)
        torch.testing.assert_close(g.float() / scale, w / scale, atol=5 * tol, rtol=5 * tol,
                                   msg=lambda m: f"d{name}: {m}")


@pytest.mark.parametrize("tk", [77, 600])
def test_fused_attention_makes_no_device_sync(tk):
    """A training call of the fused attention (learned α per head, padding, dropout),
    forward and backward, with CUDA's sync check set to raise: the kernels themselves
    handle NaN/±inf, so nothing waits on the device."""
    from sparse_seq2seq.kernels.attention import fused_attention
    q, k, v = _qkv(2, 4, 33, tk, 64, torch.float16)
    alpha = torch.full((4,), 1.4, device=CUDA, requires_grad=True)
    pad = torch.zeros(2, tk, dtype=torch.bool, device=CUDA)
    pad[1, tk // 2:] = True
    torch.cuda.synchronize()
    torch.cuda.set_sync_debug_mode("error")
    try:
        out = fused_attention(q, k, v, alpha, pad, check_alpha=False, dropout=0.1)
        out.float().square().sum().backward()
    finally:
        torch.cuda.set_sync_debug_mode("default")
    assert all(torch.isfinite(t.grad).all() for t in (q, k, v, alpha))


def test_rowwise_kernels_on_cuda_match_eager():
    from sparse_seq2seq import backends
    from sparse_seq2seq.kernels import rowwise

    x = torch.randn(512, 3000, device=CUDA) * 2
    alpha = torch.rand(512, device=CUDA) + 1.01
    for kind, fwd in (("sparsemax", rowwise.sparsemax_fwd), ("entmax15", rowwise.entmax15_fwd)):
        ref = backends.EAGER.forward(kind, x.double(), None, 100, True).float()
        torch.testing.assert_close(fwd(x), ref, atol=1e-6, rtol=1e-5)
    ref = backends.EAGER.forward("entmax", x.double(), alpha.double().view(-1, 1), 100, True).float()
    torch.testing.assert_close(rowwise.entmax_alpha_fwd(x, alpha), ref, atol=1e-6, rtol=1e-5)


def _fwd_bwd_ms_and_mib(fn, *args):
    torch.cuda.synchronize()
    torch.cuda.reset_peak_memory_stats()
    base = torch.cuda.memory_allocated()
    fn(*args).float().sum().backward()  # warm-up (compiles)
    torch.cuda.synchronize()
    start = time.perf_counter()
    for _ in range(5):
        fn(*args).float().sum().backward()
    torch.cuda.synchronize()
    return (time.perf_counter() - start) / 5 * 1e3, (torch.cuda.max_memory_allocated() - base) / 2**20


def test_fused_is_faster_and_smaller_than_materialised_at_long_t():
    from sparse_seq2seq.kernels import attention as fa

    q, k, v = _qkv(4, 8, 2048, 2048, 64, torch.float16)
    alpha = torch.full((8,), 1.5, device=CUDA, requires_grad=True)
    fused_ms, fused_mib = _fwd_bwd_ms_and_mib(lambda *a: fa.fused_attention(*a), q, k, v, alpha)
    mat_ms, mat_mib = _fwd_bwd_ms_and_mib(lambda *a: fa.materialised_attention(*a), q, k, v, alpha)
    assert fused_ms < mat_ms, (fused_ms, mat_ms)
    assert fused_mib < 0.25 * mat_mib, (fused_mib, mat_mib)


@pytest.mark.slow
def test_beam_search_hypotheses_equal_with_fused_and_materialised(tmp_path):
    """fairseq-train a few updates on the GPU, then fairseq-generate (beam 4) with the fused
    kernel and with the materialised path: the same hypotheses."""
    from fairseq_helpers import BIN, USER_DIR, make_corpus, run

    data = make_corpus(tmp_path)
    flags = ["--user-dir", USER_DIR, "--arch", "entmax_transformer_tiny", "--task", "translation",
             "--encoder-attn-normalizer", "alpha_entmax", "--decoder-self-attn-normalizer",
             "alpha_entmax", "--decoder-cross-attn-normalizer", "entmax15"]
    run([str(BIN / "fairseq-train"), str(data), *flags, "--optimizer", "adam", "--lr", "1e-3",
         "--max-tokens", "2000", "--share-all-embeddings", "--no-epoch-checkpoints",
         "--disable-validation", "--seed", "1", "--num-workers", "0", "--max-update", "30",
         "--save-dir", str(tmp_path / "ckpt"), "--attention-dropout", "0"])
    hyps = {}
    for mode in ("auto", "off"):
        os.environ["SPARSE_SEQ2SEQ_ATTN_KERNEL"] = mode
        try:
            out = run([str(BIN / "fairseq-generate"), str(data), "--user-dir", USER_DIR,
                       "--path", str(tmp_path / "ckpt" / "checkpoint_last.pt"), "--beam", "4",
                       "--batch-size", "8", "--required-batch-size-multiple", "1",
                       "--gen-subset", "test"]).stdout
        finally:
            os.environ.pop("SPARSE_SEQ2SEQ_ATTN_KERNEL")
        hyps[mode] = sorted(re.findall(r"^H-(\d+)\t\S+\t(.*)$", out, flags=re.M))
    assert len(hyps["off"]) == 21
    assert hyps["auto"] == hyps["off"]
