"""Every sentence is batched and translated whatever the batching flags: fairseq's batcher
leaves out the sentences after the last batch whose size is a multiple of
``--required-batch-size-multiple`` (default 8), and the plugin batches them again."""
from __future__ import annotations

import re

import numpy as np
import pytest

pytest.importorskip("fairseq")

import sparse_seq2seq.fairseq_plugin  # noqa: E402,F401  (registration and fixes)
from fairseq_helpers import BIN, USER_DIR, make_corpus, run, train  # noqa: E402
from sparse_seq2seq.fairseq_plugin.batching import _fairseq_batch_by_size, batch_every_sentence  # noqa: E402

SENTENCES = 101  # 12 batches of 8 and 5 left over


@pytest.mark.parametrize("max_tokens, max_sentences, multiple", [
    (None, 8, 8), (1000, None, 8), (300, 16, 8), (200, 8, 3), (None, 8, 1)])
def test_batches_hold_every_index_once_within_the_limits(max_tokens, max_sentences, multiple):
    sizes = np.random.RandomState(0).randint(3, 30, size=SENTENCES)
    indices = np.argsort(sizes, kind="mergesort").astype(np.int64)
    kwargs = dict(max_tokens=max_tokens, max_sentences=max_sentences,
                  required_batch_size_multiple=multiple)
    ours = batch_every_sentence(indices, lambda i: sizes[i], **kwargs)
    fairseqs = _fairseq_batch_by_size(indices, lambda i: sizes[i], **kwargs)
    assert sorted(np.concatenate(ours).tolist()) == list(range(SENTENCES))
    for batch in ours:
        assert max_sentences is None or len(batch) <= max_sentences
        assert max_tokens is None or len(batch) * sizes[batch].max() <= max_tokens
    # fairseq's own batches are kept as they are; only what it left out is added
    assert [b.tolist() for b in ours[:len(fairseqs)]] == [b.tolist() for b in fairseqs]


def test_ape_task_batches_every_triplet(tmp_path):
    from fairseq import options, tasks
    from fairseq.dataclass.utils import convert_namespace_to_omegaconf

    from data_prep.ape.binarize import binarize
    from ape_helpers import ROWS, triplets
    from ape_helpers import tiny_bert

    bert = tiny_bert(tmp_path / "bert")
    rows = [ROWS[i % len(ROWS)] for i in range(SENTENCES)]
    binarize(str(bert), [("test", str(triplets(tmp_path / "text", rows)))], tmp_path / "bin",
             log=lambda _: None)
    args = options.parse_args_and_arch(options.get_generation_parser(),
                                       [str(tmp_path / "bin"), "--task", "ape", "--cpu"])
    task = tasks.setup_task(convert_namespace_to_omegaconf(args).task)
    task.load_dataset("test")
    itr = task.get_batch_iterator(task.dataset("test"), max_sentences=8,
                                  required_batch_size_multiple=8).next_epoch_itr(shuffle=False)
    ids = [i for batch in itr for i in batch["id"].tolist()]
    assert sorted(ids) == list(range(SENTENCES))


@pytest.mark.slow
def test_generate_translates_all_101_sentences_without_batch_size_flags(tmp_path):
    data_bin = make_corpus(tmp_path, train=100, valid=8, test=SENTENCES)
    train(data_bin, tmp_path / "ckpt", ["--task", "translation_sparse"], updates=1)
    out = run([str(BIN / "fairseq-generate"), str(data_bin), "--user-dir", USER_DIR,
               "--path", str(tmp_path / "ckpt" / "checkpoint_last.pt"), "--gen-subset", "test",
               "--task", "translation_sparse", "--beam", "1", "--max-len-b", "5",
               "--batch-size", "8", "--cpu"]).stdout
    hyps = sorted(int(i) for i in re.findall(r"^H-(\d+)\t", out, flags=re.M))
    assert hyps == list(range(SENTENCES))
