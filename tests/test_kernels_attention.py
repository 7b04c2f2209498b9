"""Fused α-entmax attention (Triton) against the materialised path, on CPU through Triton's
interpreter: outputs to 1e-5, gradients in q, k, v and α to 1e-4, float32.

TRITON_INTERPRET is read when a kernel is decorated, i.e. when sparse_seq2seq.kernels first
loads its Triton module, so setting it here works even if triton itself was imported earlier.
"""
import os
import subprocess
import sys

import pytest
import torch

if not torch.cuda.is_available():
    os.environ["TRITON_INTERPRET"] = "1"

import triton  # noqa: E402,F401  (CI installs triton: a missing triton fails these tests)

from sparse_seq2seq.kernels import attention as fa  # noqa: E402
from sparse_seq2seq.kernels import launch  # noqa: E402
from sparse_seq2seq.kernels import sparse_attention  # noqa: E402

DEVICE = "cuda" if torch.cuda.is_available() else "cpu"


@pytest.fixture
def blocks():
    """Set the interpreter's tile sizes for one test (restored afterwards)."""
    saved = dict(launch.INTERPRETER_BLOCKS)

    def use(size: int):
        launch.INTERPRETER_BLOCKS.update(BM=size, BN=size)

    yield use
    launch.INTERPRETER_BLOCKS.update(saved)


def _inputs(batch, heads, tq, tk, dim, seed, spread=1.0):
    gen = torch.Generator().manual_seed(seed)
    make = lambda t: (torch.randn(batch, heads, t, dim, generator=gen) * spread).to(DEVICE)
    return make(tq).requires_grad_(), make(tk).requires_grad_(), make(tk).requires_grad_()


def _padding(batch, tk, seed):
    gen = torch.Generator().manual_seed(seed)
    lengths = torch.randint(1, tk + 1, (batch,), generator=gen)
    lengths[0] = tk  # one full row, the others padded
    return (torch.arange(tk)[None, :] >= lengths[:, None]).to(DEVICE)


def _compare(q, k, v, alpha, kpm=None, causal=False, out_tol=1e-5, grad_tol=1e-4):
    leaves = [q, k, v] + ([alpha] if isinstance(alpha, torch.Tensor) else [])
    out = fa.fused_attention(q, k, v, alpha, kpm, causal)
    ref = fa.materialised_attention(q, k, v, alpha, kpm, causal)
    torch.testing.assert_close(out, ref, atol=out_tol, rtol=out_tol)
    grad = torch.randn(out.shape, generator=torch.Generator().manual_seed(out.numel())).to(out)
    got = torch.autograd.grad(out, leaves, grad)
    want = torch.autograd.grad(ref, leaves, grad)
    for name, g, w in zip("qkva", got, want):
        torch.testing.assert_close(g, w, atol=grad_tol, rtol=grad_tol, msg=lambda m: f"d{name}: {m}")
    return out


def _heads_alpha(values):
    return torch.tensor(values, device=DEVICE, requires_grad=True)


# (batch, heads, Tq, Tk, D, α, padded, causal, tile): a grid over lengths {1, 7, 33, 100},
# D {32, 64}, float α (the sparsemax / 1.5-entmax / general kernels) and α per head in (1, 2]
CASES = [
    (1, 2, 1, 1, 32, [1.25, 2.0], False, False, 32),
    (2, 2, 1, 33, 64, [1.05, 1.6], True, False, 32),
    (2, 2, 7, 33, 32, 1.5, True, False, 16),
    (2, 2, 33, 7, 64, 2.0, True, False, 16),
    (1, 2, 33, 33, 32, [1.1, 1.9], False, True, 16),
    (2, 2, 7, 100, 32, 1.3, True, False, 32),
    (1, 2, 100, 7, 32, [1.5, 1.75], False, True, 32),
    (2, 2, 100, 100, 64, [1.33, 2.0], True, True, 32),
    (1, 2, 33, 100, 64, 1.75, False, False, 16),
]


@pytest.fixture(params=["streamed", "resident", "resident_forward"])
def path(request, monkeypatch):
    """Run a test through the streamed kernels, the row-resident ones, and the resident
    forward with the streamed dq (rows too long for the resident dq)."""
    if request.param == "streamed":
        monkeypatch.setattr(launch, "RESIDENT_MAX_KEYS", 0)
    elif request.param == "resident_forward":
        monkeypatch.setattr(launch, "RESIDENT_DQ_MAX_KEYS", 0)
    return request.param


