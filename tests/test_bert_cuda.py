"""The BERT post-editing networks on a GPU (skipped without CUDA): the encoder equals
``transformers.BertModel`` there too, incremental decoding equals a full pass under fp16
autocast with every normaliser (computed in float32), and an fp16 training step of the
shared encoder-decoder (Correia & Martins, ACL 2019) gives finite gradients."""
from __future__ import annotations

import pytest
import torch

from sparse_seq2seq.bert import BertDecoder, BertEncoder, BertSizes, pair_segments_and_positions
from sparse_seq2seq.bert import checkpoint as ck
from sparse_seq2seq.bert import sharing

pytestmark = pytest.mark.cuda  # skipped without a GPU (conftest.py)
SIZES = BertSizes(vocab_size=50, hidden_size=64, num_layers=2, num_heads=4, intermediate_size=128,
                  max_positions=32, hidden_dropout=0.0, attention_dropout=0.0)


def test_encoder_equals_transformers_on_gpu(tmp_path):
    transformers = pytest.importorskip("transformers")
    from ape_helpers import tiny_bert
    path = tiny_bert(tmp_path / "bert", hidden=64)
    reference = transformers.BertModel.from_pretrained(str(path)).cuda().eval()
    encoder = BertEncoder(ck.load_sizes(str(path))).cuda().eval()
    ck.load_encoder(encoder, ck.load_state(str(path)))
    ids = torch.tensor([[2, 10, 11, 3, 12, 13, 14, 3], [2, 10, 3, 12, 3, 0, 0, 0]], device="cuda")
    segments, positions = pair_segments_and_positions(ids, sep_id=3, pad_id=0)
    with torch.no_grad():
        ours, _, _ = encoder(ids, segments, positions)
        theirs = reference(input_ids=ids, attention_mask=ids.ne(0).long(), token_type_ids=segments,
                           position_ids=positions).last_hidden_state
    real = ids.ne(0)
    assert (ours.transpose(0, 1) - theirs)[real].abs().max().item() < 1e-4


@pytest.mark.parametrize("normalizer", ["softmax", "sparsemax", "entmax15", "alpha_entmax"])
def test_incremental_equals_full_under_fp16_autocast(normalizer):
    torch.manual_seed(0)
    encoder = BertEncoder(SIZES, normalizer).cuda().eval()
    decoder = BertDecoder(SIZES, encoder.embeddings, normalizer, normalizer).cuda().eval()
    src = torch.randint(5, SIZES.vocab_size, (4, 10), device="cuda")
    src[2, 7:] = 0
    prefix = torch.randint(5, SIZES.vocab_size, (4, 6), device="cuda")
    with torch.no_grad(), torch.autocast("cuda", dtype=torch.float16):
        segments, positions = pair_segments_and_positions(src, 3, 0)
        out, padding, _ = encoder(src, segments, positions)
        full, _, _ = decoder(prefix, out, padding)
        state: dict = {}
        steps = [decoder(prefix[:, :t], out, padding, incremental_state=state)[0]
                 for t in range(1, 7)]
    assert torch.isfinite(full).all()
    torch.testing.assert_close(torch.cat(steps, 1).float(), full.float(), atol=2e-2, rtol=2e-2)


def test_fp16_training_step_of_the_shared_model():
    torch.manual_seed(0)
    encoder = BertEncoder(SIZES, "alpha_entmax").cuda()
    decoder = BertDecoder(SIZES, encoder.embeddings, "alpha_entmax", "alpha_entmax").cuda()
    sharing.share_self_attention(decoder, encoder)
    sharing.init_context_from_self(decoder)
    params = list(torch.nn.ModuleList([encoder, decoder]).parameters())
    optimizer = torch.optim.AdamW(params, lr=1e-3)
    scaler = torch.amp.GradScaler("cuda")
    src = torch.randint(5, SIZES.vocab_size, (8, 12), device="cuda")
    tgt = torch.randint(5, SIZES.vocab_size, (8, 7), device="cuda")
    with torch.autocast("cuda", dtype=torch.float16):
        segments, positions = pair_segments_and_positions(src, 3, 0)
        out, padding, _ = encoder(src, segments, positions)
        feats, _, _ = decoder(tgt[:, :-1], out, padding)
        logits = decoder.output_projection(feats)
        loss = torch.nn.functional.cross_entropy(logits.float().flatten(0, 1), tgt[:, 1:].flatten())
    scaler.scale(loss).backward()
    scaler.unscale_(optimizer)
    grads = [p.grad for p in params if p.grad is not None]
    assert grads and all(torch.isfinite(g).all() for g in grads)
    shared = encoder.layers[0].self_attn.q_proj.weight
    assert shared.grad is not None and decoder.layers[0].self_attn.q_proj.weight is shared
    scaler.step(optimizer)
    scaler.update()
    assert torch.isfinite(loss)
