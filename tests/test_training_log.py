"""α over training read back from fairseq's outputs: one point per update from a text log
that repeats lines or a resumed run, the same trajectory from tensorboard event files, and a
multi-epoch tiny training read both ways."""
from __future__ import annotations

import json
import math
import re
from pathlib import Path

import pytest

from sparse_seq2seq.analysis.training_log import (read_alpha_log, read_alpha_tensorboard,
                                                  read_alpha_trajectory)

import fairseq_helpers as fh

HEADS = (("enc", 0, 0), ("enc", 0, 1), ("dec_cross", 1, 0))


def _alpha(head: tuple, step: int) -> float:
    return round(1.5 + 0.01 * step * (1 + HEADS.index(head)) * (-1) ** HEADS.index(head), 3)


def _interval_line(epoch: int, step: int, shift: float = 0.0) -> str:
    alphas = ", ".join(f"alpha/{k}_l{l}_h{h}={_alpha((k, l, h), step) + shift:.3f}" for k, l, h in HEADS)
    return (f"2026-01-01 00:00:0{epoch} | INFO | train_inner | epoch {epoch:03d}:      {step} / 3 "
            f"{alphas}, density/enc_l0_h0={0.5 + step / 100:.3f}, loss=5.1, num_updates={step}, lr=0.001\n")


def _epoch_line(epoch: int, step: int) -> str:
    alphas = " | ".join(f"alpha/{k}_l{l}_h{h} {_alpha((k, l, h), step):.3f}" for k, l, h in HEADS)
    return f"2026-01-01 00:00:0{epoch} | INFO | train | epoch {epoch:03d} | {alphas} | loss 5 | num_updates {step}\n"


def test_a_log_that_repeats_each_line_of_epoch_n_n_times_gives_one_point_per_update(tmp_path):
    log = tmp_path / "train.log"
    lines = []
    for epoch in (1, 2, 3):  # fairseq 0.12 with --log-file: epoch N's lines N times
        for step in range(3 * epoch - 2, 3 * epoch + 1):
            lines += [_interval_line(epoch, step)] * epoch
        lines += [_epoch_line(epoch, 3 * epoch)] * epoch
    log.write_text("".join(lines))
    assert len(lines) == 1 * 4 + 2 * 4 + 3 * 4
    trajectory = read_alpha_log(log)
    assert trajectory.source == "interval" and trajectory.updates == [float(s) for s in range(1, 10)]
    assert set(trajectory.alphas) == set(HEADS) and len(trajectory) == 9
    for head in HEADS:
        assert trajectory.alphas[head] == [_alpha(head, s) for s in range(1, 10)]
    assert list(trajectory.densities) == [("enc", 0, 0)]
    assert trajectory.densities[("enc", 0, 0)] == pytest.approx([0.5 + s / 100 for s in range(1, 10)])
    only_epochs = tmp_path / "epochs.log"
    only_epochs.write_text("".join(line for line in lines if "| train |" in line))
    epochs = read_alpha_log(only_epochs)
    assert epochs.source == "epoch" and epochs.updates == [3.0, 6.0, 9.0]
    assert epochs.alphas[("enc", 0, 1)] == [_alpha(("enc", 0, 1), s) for s in (3, 6, 9)]


def test_a_resumed_run_keeps_the_updates_it_logged_last_in_order(tmp_path):
    """Killed after update 5, resumed from the checkpoint of update 3: updates 4 and 5 come
    twice, the second time with other values; those are kept."""
    log = tmp_path / "train.log"
    log.write_text("".join([_interval_line(1, s) for s in range(1, 6)]
                           + [_interval_line(2, s, shift=0.1) for s in range(4, 8)]))
    trajectory = read_alpha_log(log)
    assert trajectory.updates == [float(s) for s in range(1, 8)]
    head = ("enc", 0, 0)
    assert trajectory.alphas[head] == pytest.approx(
        [_alpha(head, s) for s in (1, 2, 3)] + [_alpha(head, s) + 0.1 for s in (4, 5, 6, 7)])


