"""The BERT decoder of Correia & Martins (ACL 2019): causal, tied to the encoder's embeddings,
and incremental decoding (cached keys and values, as in beam search) equals a full forward
pass, with every attention normaliser of the project."""
from __future__ import annotations

import pytest
import torch

from sparse_seq2seq.bert import BertDecoder, BertEncoder, BertSizes, causal_mask

SIZES = BertSizes(vocab_size=40, hidden_size=16, num_layers=2, num_heads=4, intermediate_size=24,
                  max_positions=20, hidden_dropout=0.0, attention_dropout=0.0)
NORMALIZERS = ["softmax", "sparsemax", "entmax15", "alpha_entmax"]


def build(normalizer: str, seed: int = 0):
    torch.manual_seed(seed)
    encoder = BertEncoder(SIZES, normalizer, alpha_init="random")
    decoder = BertDecoder(SIZES, encoder.embeddings, normalizer, normalizer, alpha_init="random")
    return encoder.eval(), decoder.eval()


def encode(encoder: BertEncoder, seed: int = 1):
    gen = torch.Generator().manual_seed(seed)
    tokens = torch.randint(5, SIZES.vocab_size, (3, 9), generator=gen)
    tokens[1, 6:] = SIZES.pad_token_id  # a shorter source: padding must be masked
    segments = torch.zeros_like(tokens)
    positions = torch.arange(9).expand_as(tokens)
    out, padding, _ = encoder(tokens, segments, positions)
    return out, padding


@pytest.mark.parametrize("normalizer", NORMALIZERS)
def test_incremental_decoding_equals_full_forward(normalizer):
    encoder, decoder = build(normalizer)
    with torch.no_grad():
        enc_out, padding = encode(encoder)
        prefix = torch.randint(5, SIZES.vocab_size, (3, 7), generator=torch.Generator().manual_seed(2))
        full, full_attn, _ = decoder(prefix, enc_out, padding, need_attn=True)
        state: dict = {}
        steps, attns = [], []
        for t in range(1, prefix.size(1) + 1):
            x, attn, _ = decoder(prefix[:, :t], enc_out, padding, incremental_state=state,
                                 need_attn=True)
            assert x.shape == (3, 1, SIZES.hidden_size)
            steps.append(x)
            attns.append(attn)
    torch.testing.assert_close(torch.cat(steps, dim=1), full, atol=1e-5, rtol=1e-5)
    torch.testing.assert_close(torch.cat(attns, dim=1), full_attn, atol=1e-5, rtol=1e-5)
    assert full_attn[1, :, 6:].abs().max() == 0  # padded source positions get no attention


@pytest.mark.parametrize("normalizer", ["softmax", "alpha_entmax"])
def test_decoder_is_causal(normalizer):
    encoder, decoder = build(normalizer)
    with torch.no_grad():
        enc_out, padding = encode(encoder)
        prefix = torch.randint(5, SIZES.vocab_size, (3, 6), generator=torch.Generator().manual_seed(3))
        changed = prefix.clone()
        changed[:, 4:] = (changed[:, 4:] + 1) % SIZES.vocab_size
        a, _, _ = decoder(prefix, enc_out, padding)
        b, _, _ = decoder(changed, enc_out, padding)
    torch.testing.assert_close(a[:, :4], b[:, :4])
    assert not torch.allclose(a[:, 4:], b[:, 4:])


def test_embeddings_and_output_projection_are_the_encoders():
    encoder, decoder = build("softmax")
    assert decoder.embeddings is encoder.embeddings
    features = torch.randn(2, 3, SIZES.hidden_size)
    logits = decoder.output_projection(features)
    torch.testing.assert_close(logits, features @ encoder.embeddings.word_embeddings.weight.t())


def test_decoder_reads_segment_b():
    """Changing segment B's embedding changes the decoder; segment A's does not."""
    encoder, decoder = build("softmax")
    with torch.no_grad():
        enc_out, padding = encode(encoder)
        prefix = torch.randint(5, SIZES.vocab_size, (3, 4), generator=torch.Generator().manual_seed(4))
        before, _, _ = decoder(prefix, enc_out, padding)
        encoder.embeddings.segment_embeddings.weight[0] += 1.0
        same, _, _ = decoder(prefix, enc_out, padding)
        encoder.embeddings.segment_embeddings.weight[1] += 1.0
        after, _, _ = decoder(prefix, enc_out, padding)
    torch.testing.assert_close(before, same)
    assert not torch.allclose(before, after)


def test_causal_mask():
    mask = causal_mask(3, torch.zeros(1))
    assert torch.equal(torch.isinf(mask), torch.tensor([[False, True, True], [False, False, True],
                                                        [False, False, False]]))


def test_position_beyond_the_checkpoint_is_an_error():
    encoder, decoder = build("softmax")
    enc_out, padding = encode(encoder)
    too_long = torch.full((1, SIZES.max_positions + 1), 7)
    with pytest.raises(ValueError, match="beyond the 20 positions"):
        decoder(too_long, enc_out[:, :1], padding[:1])
