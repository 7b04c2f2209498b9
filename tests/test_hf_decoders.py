"""Sparse attention in decoder-only (GPT-2, Llama with grouped keys) and encoder-decoder
(BART) transformers models: causal and padding masks, cross-attention, generation with and
without the key/value cache, and the head statistics and figures."""
from __future__ import annotations

import pytest
import torch

transformers = pytest.importorskip("transformers")

import sparse_seq2seq.hf as shf  # noqa: E402
from sparse_seq2seq.analysis.stats import support_sizes, valid_pairs  # noqa: E402
from transformers import (AutoTokenizer, BartConfig, BartForConditionalGeneration, GPT2Config,  # noqa: E402
                          GPT2LMHeadModel, LlamaConfig, LlamaForCausalLM)

from hf_helpers import CALLS, capturing, minilm_path, reference_probs  # noqa: E402

VOCAB = 64
PAD, BOS, EOS = 0, 1, 2


def _gpt2() -> GPT2LMHeadModel:
    torch.manual_seed(0)
    return GPT2LMHeadModel(GPT2Config(vocab_size=VOCAB, n_positions=64, n_embd=32, n_layer=2, n_head=4,
                                      pad_token_id=PAD, bos_token_id=BOS, eos_token_id=EOS)).eval()


def _llama() -> LlamaForCausalLM:
    torch.manual_seed(0)
    return LlamaForCausalLM(LlamaConfig(vocab_size=VOCAB, hidden_size=32, intermediate_size=64,
                                        num_hidden_layers=2, num_attention_heads=4, num_key_value_heads=2,
                                        max_position_embeddings=64, pad_token_id=PAD, bos_token_id=BOS,
                                        eos_token_id=EOS)).eval()


def _bart(vocab: int = VOCAB, pad: int = PAD) -> BartForConditionalGeneration:
    torch.manual_seed(0)
    return BartForConditionalGeneration(BartConfig(
        vocab_size=vocab, d_model=32, encoder_layers=2, decoder_layers=2, encoder_attention_heads=4,
        decoder_attention_heads=2, encoder_ffn_dim=64, decoder_ffn_dim=64, max_position_embeddings=64,
        pad_token_id=pad, bos_token_id=BOS, eos_token_id=EOS, decoder_start_token_id=EOS)).eval()


def _left_padded(seed: int = 0):
    ids = torch.randint(3, VOCAB, (2, 7), generator=torch.Generator().manual_seed(seed))
    mask = torch.ones_like(ids)
    mask[0, :3] = 0
    return ids.masked_fill(mask == 0, PAD), mask


def _allowed_causal(mask: torch.Tensor) -> torch.Tensor:
    """(B, 1, T, T): key j is real and j ≤ i (built here, not by transformers)."""
    t = mask.size(1)
    return (mask.bool()[:, None, None, :] & torch.ones(t, t, dtype=torch.bool).tril())