def test_lines_without_an_update_number_drop_exact_repeats(tmp_path):
    log = tmp_path / "json.log"
    records = [{"epoch": 1, "update": 0.5, "alpha/enc_l0_h0": "1.6"},
               {"epoch": 1, "update": 0.5, "alpha/enc_l0_h0": "1.6"},
               {"epoch": 1, "update": 1.0, "alpha/enc_l0_h0": "1.7"}]
    log.write_text("".join(json.dumps(r) + "\n" for r in records))
    trajectory = read_alpha_log(log)
    assert trajectory.updates == [1.0, 2.0] and trajectory.alphas == {("enc", 0, 0): [1.6, 1.7]}


# --- tensorboard ----------------------------------------------------------------------------

def _write_events(folder: Path, scalars: dict) -> None:
    """scalars: {step: {tag: value}}, written the way fairseq does (torch's SummaryWriter)."""
    from torch.utils.tensorboard import SummaryWriter

    writer = SummaryWriter(str(folder))
    writer.add_text("sys.argv", "fairseq-train data")
    for step, values in scalars.items():
        for tag, value in values.items():
            writer.add_scalar(tag, value, step)
    writer.close()


def _scalars(steps, shift: float = 0.0) -> dict:
    return {s: {**{f"alpha/{k}_l{l}_h{h}": _alpha((k, l, h), s) + shift for k, l, h in HEADS},
                "density/enc_l0_h0": 0.5, "loss": 5.0} for s in steps}


def test_tensorboard_events_give_the_trajectory_and_a_resumed_run_the_last_values(tmp_path):
    logdir = tmp_path / "tb"
    _write_events(logdir / "train_inner", _scalars(range(1, 6)))
    _write_events(logdir / "train_inner", _scalars(range(4, 8), shift=0.25))  # resumed: a second file
    _write_events(logdir / "train", _scalars((3, 7)))
    assert len(list((logdir / "train_inner").glob("events.out.tfevents.*"))) == 2
    trajectory = read_alpha_tensorboard(logdir)
    assert trajectory.source == "interval" and trajectory.updates == [float(s) for s in range(1, 8)]
    head = ("dec_cross", 1, 0)
    assert trajectory.alphas[head] == pytest.approx(
        [_alpha(head, s) for s in (1, 2, 3)] + [_alpha(head, s) + 0.25 for s in (4, 5, 6, 7)], abs=1e-6)
    assert trajectory.densities[("enc", 0, 0)] == pytest.approx([0.5] * 7)
    assert read_alpha_log(logdir).alphas == trajectory.alphas  # a folder is read as tensorboard


def test_tensorboard_falls_back_to_epoch_events_then_to_the_text_log(tmp_path):
    logdir = tmp_path / "tb"
    _write_events(logdir / "train", _scalars((3, 6)))
    epochs = read_alpha_tensorboard(logdir)
    assert epochs.source == "epoch" and epochs.updates == [3.0, 6.0]
    empty = tmp_path / "softmax_tb"
    _write_events(empty / "train_inner", {1: {"loss": 5.0}})
    with pytest.raises(ValueError, match=rf"^{empty}: no alpha/"):
        read_alpha_tensorboard(empty)
    log = tmp_path / "train.log"
    log.write_text(_interval_line(1, 1) + _interval_line(1, 2))
    assert read_alpha_trajectory(log, empty).updates == [1.0, 2.0]
    assert read_alpha_trajectory(log, logdir).source == "epoch"
    with pytest.raises(ValueError, match="no alpha/"):
        read_alpha_trajectory(None, empty)


def test_a_damaged_event_file_is_named_and_a_cut_off_one_read_up_to_the_cut(tmp_path):
    logdir = tmp_path / "tb"
    scalars = _scalars(range(1, 4))
    for values in scalars.values():
        del values["loss"]  # the file ends with the density of update 3
    _write_events(logdir / "train_inner", scalars)
    events = next((logdir / "train_inner").glob("events.out.tfevents.*"))
    raw = events.read_bytes()
    events.write_bytes(raw[:-30])  # the last record cut short: a run still writing, or killed
    cut = read_alpha_tensorboard(logdir)
    assert cut.updates == [1.0, 2.0, 3.0]
    assert cut.densities[("enc", 0, 0)][:2] == pytest.approx([0.5, 0.5])
    assert math.isnan(cut.densities[("enc", 0, 0)][2])
    for head in HEADS:
        assert cut.alphas[head] == pytest.approx([_alpha(head, s) for s in (1, 2, 3)])
    events.write_bytes(raw[:200] + bytes(b ^ 0xFF for b in raw[200:204]) + raw[204:])
    with pytest.raises(ValueError, match=rf"^{events}: damaged tensorboard event file: record \d+ of \d+"):
        read_alpha_tensorboard(logdir)


