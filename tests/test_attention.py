"""The shared attention module: masks give exactly zero weight, half precision works,
incremental (cached) decoding equals a full pass, and softmax equals fairseq's attention."""
import pytest
import torch

from sparse_seq2seq.attention import SparseMultiheadAttention
from sparse_seq2seq.normalizers import NORMALIZERS


def _attention(normalizer, **kwargs):
    torch.manual_seed(0)
    module = SparseMultiheadAttention(16, 4, normalizer=normalizer, alpha_init="random", **kwargs)
    return module.eval()


@pytest.mark.parametrize("normalizer", NORMALIZERS)
def test_masked_keys_and_future_get_exactly_zero_weight(normalizer):
    attn = _attention(normalizer, self_attention=True)
    attn.keep_attention = True
    x = torch.randn(5, 3, 16) * 3
    pad = torch.zeros(3, 5, dtype=torch.bool)
    pad[1, 3:] = True
    pad[2, 1:] = True
    causal = torch.triu(torch.full((5, 5), float("-inf")), 1)
    out, _ = attn(x, x, x, key_padding_mask=pad, attn_mask=causal)
    p = attn.last_attention  # (bsz, heads, tgt, src)
    assert torch.isfinite(out).all()
    assert (p[1, :, :, 3:] == 0).all() and (p[2, :, :, 1:] == 0).all()
    future = torch.triu(torch.ones(5, 5, dtype=torch.bool), 1)
    assert (p[:, :, future] == 0).all()
    torch.testing.assert_close(p.sum(-1), torch.ones_like(p.sum(-1)))


@pytest.mark.parametrize("normalizer", ("sparsemax", "entmax15", "alpha_entmax"))
def test_fully_masked_query_gives_zero_weights_not_nan(normalizer):
    attn = _attention(normalizer, self_attention=True)
    x = torch.randn(3, 1, 16)
    mask = torch.full((3, 3), float("-inf"))
    out, w = attn(x, x, x, attn_mask=mask)
    assert torch.isfinite(out).all() and (w == 0).all()


@pytest.mark.parametrize("dtype", (torch.bfloat16, torch.float16))
@pytest.mark.parametrize("normalizer", NORMALIZERS)
def test_half_precision_matches_float32(normalizer, dtype):
    attn = _attention(normalizer, self_attention=True)
    x = torch.randn(6, 2, 16)
    pad = torch.zeros(2, 6, dtype=torch.bool)
    pad[0, 4:] = True
    ref, ref_w = attn(x, x, x, key_padding_mask=pad)
    out, w = attn.to(dtype)(x.to(dtype), x.to(dtype), x.to(dtype), key_padding_mask=pad)
    assert out.dtype == dtype and w.dtype == torch.float32
    torch.testing.assert_close(out.float(), ref, atol=5e-2, rtol=5e-2)
    torch.testing.assert_close(w.sum(-1), torch.ones_like(w.sum(-1)), atol=1e-5, rtol=0)


@pytest.mark.parametrize("normalizer", NORMALIZERS)
def test_incremental_self_attention_equals_full_pass(normalizer):
    attn = _attention(normalizer, self_attention=True)
    x = torch.randn(6, 2, 16)
    causal = torch.triu(torch.full((6, 6), float("-inf")), 1)
    full, _ = attn(x, x, x, attn_mask=causal)
    state = {}
    steps = [attn(x[t:t + 1], x[t:t + 1], x[t:t + 1], incremental_state=state)[0] for t in range(6)]
    torch.testing.assert_close(torch.cat(steps), full, atol=1e-5, rtol=1e-5)


def test_alpha_entmax_heads_each_get_a_gradient():
    attn = _attention("alpha_entmax", self_attention=True).train()
    x = torch.randn(7, 3, 16)
    out, _ = attn(x, x, x)
    out.square().sum().backward()
    grad = attn.normalizer.alpha_logit.grad
    assert grad.shape == (4,) and torch.isfinite(grad).all() and (grad != 0).all()
    assert ((attn.alpha > 1) & (attn.alpha <= 2)).all()


def test_softmax_equals_fairseq_multihead_attention():
    from fairseq.modules import MultiheadAttention

    ours = _attention("softmax", self_attention=True)
    theirs = MultiheadAttention(16, 4, self_attention=True).eval()
    theirs.load_state_dict(ours.state_dict(), strict=False)
    x = torch.randn(5, 3, 16)
    pad = torch.zeros(3, 5, dtype=torch.bool)
    pad[2, 3:] = True
    a, wa = ours(x, x, x, key_padding_mask=pad)
    b, wb = theirs(x, x, x, key_padding_mask=pad)
    torch.testing.assert_close(a, b, atol=1e-5, rtol=1e-5)
    torch.testing.assert_close(wa, wb, atol=1e-6, rtol=1e-5)


def test_bad_normalizer_name_is_refused():
    with pytest.raises(ValueError, match="normalizer"):
        SparseMultiheadAttention(16, 4, normalizer="softermax")


def test_causal_mask_answer_is_kept_per_live_owner(monkeypatch):
    """fairseq's ``_future_mask[:T, :T]`` is a new view each call: its owner's answer is
    compared once; a tensor that is not that owner (here, new masks of the same shape) is
    compared for itself and its own answer given."""
    from sparse_seq2seq import attention as attention_module
    from sparse_seq2seq.tensor_memo import TensorMemo
    calls = []
    real = torch.isneginf
    monkeypatch.setattr(torch, "isneginf", lambda t: calls.append(1) or real(t))
    monkeypatch.setattr(attention_module, "_FUTURE_MASKS", TensorMemo())
    base = torch.triu(torch.full((20, 20), float("-inf")), 1)
    assert all(attention_module._is_future_mask(base[:9, :9], 9, 9) for _ in range(5))
    assert len(calls) == 1
    for _ in range(5):
        other = torch.zeros(9, 9)
        assert not attention_module._is_future_mask(other, 9, 9)
    assert len(calls) == 6
    base[:9, :9].fill_(0.0)  # changed in place: a new version, compared again
    assert not attention_module._is_future_mask(base[:9, :9], 9, 9)
    with torch.inference_mode():  # no version counter: compared every time, not refused
        causal = torch.triu(torch.full((9, 9), float("-inf")), 1)
        assert attention_module._is_future_mask(causal, 9, 9)
        assert attention_module._is_future_mask(causal, 9, 9)
    assert len(calls) == 9
