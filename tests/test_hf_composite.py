"""Sparse attention in composite transformers models: an ``EncoderDecoderModel`` of two BERTs
(BERT2BERT, as for automatic post-editing) and T5 (two stacks, relative position bias):
every attention sparse and exact, α in every attention of both halves, configs that round-trip
through save_pretrained / from_pretrained, gradients of α, cached generation, softmax as the
identity, refusal of a half that bypasses the attention interface, and head statistics."""
from __future__ import annotations

import json

import pytest
import torch

transformers = pytest.importorskip("transformers")

import sparse_seq2seq.hf as shf  # noqa: E402
from sparse_seq2seq.analysis.stats import support_sizes, valid_pairs  # noqa: E402
from sparse_seq2seq.hf.modules import attention_kind  # noqa: E402
from transformers import (AutoModelForSeq2SeqLM, AutoTokenizer, BertConfig, BertModel,  # noqa: E402
                          BigBirdConfig, EncoderDecoderConfig, EncoderDecoderModel, T5Config,
                          T5ForConditionalGeneration)

from hf_helpers import (CALLS, capturing_bias, central_difference, minilm_path,  # noqa: E402
                        reference_probs)

VOCAB, PAD, START, EOS = 64, 0, 1, 2
KINDS = ["dec_cross"] * 2 + ["dec_self"] * 2 + ["enc"] * 2


def _bert_config(**kw) -> BertConfig:
    sizes = dict(vocab_size=VOCAB, hidden_size=32, num_hidden_layers=2, num_attention_heads=4,
                 intermediate_size=48, max_position_embeddings=32, pad_token_id=PAD)
    return BertConfig(**{**sizes, **kw})


def _bert2bert(vocab: int = VOCAB, pad: int = PAD, start: int = START) -> EncoderDecoderModel:
    torch.manual_seed(0)
    config = EncoderDecoderConfig.from_encoder_decoder_configs(
        _bert_config(vocab_size=vocab, pad_token_id=pad),
        _bert_config(vocab_size=vocab, pad_token_id=pad, is_decoder=True, add_cross_attention=True))
    config.decoder_start_token_id, config.pad_token_id, config.eos_token_id = start, pad, EOS
    return EncoderDecoderModel(config=config).eval()


def _t5() -> T5ForConditionalGeneration:
    torch.manual_seed(0)
    return T5ForConditionalGeneration(T5Config(
        vocab_size=VOCAB, d_model=32, d_kv=8, d_ff=48, num_layers=2, num_decoder_layers=2, num_heads=4,
        relative_attention_num_buckets=8, relative_attention_max_distance=16, dropout_rate=0.0,
        pad_token_id=PAD, eos_token_id=EOS, decoder_start_token_id=PAD)).eval()


BUILDS = pytest.mark.parametrize("build", [_bert2bert, _t5], ids=["bert2bert", "t5"])


def _inputs(seed: int = 0) -> dict:
    """A right-padded source and decoder input: every query keeps a key, also under the causal mask."""
    g = torch.Generator().manual_seed(seed)
    src, dec = torch.randint(3, VOCAB, (2, 7), generator=g), torch.randint(3, VOCAB, (2, 5), generator=g)
    src_mask, dec_mask = torch.ones_like(src), torch.ones_like(dec)
    src_mask[0, 5:] = 0
    dec_mask[1, 3:] = 0
    return dict(input_ids=src.masked_fill(src_mask == 0, PAD), attention_mask=src_mask,
                decoder_input_ids=dec, decoder_attention_mask=dec_mask)


def _alpha_logits(model) -> dict:
    return {n: p.detach().clone() for n, p in model.named_parameters() if n.endswith("entmax_alpha.alpha_logit")}


def _sharpen(model, factor: float = 20.0) -> None:
    """Peaked scores (at a random init every head is dense): scale each attention's query map."""
    with torch.no_grad():
        for _, module in shf.attention_modules(model):
            query = getattr(module, "query", None) or getattr(module, "q")
            query.weight.mul_(factor)


