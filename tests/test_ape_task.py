"""fairseq task ``ape`` and model ``bert_ape`` in-process: the encoder input is
``[CLS] src [SEP] mt [SEP]``, the dictionary is BERT's vocabulary 1:1, the ablation flags of
Correia & Martins (ACL 2019) build the named sharing, every attention takes the project's
normalisers, and a saved model is rebuilt without the BERT folder."""
from __future__ import annotations

import os
from pathlib import Path

import pytest
import torch

os.environ.setdefault("HF_HUB_OFFLINE", "1")
pytest.importorskip("fairseq")

from fairseq import options, tasks  # noqa: E402
from fairseq.dataclass.utils import convert_namespace_to_omegaconf  # noqa: E402

import sparse_seq2seq.fairseq_plugin  # noqa: E402,F401  (registration)
from data_prep.ape.binarize import binarize  # noqa: E402
from sparse_seq2seq.attention import SparseMultiheadAttention  # noqa: E402
from sparse_seq2seq.fairseq_plugin.ape_task import WordPieceDictionary, WordPieceJoiner  # noqa: E402
from ape_helpers import ROWS, tiny_bert, tiny_vocabulary, triplets  # noqa: E402


@pytest.fixture(scope="module")
def data(tmp_path_factory) -> tuple[Path, Path]:
    root = tmp_path_factory.mktemp("ape_task")
    bert = tiny_bert(root / "bert")
    prefix = triplets(root / "text", ROWS)
    binarize(str(bert), [("train", str(prefix)), ("test", str(prefix))], root / "bin",
             log=lambda _: None)
    return bert, root / "bin"


def setup(data_dir: Path, *flags: str):
    parser = options.get_training_parser()
    args = options.parse_args_and_arch(parser, [str(data_dir), "--task", "ape", "--cpu",
                                                "--arch", "bert_ape", *flags])
    cfg = convert_namespace_to_omegaconf(args)
    task = tasks.setup_task(cfg.task)
    return task, cfg


def test_dictionary_is_bert_vocabulary(data):
    bert, bin_dir = data
    d = WordPieceDictionary.load_vocab(str(bin_dir / "vocab.txt"))
    assert d.symbols == tiny_vocabulary()
    assert (d.bos(), d.pad(), d.eos(), d.unk()) == (2, 0, 3, 1)  # [CLS] [PAD] [SEP] [UNK]
    assert d.string(torch.tensor([2, 5, 1, 3])) == "der [UNK]"
    with pytest.raises(ValueError, match="appears twice"):
        WordPieceDictionary(["[PAD]", "[UNK]", "[CLS]", "[SEP]", "a", "a"])


def test_source_is_cls_src_sep_mt_sep_and_target_pe_sep(data):
    _, bin_dir = data
    task, _ = setup(bin_dir)
    task.load_dataset("train")
    d = task.source_dictionary
    item = task.dataset("train")[0]
    words = lambda t: [d[i] for i in t.tolist()]  # noqa: E731
    source = words(item["source"])
    assert source[0] == "[CLS]" and source[-1] == "[SEP]" and source.count("[SEP]") == 2
    first = source.index("[SEP]")
    assert source[1:first] == ["the", "cat", "sat"]
    assert source[first + 1:-1] == ["die", "katze", "sitzt"]
    assert words(item["target"]) == ["die", "katze", "sitzt", ".", "[SEP]"]
    batch = task.dataset("train").collater([task.dataset("train")[i] for i in range(3)])
    prev = batch["net_input"]["prev_output_tokens"]
    assert (prev[:, 0] == d.eos()).all()
    assert WordPieceJoiner.decode("ge ##wa ##hren .") == "gewahren ."


def test_missing_split_names_the_available_ones(data):
    _, bin_dir = data
    task, _ = setup(bin_dir)
    with pytest.raises(FileNotFoundError, match="has test, train"):
        task.load_dataset("valid")


