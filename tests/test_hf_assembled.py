"""An ``EncoderDecoderModel`` assembled from two halves that were sparsified on their own
(``from_encoder_decoder_pretrained`` of two saved folders, or ``EncoderDecoderModel(encoder=…,
decoder=…)``): the composite's config records the halves' sparse attention and α init, so
save_pretrained / from_pretrained gives the same outputs and the same α; halves with different
attention are refused, naming both settings."""
from __future__ import annotations

import json

import pytest
import torch

transformers = pytest.importorskip("transformers")

import sparse_seq2seq.hf as shf  # noqa: E402
from transformers import (AutoModelForSeq2SeqLM, BertConfig, BertLMHeadModel, BertModel,  # noqa: E402
                          EncoderDecoderModel)

VOCAB, PAD, START = 64, 0, 1
PATHS = pytest.mark.parametrize("path", ["from_encoder_decoder_pretrained", "constructor"])


def _config(**kw) -> BertConfig:
    return BertConfig(vocab_size=VOCAB, hidden_size=32, num_hidden_layers=2, num_attention_heads=4,
                      intermediate_size=48, max_position_embeddings=32, pad_token_id=PAD, **kw)


def _halves(encoder: str, decoder: str, encoder_init=1.3, decoder_init=1.3):
    """A BERT encoder and a BERT decoder with cross-attention, each sparsified alone (``"sdpa"``:
    left plain), α logits distinct per module and head, query maps sharpened so heads are sparse."""
    torch.manual_seed(0)
    halves = [BertModel(_config()), BertLMHeadModel(_config(is_decoder=True, add_cross_attention=True))]
    for half, name, init in zip(halves, (encoder, decoder), (encoder_init, decoder_init)):
        if name != "sdpa":
            shf.sparsify(half, name, alpha_init=init)
    with torch.no_grad():
        for i, (_, module) in enumerate(m for half in halves for m in shf.attention_modules(half)):
            module.query.weight.mul_(10.0)
            if hasattr(module, "entmax_alpha"):
                module.entmax_alpha.alpha_logit.copy_(torch.tensor([-2.0, -0.5, 0.5, 3.0]) + i)
    return [half.eval() for half in halves]


def _assemble(path: str, encoder, decoder, tmp_path) -> EncoderDecoderModel:
    if path == "constructor":
        model = EncoderDecoderModel(encoder=encoder, decoder=decoder)
    else:
        encoder.save_pretrained(tmp_path / "encoder")
        decoder.save_pretrained(tmp_path / "decoder")
        model = EncoderDecoderModel.from_encoder_decoder_pretrained(str(tmp_path / "encoder"),
                                                                    str(tmp_path / "decoder"))
    model.config.decoder_start_token_id, model.config.pad_token_id = START, PAD
    return model.eval()


def _inputs() -> dict:
    g = torch.Generator().manual_seed(0)
    src, dec = torch.randint(3, VOCAB, (2, 7), generator=g), torch.randint(3, VOCAB, (2, 5), generator=g)
    src_mask = torch.ones_like(src)
    src_mask[0, 5:] = 0
    return dict(input_ids=src.masked_fill(src_mask == 0, PAD), attention_mask=src_mask, decoder_input_ids=dec)


def _alpha_logits(model) -> dict:
    return {n: p.detach().clone() for n, p in model.named_parameters() if n.endswith("entmax_alpha.alpha_logit")}


def _by_halves(encoder, decoder, inputs) -> torch.Tensor:
    """The logits the two halves compute, run one after the other (the reference)."""
    with torch.no_grad():
        states = encoder(input_ids=inputs["input_ids"], attention_mask=inputs["attention_mask"]).last_hidden_state
        return decoder(input_ids=inputs["decoder_input_ids"], encoder_hidden_states=states,
                       encoder_attention_mask=inputs["attention_mask"]).logits