@pytest.mark.parametrize("batch,heads,tq,tk,dim,alpha,padded,causal,tile", CASES)
def test_matches_materialised_path(blocks, path, batch, heads, tq, tk, dim, alpha, padded,
                                   causal, tile):
    blocks(tile)
    q, k, v = _inputs(batch, heads, tq, tk, dim, seed=tq * 131 + tk)
    alpha = _heads_alpha(alpha) if isinstance(alpha, list) else alpha
    kpm = _padding(batch, tk, seed=tk) if padded else None
    _compare(q, k, v, alpha, kpm, causal)


def test_fully_masked_rows_give_zeros_and_no_gradient(blocks, path):
    """A batch entry whose keys are all padding, and causal rows before the first key
    (Tq > Tk, bottom-right alignment), give zero outputs and zero gradients."""
    blocks(16)
    q, k, v = _inputs(2, 2, 20, 5, 32, seed=3)
    kpm = torch.zeros(2, 5, dtype=torch.bool, device=DEVICE)
    kpm[1] = True
    alpha = _heads_alpha([1.4, 1.8])
    out = _compare(q, k, v, alpha, kpm, causal=True)
    assert torch.equal(out[1], torch.zeros_like(out[1]))
    assert torch.equal(out[0, :, :15], torch.zeros_like(out[0, :, :15]))
    assert out[0, :, 15:].abs().sum() > 0
    (gq,) = torch.autograd.grad(fa.fused_attention(q, k, v, alpha, kpm, True).sum(), [q])
    assert torch.equal(gq[1], torch.zeros_like(gq[1]))


def test_dead_key_blocks_are_skipped_and_results_unchanged(blocks):
    """Peaked scores: most key blocks lie below τ, the live mask drops them, and the
    output and gradients still equal the materialised path."""
    blocks(16)
    q, k, v = _inputs(1, 2, 33, 100, 32, seed=5, spread=1.6)
    alpha = _heads_alpha([1.5, 2.0])
    _compare(q, k, v, alpha)
    _, _, live, _, _ = fa.launch_forward(q.detach(), k.detach(), v.detach(), alpha.detach(), None,
                                         False, 32 ** -0.5, 0, resident=False)
    assert live.shape == (2, 3, 7)
    assert 0 < live.float().mean() < 0.8


def test_density_and_weights_from_the_kept_rows(blocks, path):
    from sparse_seq2seq.normalizers import head_density
    blocks(16)
    q, k, v = _inputs(2, 2, 20, 30, 32, seed=4)
    kpm = _padding(2, 30, seed=8)
    alpha = torch.tensor([1.3, 2.0], device=DEVICE)
    _, stats = fa.fused_attention(q, k, v, alpha, kpm, causal=True, with_stats=True)
    scores = fa.masked_scores(q, k, kpm, True, 32 ** -0.5)
    probs = fa.entmax_bisect(scores, alpha.view(1, 2, 1, 1), dim=-1)
    torch.testing.assert_close(stats.density(), head_density(scores, probs))
    # the probabilities from the kept τ, without a threshold search (fully padded rows too)
    kpm[1] = True
    _, stats = fa.fused_attention(q, k, v, alpha, kpm, causal=True, with_stats=True)
    scores = fa.masked_scores(q, k, kpm, True, 32 ** -0.5)
    probs = fa.entmax_bisect(scores, alpha.view(1, 2, 1, 1), dim=-1)
    torch.testing.assert_close(stats.weights(q, k, kpm, causal=True), probs, atol=1e-6, rtol=1e-5)


def test_float_alpha_kernels_agree_with_the_general_one(blocks, path):
    """α = 2 and α = 1.5 as floats use closed forms; as tensors the general q-exponential."""
    blocks(16)
    q, k, v = _inputs(1, 2, 17, 20, 32, seed=11)
    for value in (2.0, 1.5):
        special = fa.fused_attention(q, k, v, value)
        general = fa.fused_attention(q, k, v, torch.full((2,), value, device=DEVICE))
        torch.testing.assert_close(special, general, atol=1e-5, rtol=1e-5)