# -- every attention is sparse and exact --------------------------------------------------------
@BUILDS
def test_every_attention_of_both_halves_is_sparse_and_exact(build):
    model = shf.sparsify(build(), "alpha_entmax", alpha_init="random")
    _sharpen(model)
    kinds = {id(m): attention_kind(n, m) for n, m in shf.attention_modules(model)}
    assert sorted(kinds.values()) == KINDS
    logits = _alpha_logits(model)
    assert len(logits) == 6 and all(v.shape == (4,) for v in logits.values())
    assert sum(n.startswith("encoder.") for n in logits) == 2 and sum(n.startswith("decoder.") for n in logits) == 4
    for config in shf.model_configs(model):
        assert config._attn_implementation == "alpha_entmax" and config.entmax_alpha_init == "random"

    inputs = _inputs()
    src, dec = inputs["attention_mask"].bool(), inputs["decoder_attention_mask"].bool()
    causal = dec[:, None, None, :] & torch.ones(5, 5, dtype=torch.bool).tril()
    allowed = {"enc": src[:, None, None, :], "dec_self": causal, "dec_cross": src[:, None, None, :]}
    model.set_attn_implementation(capturing_bias("alpha_entmax"))
    CALLS.clear()
    with torch.no_grad():
        model(**inputs)
    assert sorted(kinds[id(call["module"])] for call in CALLS) == KINDS
    zeros = dict.fromkeys(allowed, 0)
    for call in CALLS:
        kind, weights = kinds[id(call["module"])], call["weights"]
        scores = call["q"] @ call["k"].transpose(-1, -2) * call["scaling"]
        if call["bias"] is not None:  # T5's relative position bias
            scores = scores + call["bias"]
        ref = reference_probs(scores, allowed[kind], "alpha_entmax", call["module"].entmax_alpha.alpha.detach())
        torch.testing.assert_close(weights.double(), ref, atol=1e-5, rtol=1e-4)
        mask = allowed[kind].expand_as(weights)
        torch.testing.assert_close(weights.sum(-1), torch.ones_like(weights.sum(-1)))
        assert bool((weights[~mask] == 0).all())
        zeros[kind] += int((weights[mask] == 0).sum())  # exact zeros among the keys it may attend
    assert min(zeros.values()) > 0, zeros
    assert any(call["bias"] is not None for call in CALLS) == (build is _t5)


# -- configs and the round trip ---------------------------------------------------------------
@BUILDS
def test_save_pretrained_and_from_pretrained_keep_alpha_in_both_halves(build, tmp_path):
    model = shf.sparsify(build(), "alpha_entmax", alpha_init="random")
    with torch.no_grad():
        for i, (_, module) in enumerate(shf.attention_modules(model)):
            module.entmax_alpha.alpha_logit.copy_(torch.tensor([-2.0, -0.5, 0.5, 3.0]) + i)
    model.save_pretrained(tmp_path)
    saved = json.loads((tmp_path / "config.json").read_text())
    halves = [saved, saved["encoder"], saved["decoder"]] if build is _bert2bert else [saved]
    for config in halves:
        assert config["attn_implementation"] == "alpha_entmax" and config["entmax_alpha_init"] == "random"
    inputs, logits = _inputs(), _alpha_logits(model)
    with torch.no_grad():
        expected = model(**inputs).logits
    loaders = [lambda: type(model).from_pretrained(tmp_path),  # the post_init hook restores α
               lambda: type(model).from_pretrained(tmp_path, attn_implementation="alpha_entmax"),
               lambda: AutoModelForSeq2SeqLM.from_pretrained(tmp_path)]
    for load in loaders:
        loaded = load().eval()
        assert type(loaded) is type(model)
        assert all(c._attn_implementation == "alpha_entmax" for c in shf.model_configs(loaded))
        assert _alpha_logits(loaded).keys() == logits.keys()
        for name, value in _alpha_logits(loaded).items():
            assert torch.equal(value, logits[name]), name
        with torch.no_grad():
            torch.testing.assert_close(loaded(**inputs).logits, expected, atol=1e-6, rtol=0)
    eager = type(model).from_pretrained(tmp_path, attn_implementation="eager")
    assert not _alpha_logits(eager) and all(c._attn_implementation == "eager" for c in shf.model_configs(eager))


def test_a_bert2bert_half_saved_alone_stays_sparse(tmp_path):
    model = shf.sparsify(_bert2bert(), "alpha_entmax", alpha_init=1.3)
    model.encoder.save_pretrained(tmp_path)
    encoder = BertModel.from_pretrained(tmp_path).eval()
    assert encoder.config._attn_implementation == "alpha_entmax"
    halves = {n[len("encoder."):] for n in _alpha_logits(model) if n.startswith("encoder.")}
    assert len(halves) == 2 and _alpha_logits(encoder).keys() == halves
    ids = _inputs()["input_ids"]
    with torch.no_grad():
        torch.testing.assert_close(encoder(input_ids=ids).last_hidden_state,
                                   model.encoder(input_ids=ids).last_hidden_state, atol=1e-6, rtol=0)


