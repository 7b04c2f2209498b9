"""All-or-nothing checkpoints: a write that dies half-way leaves the old file whole, a
``fairseq-train`` killed with SIGKILL inside its save window always resumes, and a damaged
``checkpoint_last.pt`` is passed over for the newest intact checkpoint, with a log line."""
from __future__ import annotations

import os
import random
import re
import subprocess
import time

import pytest
import torch

pytest.importorskip("fairseq")

from fairseq_helpers import BIN, TRAIN_FLAGS, command_env, make_corpus  # noqa: E402
from sparse_seq2seq.fairseq_plugin import checkpointing  # noqa: E402
from sparse_seq2seq.fairseq_plugin.checkpointing import (  # noqa: E402
    WRITE_DELAY_ENV, atomic_copy, newest_intact_checkpoint)
from sparse_seq2seq.fairseq_plugin.safe_loading import checkpoint_damage  # noqa: E402


def _checkpoint(path, value: float) -> None:
    torch.save({"model": {"w": torch.full((1000,), value)}}, path)


class Killed(BaseException):
    pass


def test_copy_dying_half_way_leaves_the_old_file_whole(tmp_path, monkeypatch):
    src, dst = tmp_path / "checkpoint_3_30.pt", tmp_path / "checkpoint_last.pt"
    _checkpoint(src, 2.0)
    _checkpoint(dst, 1.0)
    before = dst.read_bytes()

    def die():
        raise Killed()

    monkeypatch.setattr(checkpointing, "_pause_for_tests", die)
    with pytest.raises(Killed):
        atomic_copy(str(src), str(dst))
    assert dst.read_bytes() == before
    assert sorted(p.name for p in tmp_path.iterdir()) == sorted([dst.name, src.name])  # nothing partial left
    monkeypatch.undo()
    atomic_copy(str(src), str(dst))
    assert dst.read_bytes() == src.read_bytes()


def test_damage_is_found_and_the_newest_intact_checkpoint_chosen(tmp_path):
    old, new, last = (tmp_path / n for n in ("checkpoint_1_2.pt", "checkpoint_1_4.pt", "checkpoint_last.pt"))
    for i, path in enumerate((old, new, last)):
        _checkpoint(path, float(i))
        os.utime(path, (1000 + i, 1000 + i))
    assert checkpoint_damage(str(last)) is None
    last.write_bytes(last.read_bytes()[:1500])
    assert "truncated" in checkpoint_damage(str(last))
    empty = tmp_path / "empty.pt"
    empty.write_bytes(b"")
    assert "empty" in checkpoint_damage(str(empty))
    assert newest_intact_checkpoint(str(tmp_path), exclude=str(last)) == str(new)
    new.write_bytes(new.read_bytes()[:-10])  # the end of the archive directory lost
    assert newest_intact_checkpoint(str(tmp_path), exclude=str(last)) == str(old)


MAX_UPDATE = 16
DELAY = 0.4  # seconds paused inside each checkpoint file write


def _train_command(data_bin, save_dir):
    return [str(BIN / "fairseq-train"), str(data_bin), *TRAIN_FLAGS, "--task", "translation_sparse",
            "--save-dir", str(save_dir), "--max-update", str(MAX_UPDATE), "--save-interval-updates", "2",
            "--keep-interval-updates", "3", "--log-interval", "1", "--log-format", "simple"]


def _run_and_kill_in_a_save(cmd, rng) -> str:
    """Run until the second checkpoint save of this run starts, SIGKILL it somewhere inside
    that save, and return what it printed."""
    proc = subprocess.Popen(cmd, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True,
                            env=command_env(PYTHONUNBUFFERED="1", **{WRITE_DELAY_ENV: str(DELAY)}))
    out, saves = [], 0
    for line in proc.stdout:
        out.append(line)
        saves += "Preparing to save checkpoint" in line
        if saves == 2:
            time.sleep(rng.uniform(0.0, 2.2 * DELAY))  # two paused writes: the first file, the copy
            proc.kill()
            break
    proc.wait(timeout=60)
    text = "".join(out)
    assert saves == 2 and proc.returncode == -9, text[-3000:]
    return text


def _loaded_updates(text: str) -> int:
    match = re.search(r"Loaded checkpoint \S+ \(epoch \d+ @ (\d+) updates\)", text)
    assert match, text[-3000:]
    return int(match.group(1))


@pytest.mark.slow
def test_train_killed_inside_saves_always_resumes(tmp_path):
    data_bin = make_corpus(tmp_path, train=100, valid=8, test=8)
    save_dir = tmp_path / "ckpt"
    cmd, rng, resumed = _train_command(data_bin, save_dir), random.Random(0), [0]
    for attempt in range(3):
        text = _run_and_kill_in_a_save(cmd, rng)
        if attempt:  # this run resumed from the checkpoint_last.pt the killed run left
            assert "is damaged" not in text
            resumed.append(_loaded_updates(text))
        assert checkpoint_damage(str(save_dir / "checkpoint_last.pt")) is None, f"attempt {attempt}"
    assert resumed == sorted(resumed) and resumed[-1] > 0

    last = save_dir / "checkpoint_last.pt"  # what a plain copy leaves when killed
    last.write_bytes(last.read_bytes()[: last.stat().st_size // 2])
    proc = subprocess.run(cmd, capture_output=True, text=True, env=command_env(), timeout=120)
    text = proc.stdout + proc.stderr
    assert proc.returncode == 0, text[-3000:]
    assert re.search(r"checkpoint_last\.pt is damaged \(truncated.*resuming from \S+checkpoint_\d+_\d+\.pt",
                     text), text[-3000:]
    assert _loaded_updates(text) > 0
    assert f"num_updates {MAX_UPDATE}" in text or f"@ {MAX_UPDATE} updates" in text
    assert not list(save_dir.glob("*.partial-*"))
    assert checkpoint_damage(str(last)) is None