@pytest.mark.parametrize("flags,shared,separate", [
    ([], [("encoder.bert.layers.0.self_attn.q_proj", "decoder.bert.layers.0.self_attn.q_proj")],
     [("decoder.bert.layers.0.self_attn.q_proj", "decoder.bert.layers.0.encoder_attn.q_proj")]),
    (["--bert-share-self-attn", "false", "--bert-tie-ctx-attn", "true", "--bert-share-ffn", "true"],
     [("decoder.bert.layers.1.self_attn.v_proj", "decoder.bert.layers.1.encoder_attn.v_proj"),
      ("encoder.bert.layers.1.fc1", "decoder.bert.layers.1.fc1")],
     [("encoder.bert.layers.1.self_attn.v_proj", "decoder.bert.layers.1.self_attn.v_proj")]),
])
def test_ablation_flags_share_the_named_parameters(data, flags, shared, separate):
    bert, bin_dir = data
    task, cfg = setup(bin_dir, "--bert-path", str(bert), *flags)
    model = task.build_model(cfg.model)
    params = dict(model.named_parameters(remove_duplicate=False))
    for a, b in shared:
        assert params[a + ".weight"] is params[b + ".weight"], (a, b)
    for a, b in separate:
        assert params[a + ".weight"] is not params[b + ".weight"], (a, b)
    assert model.decoder.bert.embeddings is model.encoder.bert.embeddings


def test_pretrained_weights_and_context_from_self(data):
    bert, bin_dir = data
    from sparse_seq2seq.bert.checkpoint import load_state
    state = load_state(str(bert))
    task, cfg = setup(bin_dir, "--bert-path", str(bert))
    model = task.build_model(cfg.model)
    layer = model.decoder.bert.layers[1]
    torch.testing.assert_close(layer.encoder_attn.k_proj.weight,
                               state["encoder.layer.1.attention.self.key.weight"])
    torch.testing.assert_close(model.encoder.bert.embeddings.word_embeddings.weight,
                               state["embeddings.word_embeddings.weight"])
    task, cfg = setup(bin_dir, "--bert-path", str(bert), "--bert-weights", "random")
    random_model = task.build_model(cfg.model)
    assert not torch.allclose(random_model.encoder.bert.embeddings.word_embeddings.weight,
                              state["embeddings.word_embeddings.weight"])


def test_normalisers_and_entmax_output(data):
    bert, bin_dir = data
    task, cfg = setup(bin_dir, "--bert-path", str(bert), "--encoder-attn-normalizer", "sparsemax",
                      "--decoder-self-attn-normalizer", "entmax15",
                      "--decoder-cross-attn-normalizer", "alpha_entmax", "--output-alpha", "1.5")
    model = task.build_model(cfg.model).eval()
    from sparse_seq2seq.fairseq_plugin.entmax_transformer import attention_modules
    kinds = {(kind, m.normalizer.name) for kind, _, m in attention_modules(model)}
    assert kinds == {("enc", "sparsemax"), ("dec_self", "entmax15"), ("dec_cross", "alpha_entmax")}
    assert all(isinstance(m, SparseMultiheadAttention) for _, _, m in attention_modules(model))
    task.load_dataset("train")
    batch = task.dataset("train").collater([task.dataset("train")[i] for i in range(3)])
    with torch.no_grad():
        out = model(**batch["net_input"])
        probs = model.get_normalized_probs(out, log_probs=False)
    torch.testing.assert_close(probs.sum(-1), torch.ones(probs.shape[:-1]))
    assert (probs == 0).any()  # 1.5-entmax output is sparse


def test_rebuilt_from_checkpoint_without_the_bert_folder(data, tmp_path):
    bert, bin_dir = data
    task, cfg = setup(bin_dir, "--bert-path", str(bert))
    model = task.build_model(cfg.model)
    assert cfg.model.bert_sizes_json  # the sizes travel with the saved arguments
    moved = tmp_path / "gone"
    cfg.model.bert_path = str(moved)  # the folder is not there any more
    rebuilt = task.build_model(cfg.model, from_checkpoint=True)
    rebuilt.load_state_dict(model.state_dict())
    with pytest.raises(Exception, match="cannot load BERT"):
        cfg.model.bert_sizes_json = None
        task.build_model(cfg.model)


def test_data_from_another_vocabulary_is_refused(data, tmp_path):
    bert, bin_dir = data
    other = tmp_path / "bin"
    other.mkdir()
    for f in bin_dir.iterdir():
        if f.is_file():
            (other / f.name).write_bytes(f.read_bytes())
    vocab = tiny_vocabulary()
    vocab[10], vocab[11] = vocab[11], vocab[10]
    (other / "vocab.txt").write_text("".join(t + "\n" for t in vocab), encoding="utf-8")
    task, cfg = setup(other, "--bert-path", str(bert))
    with pytest.raises(ValueError, match=r"another vocabulary .*\(first difference at id 10\)"):
        task.build_model(cfg.model)