@BUILDS
def test_a_plain_checkpoint_loads_with_alpha_at_the_composite_init(build, tmp_path):
    """The halves' configs lack entmax_alpha_init: they take the composite's (1.2, not 1.5)."""
    plain = build()
    plain.save_pretrained(tmp_path)
    config = type(plain.config).from_pretrained(tmp_path)
    config.entmax_alpha_init = 1.2
    model = type(plain).from_pretrained(tmp_path, config=config, attn_implementation="alpha_entmax")
    alphas = [module.entmax_alpha.alpha for _, module in shf.attention_modules(model)]
    assert len(alphas) == 6
    for alpha in alphas:
        torch.testing.assert_close(alpha, torch.full((4,), 1.2))


# -- gradients, generation, softmax -----------------------------------------------------------
@BUILDS
def test_alpha_gradients_in_encoder_and_decoder_match_finite_differences(build):
    model = shf.sparsify(build(), "alpha_entmax", alpha_init=1.4).double()
    _sharpen(model, 5.0)
    inputs = _inputs(seed=1)
    weight = torch.randn(2, 5, VOCAB, dtype=torch.float64, generator=torch.Generator().manual_seed(2))

    def loss():
        return (model(**inputs).logits * weight).sum()

    loss().backward()
    modules = dict(shf.attention_modules(model))
    chosen = [m for n, m in modules.items() if n.startswith("encoder.")][1:2] + \
             [m for n, m in modules.items() if attention_kind(n, m) == "dec_cross"][:1] + \
             [m for n, m in modules.items() if attention_kind(n, m) == "dec_self"][1:2]
    # T5's layer norm takes its variance in float32 even in a float64 model: a wider step there
    eps, tol = (1e-6, dict(rel=1e-4, abs=1e-8)) if build is _bert2bert else (1e-3, dict(rel=1e-2, abs=2e-3))
    for module in chosen:
        logit = module.entmax_alpha.alpha_logit
        assert bool((logit.grad != 0).any())
        for head in (0, 3):
            assert float(logit.grad[head]) == pytest.approx(
                central_difference(logit, head, loss, eps), **tol)


@BUILDS
def test_generation_with_the_cache_equals_generation_without_it(build):
    model = shf.sparsify(build(), "alpha_entmax", alpha_init="random")
    inputs = _inputs(seed=3)
    runs = []
    with torch.no_grad():
        for cache in (True, False):
            runs.append(model.generate(input_ids=inputs["input_ids"], attention_mask=inputs["attention_mask"],
                                       max_new_tokens=5, min_new_tokens=5, do_sample=False, num_beams=1,
                                       use_cache=cache, output_scores=True, return_dict_in_generate=True))
    assert torch.equal(runs[0].sequences, runs[1].sequences) and runs[0].sequences.size(1) == 6
    for with_cache, without in zip(runs[0].scores, runs[1].scores):
        torch.testing.assert_close(with_cache, without, atol=1e-5, rtol=1e-4)


@BUILDS
def test_softmax_is_the_unsparsified_model_and_sparsify_softmax_undoes_it(build):
    model, inputs = build(), _inputs()
    _sharpen(model, 5.0)
    model.set_attn_implementation("eager")
    with torch.no_grad():
        expected = model(**inputs).logits
        model.set_attn_implementation(shf.SOFTMAX)
        torch.testing.assert_close(model(**inputs).logits, expected, atol=1e-6, rtol=1e-5)
        shf.sparsify(model, "entmax15")
        assert not torch.allclose(model(**inputs).logits, expected, atol=1e-4)
        shf.sparsify(model, "alpha_entmax")
        shf.sparsify(model, "softmax")
        torch.testing.assert_close(model(**inputs).logits, expected, atol=0, rtol=0)
    assert not _alpha_logits(model)
    for config in shf.model_configs(model):
        assert config._attn_implementation == "eager"
        assert "attn_implementation" not in vars(config) and "entmax_alpha_init" not in vars(config)