def test_alpha_close_to_one_stays_accurate(blocks, path):
    """α − 1 = 1e-3 (a learned α drifting to 1): log1p/expm1 forms keep the output right
    (reference: float64 materialised path)."""
    blocks(16)
    q, k, v = _inputs(1, 1, 9, 20, 32, seed=2)
    out = fa.fused_attention(q, k, v, torch.tensor([1.001], device=DEVICE))
    ref = fa.materialised_attention(q.double(), k.double(), v.double(), 1.001)
    torch.testing.assert_close(out.double(), ref, atol=1e-5, rtol=1e-5)


def test_dispatch_and_errors():
    q, k, v = _inputs(1, 2, 5, 6, 48, seed=1)
    assert "head dim 48" in fa.kernel_unavailable_reason(q, k, v)
    torch.testing.assert_close(sparse_attention(q, k, v, 1.5),
                               fa.materialised_attention(q, k, v, 1.5))
    q, k, v = _inputs(1, 2, 5, 6, 32, seed=1)
    assert fa.kernel_unavailable_reason(q, k, v) is None
    with pytest.raises(ValueError, match=r"alpha must lie in \(1, 2\]"):
        sparse_attention(q, k, v, torch.tensor([1.0, 1.5]))
    with pytest.raises(ValueError, match="one per head"):
        sparse_attention(q, k, v, torch.tensor([1.2, 1.5, 1.7]))
    with pytest.raises(ValueError, match="key_padding_mask"):
        sparse_attention(q, k, v, 1.5, key_padding_mask=torch.zeros(1, 5, dtype=torch.bool))
    with pytest.raises(ValueError, match="do not agree"):
        sparse_attention(q, k[:, :1], v, 1.5)


# (tensor, index, value): a NaN or ±inf in one entry of q, k or v
NON_FINITE = [("q", (0, 0, 3, 5), float("nan")), ("q", (0, 0, 3, 5), float("inf")),
              ("q", (0, 1, 2, 0), float("-inf")), ("k", (0, 1, 4, 7), float("inf")),
              ("k", (0, 0, 6, 2), float("nan")), ("v", (0, 0, 2, 1), float("inf"))]


def _spoiled(which, index, value, shape, seed):
    q, k, v = (t.detach() for t in _inputs(*shape, seed=seed))
    dict(q=q, k=k, v=v)[which][index] = value
    return [t.requires_grad_() for t in (q, k, v)] + [_heads_alpha([1.5, 1.3])]


@pytest.mark.filterwarnings("ignore::RuntimeWarning")  # the interpreter: inf − inf, NaN max
@pytest.mark.parametrize("which,index,value", NON_FINITE)
def test_nan_and_inf_follow_the_library_rule(path, which, index, value):
    """NaN and ±inf inputs need no look before the kernel (no device sync): it applies the
    library's rule itself, equal to the materialised path entry for entry, NaN for NaN, in
    the output and the gradients in q, k, v and α (one key block: every product is formed,
    so 0·inf gives NaN in both)."""
    leaves = _spoiled(which, index, value, (1, 2, 7, 9, 32), seed=4)
    assert fa.kernel_unavailable_reason(*leaves[:3]) is None
    out = fa.fused_attention(*leaves)
    ref = fa.materialised_attention(*leaves)
    torch.testing.assert_close(out, ref, equal_nan=True, atol=1e-5, rtol=1e-5)
    grad = torch.randn(out.shape, generator=torch.Generator().manual_seed(7)).to(out)
    for name, g, w in zip("qkva", torch.autograd.grad(out, leaves, grad),
                          torch.autograd.grad(ref, leaves, grad)):
        torch.testing.assert_close(g, w, equal_nan=True, atol=1e-4, rtol=1e-4,
                                   msg=lambda m: f"d{name}: {m}")