@pytest.mark.parametrize("build", [_gpt2, _llama], ids=["gpt2", "llama-gqa"])
def test_decoder_softmax_equals_eager_and_entmax_is_causal_and_exact(build):
    model = build()
    ids, mask = _left_padded()
    real = mask.bool()
    with torch.no_grad():
        model.set_attn_implementation("eager")
        expected = model(input_ids=ids, attention_mask=mask).logits
        model.set_attn_implementation(shf.SOFTMAX)
        ours = model(input_ids=ids, attention_mask=mask).logits
    torch.testing.assert_close(ours[real], expected[real], atol=1e-5, rtol=1e-4)
    assert bool(torch.isfinite(ours).all())  # the query with no key gives zeros, not NaN

    model.set_attn_implementation(capturing("entmax15"))
    CALLS.clear()
    with torch.no_grad():
        model(input_ids=ids, attention_mask=mask)
    allowed = _allowed_causal(mask)
    for call in CALLS:
        k = call["k"].repeat_interleave(call["q"].size(1) // call["k"].size(1), dim=1)
        ref = reference_probs(call["q"] @ k.transpose(-1, -2) * call["scaling"], allowed, "entmax15")
        torch.testing.assert_close(call["weights"].double(), ref, atol=2e-6, rtol=1e-4)
        assert bool((call["weights"].masked_select(~allowed) == 0).all())


@pytest.mark.parametrize("build", [_gpt2, _llama], ids=["gpt2", "llama-gqa"])
def test_decoder_generation_with_the_cache_equals_generation_without_it(build):
    model = shf.sparsify(build(), "alpha_entmax", alpha_init="random")
    ids, mask = _left_padded(seed=1)
    runs = []
    with torch.no_grad():
        for cache in (True, False):
            runs.append(model.generate(input_ids=ids, attention_mask=mask, max_new_tokens=8, do_sample=False,
                                       use_cache=cache, output_scores=True, return_dict_in_generate=True,
                                       pad_token_id=PAD))
    assert torch.equal(runs[0].sequences, runs[1].sequences) and runs[0].sequences.size(1) == 15
    for with_cache, without in zip(runs[0].scores, runs[1].scores):
        torch.testing.assert_close(with_cache, without, atol=1e-5, rtol=1e-4)


def test_bart_cross_attention_padding_and_generation():
    model = _bart()
    src = torch.randint(3, VOCAB, (2, 7), generator=torch.Generator().manual_seed(2))
    src_mask = torch.ones_like(src)
    src_mask[0, 5:] = 0
    src = src.masked_fill(src_mask == 0, PAD)
    dec = torch.randint(3, VOCAB, (2, 5), generator=torch.Generator().manual_seed(3))
    dec_mask = torch.ones_like(dec)
    dec_mask[1, 3:] = 0
    inputs = dict(input_ids=src, attention_mask=src_mask, decoder_input_ids=dec, decoder_attention_mask=dec_mask)
    with torch.no_grad():
        model.set_attn_implementation("eager")
        expected = model(**inputs).logits
        model.set_attn_implementation(shf.SOFTMAX)
        ours = model(**inputs).logits
    torch.testing.assert_close(ours[dec_mask.bool()], expected[dec_mask.bool()], atol=1e-5, rtol=1e-4)

    shf.sparsify(model, "alpha_entmax", alpha_init="random")
    model.set_attn_implementation(capturing("alpha_entmax"))
    CALLS.clear()
    with torch.no_grad():
        model(**inputs)
    allowed = {"enc": src_mask.bool()[:, None, None, :], "dec_self": _allowed_causal(dec_mask),
               "dec_cross": src_mask.bool()[:, None, None, :]}
    kinds = {id(m): shf.modules.attention_kind(n, m) for n, m in shf.attention_modules(model)}
    assert sorted(kinds.values()) == ["dec_cross"] * 2 + ["dec_self"] * 2 + ["enc"] * 2
    for call in CALLS:
        kind = kinds[id(call["module"])]
        alpha = call["module"].entmax_alpha.alpha.detach()
        ref = reference_probs(call["q"] @ call["k"].transpose(-1, -2) * call["scaling"], allowed[kind],
                              "alpha_entmax", alpha)
        torch.testing.assert_close(call["weights"].double(), ref, atol=1e-5, rtol=1e-4)
        assert bool((call["weights"].masked_select(~allowed[kind].expand_as(call["weights"])) == 0).all())

    model.set_attn_implementation("alpha_entmax")
    runs = []
    with torch.no_grad():
        for cache in (True, False):
            runs.append(model.generate(input_ids=src, attention_mask=src_mask, max_new_tokens=6, do_sample=False,
                                       num_beams=1, use_cache=cache, output_scores=True,
                                       return_dict_in_generate=True))
    assert torch.equal(runs[0].sequences, runs[1].sequences)
    for with_cache, without in zip(runs[0].scores, runs[1].scores):
        torch.testing.assert_close(with_cache, without, atol=1e-5, rtol=1e-4)


# -- head statistics and figures -----------------------------------------------------------------
SENTENCES = ["the cat sat on the mat .", "two dogs run across a green field .", "a man reads ."]
TARGETS = ["die katze sass auf der matte .", "zwei hunde rennen .", "ein mann liest eine zeitung ."]


@pytest.fixture(scope="module")
def tokenizer():
    return AutoTokenizer.from_pretrained(str(minilm_path()))


def test_head_statistics_count_the_support_of_every_head(tokenizer):
    model = _bart(vocab=tokenizer.vocab_size, pad=tokenizer.pad_token_id)
    shf.sparsify(model, "entmax15")
    with torch.no_grad():
        for _, module in shf.attention_modules(model):
            module.q_proj.weight.mul_(60.0)  # peaked scores: sparse heads (at init all are dense)
    report = shf.head_statistics(model, tokenizer, SENTENCES, TARGETS, batch_size=2)
    assert report["sentences"] == 3 and set(report["summary"]) == {"enc", "dec_self", "dec_cross"}

    # the same counts, by hand, from one forward pass over all sentences with output_attentions
    src = tokenizer(SENTENCES, padding=True, return_tensors="pt")
    tgt = tokenizer(text_target=TARGETS, padding=True, return_tensors="pt")
    tgt_real = tgt["attention_mask"].bool()  # decoder position t reads target t − 1 and predicts target t
    dec = torch.cat([torch.full((3, 1), EOS), tgt["input_ids"][:, :-1]], 1).masked_fill(~tgt_real, tokenizer.pad_token_id)
    with torch.no_grad():
        out = model(input_ids=src["input_ids"], attention_mask=src["attention_mask"], decoder_input_ids=dec,
                    decoder_attention_mask=tgt_real.long(), output_attentions=True)
    src_real = src["attention_mask"].bool()
    by_kind = {"enc": (out.encoder_attentions, valid_pairs(src_real, src_real)),
               "dec_self": (out.decoder_attentions, valid_pairs(tgt_real, tgt_real, causal=True)),
               "dec_cross": (out.cross_attentions, valid_pairs(tgt_real, src_real))}
    for module in report["attention"]:
        probs, valid = by_kind[module["type"]][0][module["layer"]], by_kind[module["type"]][1]
        queries = valid.any(-1)
        support = support_sizes(probs, valid).double()  # (B, H, T)
        for head in module["heads"]:
            mean = float(support[:, head["head"]][queries].mean())
            assert head["mean_support"] == pytest.approx(mean, abs=1e-4)
            assert head["alpha"] == 1.5
        assert module["queries"] == int(queries.sum())
        available = float(valid.sum(-1)[queries].double().mean())
        assert min(h["mean_support"] for h in module["heads"]) < available - 0.5  # sparse


def test_softmax_heads_are_fully_dense_and_the_model_keeps_its_implementation(tokenizer):
    model = _gpt2()
    model.resize_token_embeddings(tokenizer.vocab_size)
    model.set_attn_implementation("sdpa")
    report = shf.head_statistics(model, tokenizer, SENTENCES)
    assert model.config._attn_implementation == "sdpa" and not model.training
    assert report["summary"]["dec_self"]["fully_dense_heads"] == 1.0
    assert report["summary"]["dec_self"]["normalizers"] == ["softmax"]
    assert all(h["alpha"] == 1.0 for m in report["attention"] for h in m["heads"])


def test_plot_heads_draws_alpha_and_attention_maps(tokenizer, tmp_path):
    model = shf.sparsify(_bart(vocab=tokenizer.vocab_size, pad=tokenizer.pad_token_id), "alpha_entmax",
                         alpha_init="random")
    figures = shf.plot_heads(model, tokenizer, SENTENCES, tmp_path, targets=TARGETS, sentence=1)
    names = sorted(f.name for f in figures)
    assert names == ["alpha_per_head.png", "attention_dec_cross_sentence1.png",
                     "attention_dec_self_sentence1.png", "attention_enc_sentence1.png"]
    for figure in figures:
        assert figure.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
    with pytest.raises(ValueError, match="one target per sentence"):
        shf.head_statistics(model, tokenizer, SENTENCES)
