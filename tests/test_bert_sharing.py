"""Parameter sharing of the BERT post-editing model (Correia & Martins, ACL 2019, §3.1):
each sharing flag makes the named parameters one tensor, before and after training steps;
"initialised from" copies values into separate tensors."""
from __future__ import annotations

import pytest
import torch

from sparse_seq2seq.bert import BertDecoder, BertEncoder, BertSizes
from sparse_seq2seq.bert import sharing

SIZES = BertSizes(vocab_size=30, hidden_size=16, num_layers=2, num_heads=2, intermediate_size=20,
                  max_positions=16)
PROJ = ("q_proj", "k_proj", "v_proj", "out_proj")


def build(decoder_normalizer: str = "softmax"):
    torch.manual_seed(0)
    encoder = BertEncoder(SIZES, "softmax")
    decoder = BertDecoder(SIZES, encoder.embeddings, decoder_normalizer, decoder_normalizer,
                          alpha_init="random")
    return encoder, decoder


def groups(encoder, decoder):
    model = torch.nn.ModuleDict({"encoder": encoder, "decoder": decoder})
    return {frozenset(g) for g in sharing.shared_parameters(model)}


def baseline_groups(encoder, decoder):
    """Only the embeddings are shared before any flag (decoder uses the encoder's)."""
    return groups(encoder, decoder)


def test_share_self_attention_makes_one_tensor():
    encoder, decoder = build()
    before = baseline_groups(encoder, decoder)
    sharing.share_self_attention(decoder, encoder)
    new = groups(encoder, decoder) - before
    for i in range(SIZES.num_layers):
        for proj in PROJ:
            for leaf in ("weight", "bias"):
                assert frozenset({f"encoder.layers.{i}.self_attn.{proj}.{leaf}",
                                  f"decoder.layers.{i}.self_attn.{proj}.{leaf}"}) in new
        assert decoder.layers[i].self_attn_layer_norm is encoder.layers[i].self_attn_layer_norm
        assert decoder.layers[i].encoder_attn.q_proj is not encoder.layers[i].self_attn.q_proj
    assert len(new) == SIZES.num_layers * (8 + 2)


def test_tie_context_attention_and_share_feed_forward():
    encoder, decoder = build()
    sharing.tie_context_attention(decoder)
    sharing.share_feed_forward(decoder, encoder)
    found = groups(encoder, decoder)
    assert frozenset({"decoder.layers.1.self_attn.v_proj.weight",
                      "decoder.layers.1.encoder_attn.v_proj.weight"}) in found
    assert frozenset({"decoder.layers.0.self_attn_layer_norm.bias",
                      "decoder.layers.0.encoder_attn_layer_norm.bias"}) in found
    assert frozenset({"encoder.layers.0.fc1.weight", "decoder.layers.0.fc1.weight"}) in found
    assert frozenset({"encoder.layers.1.final_layer_norm.weight",
                      "decoder.layers.1.final_layer_norm.weight"}) in found


def test_all_three_attentions_can_be_one_tensor():
    encoder, decoder = build()
    sharing.share_self_attention(decoder, encoder)
    sharing.tie_context_attention(decoder)
    assert frozenset({"encoder.layers.0.self_attn.k_proj.weight",
                      "decoder.layers.0.self_attn.k_proj.weight",
                      "decoder.layers.0.encoder_attn.k_proj.weight"}) in groups(encoder, decoder)


def test_context_initialised_from_self_is_a_copy():
    encoder, decoder = build()
    sharing.init_context_from_self(decoder)
    layer = decoder.layers[0]
    torch.testing.assert_close(layer.encoder_attn.q_proj.weight, layer.self_attn.q_proj.weight)
    torch.testing.assert_close(layer.encoder_attn_layer_norm.bias, layer.self_attn_layer_norm.bias)
    assert layer.encoder_attn.q_proj.weight.data_ptr() != layer.self_attn.q_proj.weight.data_ptr()
    with torch.no_grad():
        layer.self_attn.q_proj.weight.add_(1.0)
    assert not torch.allclose(layer.encoder_attn.q_proj.weight, layer.self_attn.q_proj.weight)


def test_shared_tensors_stay_one_through_training():
    encoder, decoder = build()
    sharing.share_self_attention(decoder, encoder)
    sharing.share_feed_forward(decoder, encoder)
    model = torch.nn.ModuleDict({"encoder": encoder, "decoder": decoder})
    optimizer = torch.optim.Adam(model.parameters(), lr=1e-2)
    unique = len(list(model.parameters()))
    assert unique < len(list(model.named_parameters(remove_duplicate=False)))
    tokens = torch.randint(5, SIZES.vocab_size, (2, 6))
    for _ in range(2):
        out, padding, _ = encoder(tokens, torch.zeros_like(tokens), torch.arange(6).expand_as(tokens))
        feats, _, _ = decoder(tokens, out, padding)
        loss = decoder.output_projection(feats).logsumexp(-1).mean()
        optimizer.zero_grad()
        loss.backward()
        optimizer.step()
    assert decoder.layers[1].fc2.weight is encoder.layers[1].fc2.weight
    assert decoder.layers[1].self_attn.out_proj.bias is encoder.layers[1].self_attn.out_proj.bias


def test_shared_attention_keeps_its_own_normaliser_and_alpha():
    encoder, decoder = build("alpha_entmax")
    sharing.share_self_attention(decoder, encoder)
    assert encoder.layers[0].self_attn.normalizer.name == "softmax"
    assert decoder.layers[0].self_attn.normalizer.name == "alpha_entmax"
    assert decoder.layers[0].self_attn.alpha is not None


def test_sharing_needs_equal_depth():
    encoder, _ = build()
    shallow = BertDecoder(SIZES.replace(num_layers=1), encoder.embeddings)
    with pytest.raises(ValueError, match="2-layer encoder"):
        sharing.share_self_attention(shallow, encoder)
