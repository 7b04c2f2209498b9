"""``fairseq-train --log-file`` over several epochs: each line is written once (fairseq adds
a file handler every time it builds a progress bar, so epoch N's lines would appear N times)."""
from __future__ import annotations

import re

import pytest

pytest.importorskip("fairseq")

from fairseq_helpers import make_corpus, train  # noqa: E402

EPOCHS = 3


@pytest.mark.slow
def test_every_line_of_a_multi_epoch_run_is_logged_once(tmp_path):
    data_bin = make_corpus(tmp_path, train=80, valid=8, test=8)
    log_file = tmp_path / "train.log"
    train(data_bin, tmp_path / "ckpt", ["--task", "translation_sparse", "--max-epoch", str(EPOCHS),
                                        "--log-file", str(log_file)], updates=1000)
    lines = log_file.read_text(encoding="utf-8").splitlines()
    records = [line for line in lines if line.startswith("epoch ")]  # progress and epoch summaries
    repeated = sorted({line for line in records if records.count(line) > 1})
    assert not repeated, f"{len(repeated)} lines repeated, e.g. {repeated[:2]}"
    for epoch in range(1, EPOCHS + 1):  # every epoch's progress and summary reached the file
        assert any(re.match(rf"epoch {epoch:03d}: +\d+ / \d+ .*loss=", line) for line in records), epoch
        assert sum(bool(re.match(rf"epoch {epoch:03d} \| .*\| loss ", line)) for line in records) == 1, epoch
