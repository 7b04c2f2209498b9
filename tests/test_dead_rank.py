"""A rank that dies ends the whole data-parallel run.

Two gloo ranks train ``entmax_transformer_tiny`` on a slice of Multi30k with far more updates
than the test waits for; once both are updating, one rank is killed with SIGKILL (rank 0,
which also holds the rendezvous store, or rank 1). The launcher
must then exit non-zero within a bounded time, name the dead rank and how it died, and leave
none of its processes (the other rank, multiprocessing's helpers) running.
"""
from __future__ import annotations

import os
import re
import signal
import subprocess
import sys
import time
from pathlib import Path
from types import SimpleNamespace
from typing import Dict, Optional

import pytest

from sparse_seq2seq.fairseq_plugin.cpu_distributed import failure_report
from fairseq_helpers import DATA_MIRROR, REPO, TRAIN_FLAGS, command_env, make_corpus

START_TIMEOUT = 180  # seconds until both ranks are updating (imports dominate on a busy machine)
EXIT_TIMEOUT = 45  # spawn's join waits up to 30 s for SIGTERM before it sends SIGKILL


def process_start(pid: int) -> Optional[int]:
    """The start time (clock ticks since boot) of a running process; None if it is gone or a
    zombie. Together with the pid it names one process, even once the pid is reused."""
    try:
        stat = Path(f"/proc/{pid}/stat").read_text()
    except (FileNotFoundError, ProcessLookupError):
        return None
    fields = stat.rsplit(")", 1)[1].split()  # the name in parentheses may contain spaces
    return None if fields[0] in ("Z", "X") else int(fields[19])


def descendants(root: int) -> Dict[int, int]:
    """pid -> start time of every running process below ``root``, from each one's parent pid."""
    parent_of = {}
    for entry in Path("/proc").iterdir():
        if entry.name.isdigit():
            try:
                parent_of[int(entry.name)] = int((entry / "stat").read_text().rsplit(")", 1)[1].split()[1])
            except (FileNotFoundError, ProcessLookupError, IndexError):
                continue
    below, frontier = set(), {root}
    while frontier:
        frontier = {pid for pid, parent in parent_of.items() if parent in frontier} - below
        below |= frontier
    starts = {pid: process_start(pid) for pid in below}
    return {pid: start for pid, start in starts.items() if start is not None}


@pytest.fixture(scope="module")
def data_bin(tmp_path_factory) -> Path:
    if not (DATA_MIRROR / "multi30k" / "train.de.gz").is_file():
        pytest.skip(f"Multi30k not found in {DATA_MIRROR / 'multi30k'}")
    return make_corpus(tmp_path_factory.mktemp("m30k"), train=160, valid=8, test=8)


@pytest.mark.slow
@pytest.mark.parametrize("victim_rank", [0, 1])
@pytest.mark.skipif(not sys.platform.startswith("linux"), reason="reads processes from /proc")
def test_killed_rank_ends_the_run_and_leaves_no_process(data_bin, tmp_path, victim_rank):
    log_path = tmp_path / "launcher.log"
    cmd = [sys.executable, "-m", "sparse_seq2seq.fairseq_plugin.cpu_distributed", "--nprocs", "2",
           "--threads-per-proc", "1", "--", str(data_bin), *TRAIN_FLAGS, "--max-tokens", "150",
           "--max-update", "100000", "--no-save", "--save-dir", str(tmp_path / "ckpt"),
           "--log-interval", "1", "--log-format", "simple"]
    with open(log_path, "wb") as log_file:
        launcher = subprocess.Popen(cmd, stdout=log_file, stderr=subprocess.STDOUT, cwd=REPO,
                                    env=command_env(), start_new_session=True)
    try:
        rank_pids: Dict[int, int] = {}
        deadline = time.monotonic() + START_TIMEOUT
        while time.monotonic() < deadline and launcher.poll() is None:
            log = log_path.read_text(errors="replace")
            rank_pids = {int(r): int(p) for r, p in re.findall(r"^\| rank (\d+): process (\d+)$", log, re.M)}
            if len(rank_pids) == 2 and "num_updates=2," in log:
                break
            time.sleep(0.5)
        log = log_path.read_text(errors="replace")
        assert launcher.poll() is None and len(rank_pids) == 2 and "num_updates=2," in log, \
            f"the run did not reach its second update in {START_TIMEOUT} s:\n{log[-4000:]}"

        family = descendants(launcher.pid)  # the ranks and multiprocessing's resource tracker
        assert set(rank_pids.values()) <= set(family), (rank_pids, family)
        victim = rank_pids[victim_rank]
        os.kill(victim, signal.SIGKILL)
        killed_at = time.monotonic()
        try:
            returncode = launcher.wait(timeout=EXIT_TIMEOUT)
        except subprocess.TimeoutExpired:
            pytest.fail(f"the launcher still runs {EXIT_TIMEOUT} s after rank {victim_rank} was killed:\n"
                        f"{log_path.read_text(errors='replace')[-4000:]}")
        exit_seconds = time.monotonic() - killed_at
        log = log_path.read_text(errors="replace")
        assert returncode != 0, log[-4000:]
        assert f"cpu_distributed: rank {victim_rank} (process {victim}) was killed by SIGKILL" in log, log[-4000:]

        # helpers that outlive the launcher get a moment to see their pipe close
        alive = {pid for pid, start in family.items() if process_start(pid) == start}
        grace_end = time.monotonic() + 5
        while alive and time.monotonic() < grace_end:
            time.sleep(0.2)
            alive = {pid for pid in alive if process_start(pid) == family[pid]}
        assert not alive, f"still running after the launcher exited: {sorted(alive)} of {family}"
        print(f"launcher exited {exit_seconds:.1f} s after the kill, code {returncode}")
    finally:  # whatever failed above, leave nothing of the run behind
        try:
            os.killpg(launcher.pid, signal.SIGKILL)
        except ProcessLookupError:
            pass
        launcher.wait()


def test_failure_report_names_every_rank_that_did_not_finish():
    from torch.multiprocessing.spawn import ProcessExitedException, ProcessRaisedException

    ranks = [SimpleNamespace(pid=101, exitcode=0), SimpleNamespace(pid=102, exitcode=-9),
             SimpleNamespace(pid=103, exitcode=1)]
    killed = failure_report(ProcessExitedException("process 1 terminated with signal SIGKILL", 1, 102,
                                                   -9, "SIGKILL"), ranks, start_rank=4)
    assert killed.splitlines() == [
        "cpu_distributed: rank 5 (process 102) was killed by SIGKILL",
        "cpu_distributed: rank 6 (process 103) exited with code 1",
        "cpu_distributed: rank 5 failed; the launcher stopped the ranks of this machine"]
    trace = "Traceback (most recent call last):\n  ...\nRuntimeError: Connection closed by peer\n"
    raised = failure_report(ProcessRaisedException(
        f"\n\n-- Process 2 terminated with the following error:\n{trace}", 2, 103), ranks, 0)
    assert raised.startswith(trace.rstrip() + "\ncpu_distributed: rank 1 (process 102)")
    assert raised.endswith("rank 2 failed; the launcher stopped the ranks of this machine")