@PATHS
@pytest.mark.parametrize("normalizer", ["alpha_entmax", "entmax15"])
def test_a_composite_of_sparse_halves_round_trips_with_its_alpha(path, normalizer, tmp_path):
    encoder, decoder = _halves(normalizer, normalizer)
    inputs = _inputs()
    expected = _by_halves(encoder, decoder, inputs)
    halves_alpha = {**{"encoder." + n: v for n, v in _alpha_logits(encoder).items()},
                    **{"decoder." + n: v for n, v in _alpha_logits(decoder).items()}}
    assert len(halves_alpha) == (6 if normalizer == "alpha_entmax" else 0)
    model = _assemble(path, encoder, decoder, tmp_path)
    for config in shf.model_configs(model):
        assert config._attn_implementation == normalizer
    with torch.no_grad():
        torch.testing.assert_close(model(**inputs).logits, expected, atol=1e-6, rtol=0)
        model.set_attn_implementation("eager")
        # softmax is 100x further off than the 1e-6 below, so a softmax reload could not pass it
        assert float((model(**inputs).logits - expected).abs().max()) > 1e-4
        model.set_attn_implementation(normalizer)

    model.save_pretrained(tmp_path / "composite")
    saved = json.loads((tmp_path / "composite" / "config.json").read_text())
    for config in (saved, saved["encoder"], saved["decoder"]):
        assert config["attn_implementation"] == normalizer
        assert config.get("entmax_alpha_init") == (1.3 if normalizer == "alpha_entmax" else None)
    for load in (EncoderDecoderModel.from_pretrained, AutoModelForSeq2SeqLM.from_pretrained):
        loaded = load(tmp_path / "composite").eval()
        assert all(c._attn_implementation == normalizer for c in shf.model_configs(loaded))
        logits = _alpha_logits(loaded)
        assert logits.keys() == halves_alpha.keys()
        for name, value in logits.items():
            assert torch.equal(value, halves_alpha[name]), name
        with torch.no_grad():
            torch.testing.assert_close(loaded(**inputs).logits, expected, atol=1e-6, rtol=0)


@PATHS
def test_halves_with_different_alpha_inits_keep_their_own(path, tmp_path):
    encoder, decoder = _halves("alpha_entmax", "alpha_entmax", encoder_init=1.3, decoder_init="random")
    model = _assemble(path, encoder, decoder, tmp_path)
    assert model.config._attn_implementation == "alpha_entmax"
    assert getattr(model.config, "entmax_alpha_init", None) is None  # no single init to record
    model.save_pretrained(tmp_path / "composite")
    loaded = EncoderDecoderModel.from_pretrained(tmp_path / "composite")
    assert loaded.config.encoder.entmax_alpha_init == 1.3 and loaded.config.decoder.entmax_alpha_init == "random"
    expected = {**{"encoder." + n: v for n, v in _alpha_logits(encoder).items()},
                **{"decoder." + n: v for n, v in _alpha_logits(decoder).items()}}
    assert _alpha_logits(loaded).keys() == expected.keys()
    for name, value in _alpha_logits(loaded).items():
        assert torch.equal(value, expected[name]), name


@PATHS
@pytest.mark.parametrize("encoder_name, decoder_name", [("alpha_entmax", "entmax15"), ("entmax15", "sdpa"),
                                                        ("sdpa", "alpha_entmax")])
def test_halves_with_different_attention_are_refused(path, encoder_name, decoder_name, tmp_path):
    encoder, decoder = _halves(encoder_name, decoder_name)
    message = rf"its encoder '{encoder_name}', its decoder '{decoder_name}'"
    with pytest.raises(ValueError, match=message):
        _assemble(path, encoder, decoder, tmp_path)


def test_plain_halves_assemble_as_before_and_can_be_sparsified_whole(tmp_path):
    encoder, decoder = _halves("sdpa", "sdpa")
    model = _assemble("constructor", encoder, decoder, tmp_path)
    assert model.config._attn_implementation == "sdpa" and not _alpha_logits(model)
    shf.sparsify(model, "alpha_entmax", alpha_init=1.4)
    assert len(_alpha_logits(model)) == 6
    assert all(c._attn_implementation == "alpha_entmax" for c in shf.model_configs(model))