@pytest.mark.filterwarnings("ignore::RuntimeWarning")
def test_nan_and_inf_rows_leave_the_others_alone(blocks, path):
    """Over many key blocks: a NaN in a query makes that row NaN and leaves every other row
    as it was; +inf in a query gives the limit (mass evenly on its +inf scores, as the
    materialised path), finite, and passes no gradient to α."""
    blocks(16)
    shape = (1, 2, 7, 100, 32)
    clean = fa.fused_attention(*_spoiled("q", (0, 0, 3, 5), 0.0, shape, seed=4)[:3],
                               _heads_alpha([1.5, 1.3])).detach()
    for value in (float("nan"), float("inf")):
        leaves = _spoiled("q", (0, 0, 3, 5), 0.0, shape, seed=4)
        with torch.no_grad():
            leaves[0][0, 0, 3, 5] = value
        out, stats = fa.fused_attention(*leaves, with_stats=True)
        others = torch.ones(out.shape[:3], dtype=torch.bool)
        others[0, 0, 3] = False
        torch.testing.assert_close(out[others], clean[others])
        assert bool(out[0, 0, 3].isnan().all()) == (value != value)
        torch.testing.assert_close(stats.weights(leaves[0], leaves[1]),
                                   _materialised_weights(leaves[0], leaves[1], leaves[3]),
                                   equal_nan=True)
        if value == value:
            ref = fa.materialised_attention(*leaves)
            torch.testing.assert_close(out, ref)
            assert bool(torch.isfinite(out).all())
            (grad_alpha,) = torch.autograd.grad(out[0, 0, 3].sum(), [leaves[3]])
            assert grad_alpha.abs().max() == 0


def _materialised_weights(q, k, alpha):
    from sparse_seq2seq.mappings import entmax_bisect
    scores = fa.masked_scores(q.detach(), k.detach(), None, False, q.size(-1) ** -0.5)
    return entmax_bisect(scores, alpha.detach().view(1, -1, 1, 1), dim=-1)


def test_importing_the_library_does_not_import_triton():
    code = ("import sys, sparse_seq2seq, sparse_seq2seq.kernels, sparse_seq2seq.attention; "
            "assert 'triton' not in sys.modules, 'triton imported'")
    subprocess.run([sys.executable, "-c", code], check=True)