# --- a real multi-epoch run -----------------------------------------------------------------

@pytest.fixture(scope="module")
def three_epochs(tmp_path_factory):
    if not (fh.DATA_MIRROR / "multi30k" / "train.de.gz").is_file():
        pytest.skip(f"Multi30k not found under DATA_MIRROR={fh.DATA_MIRROR}")
    root = tmp_path_factory.mktemp("three_epochs")
    data_bin = fh.make_corpus(root, train=60, valid=8, test=4)
    normalizers = [f"--{kind}-attn-normalizer" for kind in ("encoder", "decoder-self", "decoder-cross")]
    fh.run([str(fh.BIN / "fairseq-train"), str(data_bin), *fh.TRAIN_FLAGS, "--save-dir", str(root / "ckpt"),
            "--max-epoch", "3", "--log-interval", "1", "--log-format", "simple",
            "--attn-alpha-init", "random", "--log-file", str(root / "train.log"),
            "--tensorboard-logdir", str(root / "tb"),
            *[arg for flag in normalizers for arg in (flag, "alpha_entmax")]])
    return root


@pytest.mark.slow
def test_a_three_epoch_run_reads_the_same_from_its_log_and_its_events(three_epochs):
    from_log = read_alpha_log(three_epochs / "train.log")
    from_events = read_alpha_tensorboard(three_epochs / "tb")
    updates = from_log.updates
    assert updates == [float(s) for s in range(1, len(updates) + 1)] and len(updates) >= 6
    assert from_events.updates == updates and from_events.source == from_log.source == "interval"
    assert set(from_events.alphas) == set(from_log.alphas) and len(from_log.alphas) == 24
    for head, values in from_log.alphas.items():
        assert from_events.alphas[head] == pytest.approx(values, abs=1e-6), head
        assert all(1.0 < value <= 2.0 for value in values)
    # the log written as fairseq 0.12 wrote it (each line of epoch N N times) reads the same
    lines = (three_epochs / "train.log").read_text().splitlines(keepends=True)
    repeated, epoch = [], 1
    for line in lines:
        repeated += [line] * epoch
        if re.search(r"epoch \d+ \|", line):  # the end-of-epoch summary
            epoch += 1
    assert epoch == 4
    (three_epochs / "repeated.log").write_text("".join(repeated))
    again = read_alpha_log(three_epochs / "repeated.log")
    assert again.updates == updates and again.alphas == from_log.alphas
    assert not any(math.isnan(v) for values in again.alphas.values() for v in values)


@pytest.mark.slow
def test_heads_command_draws_alpha_over_training_from_the_events_with_progress(three_epochs):
    out = three_epochs / "heads"
    proc = fh.run([str(fh.BIN / "sparse-seq2seq-heads"), str(three_epochs / "ckpt" / "checkpoint_last.pt"),
                   "--data", str(three_epochs / "bin"), "--tensorboard-logdir", str(three_epochs / "tb"),
                   "--out", str(out), "--user-dir", fh.USER_DIR, "--batch-size", "2"])
    assert "heads on valid" in proc.stderr and "8/8" in proc.stderr  # the progress bar
    report = json.loads((out / "heads.json").read_text())
    assert str(out / "alpha_over_training.png") in report["figures"] and not report["notes"]
    quiet = fh.run([str(fh.BIN / "sparse-seq2seq-heads"), str(three_epochs / "ckpt" / "checkpoint_last.pt"),
                    "--data", str(three_epochs / "bin"), "--out", str(out), "--user-dir", fh.USER_DIR,
                    "--no-progress"])
    assert "heads on valid" not in quiet.stderr