# -- refusal ------------------------------------------------------------------------------------
def test_a_half_that_bypasses_the_attention_interface_is_refused():
    torch.manual_seed(0)
    decoder = BigBirdConfig(vocab_size=VOCAB, hidden_size=32, num_hidden_layers=1, num_attention_heads=4,
                            intermediate_size=48, max_position_embeddings=64, attention_type="original_full",
                            is_decoder=True, add_cross_attention=True, pad_token_id=PAD, sep_token_id=3)
    model = EncoderDecoderModel(config=EncoderDecoderConfig.from_encoder_decoder_configs(_bert_config(), decoder))
    before = model.config.encoder._attn_implementation
    with pytest.raises(ValueError, match=r"EncoderDecoderModel \(its 'decoder'\): BigBirdForCausalLM .*"
                                         r"attention interface"):
        shf.sparsify(model, "entmax15")
    assert not _alpha_logits(model) and model.config.encoder._attn_implementation == before  # nothing half-done


# -- head statistics ----------------------------------------------------------------------------
SENTENCES = ["the cat sat on the mat .", "a man reads ."]
TARGETS = ["die katze sass auf der matte .", "ein mann liest eine zeitung ."]


def test_head_statistics_and_figures_of_a_bert2bert(tmp_path):
    tokenizer = AutoTokenizer.from_pretrained(str(minilm_path()))
    model = shf.sparsify(_bert2bert(tokenizer.vocab_size, tokenizer.pad_token_id, tokenizer.cls_token_id),
                         "alpha_entmax", alpha_init="random")
    _sharpen(model)
    report = shf.head_statistics(model, tokenizer, SENTENCES, TARGETS)
    assert report["sentences"] == 2 and set(report["summary"]) == {"enc", "dec_self", "dec_cross"}
    assert sorted((m["type"], m["layer"]) for m in report["attention"]) == \
        [(k, layer) for k in ("dec_cross", "dec_self", "enc") for layer in (0, 1)]
    by_key = {(attention_kind(n, m), int(n.split(".layer.")[1].split(".")[0])): m.entmax_alpha.alpha
              for n, m in shf.attention_modules(model)}
    for module in report["attention"]:
        alphas = [h["alpha"] for h in module["heads"]]
        assert alphas == pytest.approx(by_key[(module["type"], module["layer"])].tolist(), abs=1e-6)

    # the support counts, by hand, from one teacher-forced pass with output_attentions
    src = tokenizer(SENTENCES, padding=True, return_tensors="pt")
    tgt = tokenizer(text_target=TARGETS, padding=True, return_tensors="pt")
    tgt_real, src_real = tgt["attention_mask"].bool(), src["attention_mask"].bool()
    dec = torch.cat([torch.full((2, 1), tokenizer.cls_token_id), tgt["input_ids"][:, :-1]], 1)
    with torch.no_grad():
        out = model(input_ids=src["input_ids"], attention_mask=src["attention_mask"], output_attentions=True,
                    decoder_input_ids=dec.masked_fill(~tgt_real, tokenizer.pad_token_id),
                    decoder_attention_mask=tgt_real.long())
    by_kind = {"enc": (out.encoder_attentions, valid_pairs(src_real, src_real)),
               "dec_self": (out.decoder_attentions, valid_pairs(tgt_real, tgt_real, causal=True)),
               "dec_cross": (out.cross_attentions, valid_pairs(tgt_real, src_real))}
    sparse = 0
    for module in report["attention"]:
        probs, valid = by_kind[module["type"]][0][module["layer"]], by_kind[module["type"]][1]
        support, queries = support_sizes(probs, valid).double(), valid.any(-1)  # (B, H, T), (B, T)
        for head in module["heads"]:
            mean = float(support[:, head["head"]][queries].mean())
            assert head["mean_support"] == pytest.approx(mean, abs=1e-4)
        available = float(valid.sum(-1)[queries].double().mean())
        sparse += min(h["mean_support"] for h in module["heads"]) < available - 0.5
    assert sparse > 0
    figures = shf.plot_heads(model, tokenizer, SENTENCES, tmp_path, targets=TARGETS, sentence=1)
    assert sorted(f.name for f in figures) == ["alpha_per_head.png", "attention_dec_cross_sentence1.png",
                                               "attention_dec_self_sentence1.png", "attention_enc_sentence1.png"]