def _block_any(mask: torch.Tensor, size: int) -> torch.Tensor:
    """(B, H, Tq, Tk) bool → (B·H, query blocks, key blocks): any entry true in the block."""
    b, h, tq, tk = mask.shape
    padded = torch.zeros(b, h, -(-tq // size) * size, -(-tk // size) * size, dtype=torch.bool,
                         device=mask.device)
    padded[:, :, :tq, :tk] = mask
    return padded.view(b * h, padded.size(2) // size, size, padded.size(3) // size, size).any(4).any(2)


def test_one_key_block_rows_finish_in_their_first_sweep(blocks):
    """All keys in one block: the root over the per-column top scores is the exact τ, so the kernel
    computes the scores twice (maxima, then the sweep that forms the output) and p v once."""
    blocks(16)
    q, k, v = _inputs(1, 2, 40, 16, 32, seed=7)
    alpha = torch.tensor([1.3, 1.9], device=DEVICE)
    out, rows, _, _, _ = fa.launch_forward(q.detach(), k.detach(), v.detach(), alpha, None,
                                           False, 32 ** -0.5, 0, resident=False)
    assert rows["tiles"].tolist() == [[2, 1]] * rows["tiles"].size(0)
    torch.testing.assert_close(out, fa.materialised_attention(q, k, v, alpha).detach(),
                               atol=1e-5, rtol=1e-5)


def test_start_and_output_in_the_last_sweep_cut_the_work(blocks):
    """Against Newton from τ = 0 with an output sweep of its own (start_iter=0, predict_tol=0):
    the same outputs, at least a fifth fewer score tiles, still one p v per visited block."""
    blocks(16)
    q, k, v = _inputs(1, 2, 64, 96, 32, seed=9, spread=1.4)
    alpha = torch.tensor([1.5, 2.0], device=DEVICE)
    args = (q.detach(), k.detach(), v.detach(), alpha, None, False, 32 ** -0.5, 0)
    base_out, base, _, _, _ = fa.launch_forward(*args, start_iter=0, predict_tol=0.0,
                                                resident=False)
    out, ours, _, _, _ = fa.launch_forward(*args, resident=False)
    torch.testing.assert_close(out, base_out, atol=1e-5, rtol=1e-5)
    base_qk, ours_qk = (int(r["tiles"][:, 0].sum()) for r in (base, ours))
    assert ours_qk <= 0.8 * base_qk, (ours_qk, base_qk)
    assert int(ours["tiles"][:, 1].sum()) <= int(base["tiles"][:, 1].sum()) * 1.5


@pytest.mark.parametrize("resident", [False, None])
@pytest.mark.parametrize("causal", [False, True])
def test_backward_blocks_cover_the_support_and_little_else(blocks, causal, resident):
    """The blocks the backward visits hold every nonzero p (else a gradient would be lost) and,
    for peaked scores, are a strict subset of all blocks."""
    blocks(16)
    q, k, v = _inputs(1, 2, 32, 160, 32, seed=12, spread=2.5)
    alpha = torch.tensor([1.5, 2.0], device=DEVICE)
    kpm = _padding(1, 160, seed=3)
    _, _, kept, _, cfg = fa.launch_forward(q.detach(), k.detach(), v.detach(), alpha,
                                           kpm, causal, 32 ** -0.5, 0, resident=resident)
    assert (cfg["resident"] is None) == (resident is False)
    probs = fa.entmax_bisect(fa.masked_scores(q.detach(), k.detach(), kpm, causal, 32 ** -0.5),
                             alpha.view(1, 2, 1, 1), dim=-1)
    support = _block_any(probs > 0, 16)
    assert bool((kept.bool() | ~support).all()), "a block with support is not visited"
    assert kept.bool().sum() < kept.numel()


def test_resident_rows_compute_each_product_once(blocks):
    """A row that fits on chip is scored once: one q kᵀ and one p v per (query, key) pair
    (keys padded to a power of two), against the streamed kernel's several score sweeps,
    with the same outputs, τ and support blocks."""
    blocks(16)
    q, k, v = _inputs(1, 2, 64, 40, 32, seed=9, spread=1.4)
    alpha = torch.tensor([1.5, 1.2], device=DEVICE)
    args = (q.detach(), k.detach(), v.detach(), alpha, None, False, 32 ** -0.5, 0)
    out, rows, blocks_held, _, cfg = fa.launch_forward(*args)
    streamed_out, streamed, streamed_blocks, _, _ = fa.launch_forward(*args, resident=False)
    res = cfg["resident"]
    assert res is not None and res["TKP"] == 64
    pairs = streamed_blocks.numel()
    padded = res["TKP"] / (streamed_blocks.size(-1) * cfg["BN"])  # 64 of 48 keys under the interpreter
    assert rows["tiles"].sum(0).tolist() == [pairs * padded] * 2
    assert float(streamed["tiles"][:, 0].sum()) >= 2 * pairs
    torch.testing.assert_close(out, streamed_out, atol=1e-5, rtol=1e-5)
    torch.testing.assert_close(rows["thresh"], streamed["thresh"], atol=1e-5, rtol=1e-5)
    assert torch.equal(blocks_held, streamed_blocks)


def test_resident_config_by_length_device_and_dtype():
    """Rows up to RESIDENT_MAX_KEYS keys are resident (TKP the power of two, at least BN);
    longer rows stream. On a GPU the limit and tiles come from the spill-free table."""
    cfg = {"BM": 32, "BN": 32}
    config = lambda tk, device="cpu", dtype=torch.float32, dim=64, streamed=cfg: (
        launch.resident_config(device, dtype, dim, tk, streamed))
    assert config(1)["TKP"] == 32
    assert config(33)["TKP"] == 64
    assert config(launch.RESIDENT_MAX_KEYS)["TKP"] == launch.RESIDENT_MAX_KEYS
    assert config(launch.RESIDENT_MAX_KEYS + 1) is None
    assert config(200, streamed={"BM": 16, "BN": 16})["RBM"] == 16
    assert config(20)["RBM"] == 32  # a 32-key tile: BM rows under the interpreter
    gpu = launch.streamed_config("cuda", torch.float16, 128, 500)
    assert gpu == dict(BM=32, BN=32, num_warps=8)
    assert launch.streamed_config("cuda", torch.float16, 128, 9)["BM"] == 16
    assert config(256, "cuda", torch.bfloat16, 128, gpu) == dict(RBM=16, TKP=256, num_warps=8)
    assert config(257, "cuda", torch.bfloat16, 128, gpu) is None
    assert config(512, "cuda", torch.float16, 64, gpu)["TKP"] == 512
    assert config(65, "cuda", torch.float32, 64, gpu) is None
    assert config(1, "cuda", torch.float32, 128, gpu) is None
    # the dq kernel holds more tiles: its limit is lower for wide heads
    with_dq = lambda tk, device, dtype, dim: launch.resident_dq(device, dtype, dim, tk, gpu)
    assert with_dq(128, "cuda", torch.float16, 128) and not with_dq(129, "cuda", torch.float16, 128)
    assert with_dq(256, "cuda", torch.float16, 64) and not with_dq(300, "cuda", torch.float16, 64)
    assert with_dq(256, "cuda", torch.float16, 32) and not with_dq(257, "cuda", torch.float16, 32)
    assert with_dq(launch.RESIDENT_DQ_MAX_KEYS, "cpu", torch.float32, 64)
    assert not with_dq(launch.RESIDENT_DQ_MAX_KEYS + 1, "cpu", torch.float32, 64)


def _dropout_reference(q, k, v, alpha, kpm, causal, rate, seed):
    """p ⊙ M/(1 − r) v in float64, from the materialised probabilities and the kernels' own
    mask."""
    q, k, v, alpha = (t.double() for t in (q, k, v, alpha))
    scores = fa.masked_scores(q, k, kpm, causal, q.size(-1) ** -0.5).double()
    probs = fa.entmax_bisect(scores, alpha.view(1, -1, 1, 1), dim=-1)
    mask = fa.dropout_mask(tuple(scores.shape), rate, seed, q.device).double()
    return torch.matmul(probs * mask, v)


@pytest.mark.parametrize("tq,tk,causal", [(33, 100, False), (40, 40, True), (7, 300, False)])
def test_attention_dropout_matches_the_masked_reference(blocks, path, tq, tk, causal):
    """Dropout inside the kernels: outputs and gradients in q, k, v, α equal p ⊙ M/(1 − r) v
    (float64) with the mask the kernels draw (regenerated, never stored), on every path."""
    blocks(16)
    q, k, v = _inputs(2, 2, tq, tk, 32, seed=tq + tk)
    alpha = _heads_alpha([1.3, 1.8])
    kpm = _padding(2, tk, seed=1)
    out = fa.fused_attention(q, k, v, alpha, kpm, causal, dropout=0.25, seed=77)
    ref = _dropout_reference(q, k, v, alpha, kpm, causal, 0.25, 77)
    torch.testing.assert_close(out.double(), ref, atol=1e-5, rtol=1e-5)
    grad = torch.randn(out.shape, generator=torch.Generator().manual_seed(tq)).to(DEVICE)
    for name, g, w in zip("qkva", torch.autograd.grad(out, [q, k, v, alpha], grad),
                          torch.autograd.grad(ref, [q, k, v, alpha], grad.double())):
        torch.testing.assert_close(g.double(), w.double(), atol=1e-4, rtol=1e-4,
                                   msg=lambda m: f"d{name}: {m}")


def test_dropout_mask_is_fair_seeded_and_checked():
    mask = fa.dropout_mask((2, 3, 64, 64), 0.3, 5, torch.device(DEVICE))
    kept = mask > 0
    assert mask.unique().tolist() == [0.0, pytest.approx(1 / 0.7)]
    assert abs(kept.float().mean().item() - 0.7) < 0.02
    assert not torch.equal(kept[0, 0], kept[0, 1])  # heads draw apart
    assert torch.equal(mask, fa.dropout_mask((2, 3, 64, 64), 0.3, 5, torch.device(DEVICE)))
    assert not torch.equal(mask, fa.dropout_mask((2, 3, 64, 64), 0.3, 6, torch.device(DEVICE)))
    q, k, v = _inputs(1, 2, 5, 6, 32, seed=1)
    with pytest.raises(ValueError, match=r"dropout must lie in \[0, 1\)"):
        sparse_attention(q, k, v, 1.5, dropout=1.0)
    torch.manual_seed(3)
    first = fa.fused_attention(q, k, v, 1.5, dropout=0.5)
    torch.manual_seed(3)
    assert torch.equal(first, fa.fused_attention(q, k, v, 1.5, dropout=0.5))
