"""Read the learned α (and the attention density) of every head over training from what
fairseq wrote: its tensorboard event files or its text log.

The fairseq models log per-head scalars ``alpha/<type>_l<layer>_h<head>`` and
``density/<type>_l<layer>_h<head>`` (names and parser in :mod:`sparse_seq2seq.registry`).

* **tensorboard** (``--tensorboard-logdir DIR``): ``DIR/train_inner`` holds one event per
  ``--log-interval``, ``DIR/train`` one per epoch; each scalar is stored at its update number.
* **text** (``--log-file`` or captured output), in each of fairseq's log formats:

  - simple, per ``--log-interval``: ``epoch 001:  3 / 5 alpha/enc_l0_h0=1.398, ..., num_updates=3``
  - simple or tqdm, end of epoch: ``epoch 001 | alpha/enc_l0_h0 1.398 | ... | num_updates 3``
  - json: ``{"epoch": 1, "alpha/enc_l0_h0": "1.398", ..., "num_updates": "3"}``

Interval records give the trajectory (the paper's Fig. 5 plots α against updates); when there
are none (a run shorter than its log interval), the end-of-epoch averages are used. Every
update appears once: a log that holds a line several times (fairseq 0.12 writes each line
of epoch N N times to ``--log-file``) or a run resumed from an earlier checkpoint (which logs
the same updates again) gives one point per update number, the last one written.
"""
from __future__ import annotations

import json
import re
import struct
from dataclasses import dataclass, field
from pathlib import Path
from typing import Dict, Iterable, List, Optional, Tuple, Union

from ..registry import ATTENTION_KEYS, parse_alpha_name, parse_head_scalar_name

__all__ = ["AlphaTrajectory", "parse_alpha_name", "read_alpha_log", "read_alpha_tensorboard",
           "read_alpha_trajectory"]

HeadKey = Tuple[str, int, int]  # (attention type, layer, head)
_NUMBER = r"[-+]?(?:\d+\.?\d*|\.\d+)(?:[eE][-+]?\d+)?"
_KEY_EQUALS = re.compile(rf"(?:^|[\s,])([\w/.]+)=({_NUMBER})(?=,|\s|$)")
_KEY_BAR = re.compile(rf"\|\s*([\w/.]+)\s+({_NUMBER})\s*(?=\||$)")
_TENSORBOARD_RUNS = {"interval": "train_inner", "epoch": "train"}


@dataclass
class AlphaTrajectory:
    """α of each head (keyed by ``(type, layer, head)``) at each logged update, ascending and
    each update once; ``densities`` likewise, for the heads whose density was logged."""

    updates: List[float] = field(default_factory=list)
    alphas: Dict[HeadKey, List[float]] = field(default_factory=dict)
    source: str = "interval"  # "interval" or "epoch": which kind of record was read
    densities: Dict[HeadKey, List[float]] = field(default_factory=dict)

    def __len__(self) -> int:
        return len(self.updates)


Record = Tuple[Optional[float], Dict[str, float]]  # (update number or None, head scalars)


def _order(key: HeadKey) -> Tuple[int, int, int]:
    kind, layer, head = key
    return ATTENTION_KEYS.index(kind), layer, head


def _trajectory(records: List[Record], source: str) -> AlphaTrajectory:
    """One point per update (the last record of each), ascending; records without an update
    number count 1, 2, … after dropping exact repeats of the record before them."""
    by_step: Dict[float, Dict[str, float]] = {}
    previous: Optional[Dict[str, float]] = None
    for step, heads in records:
        if step is None:
            if heads == previous:
                continue
            step = float(len(by_step) + 1)
        by_step[step] = heads
        previous = heads
    steps = sorted(by_step)
    trajectory = AlphaTrajectory(updates=steps, source=source)
    names = {name for heads in by_step.values() for name in heads}
    parsed = sorted(((parse_head_scalar_name(n), n) for n in names), key=lambda p: _order(p[0][1:]))
    for scalar, name in parsed:
        table = trajectory.alphas if scalar.metric == "alpha" else trajectory.densities
        table[(scalar.kind, scalar.layer, scalar.head)] = [by_step[s].get(name, float("nan")) for s in steps]
    return trajectory


def _no_alpha(where: Union[str, Path]) -> ValueError:
    return ValueError(f"{where}: no alpha/<type>_l<layer>_h<head> scalars in this log "
                      "(was the model trained with alpha_entmax attention?)")


def _scalars(line: str) -> Tuple[Dict[str, float], bool]:
    """The scalars of one log line and whether it is an end-of-epoch summary."""
    start = line.find("{")
    if start >= 0 and '"alpha/' in line:
        try:
            record = json.loads(line[start:])
        except json.JSONDecodeError:
            record = None
        if isinstance(record, dict):
            values = {}
            for key, value in record.items():
                try:
                    values[key] = float(value)
                except (TypeError, ValueError):
                    continue
            return values, "update" not in record
    pairs = _KEY_EQUALS.findall(line)
    if pairs:
        return {k: float(v) for k, v in pairs}, False
    return {k: float(v) for k, v in _KEY_BAR.findall(line)}, True


def _pick(records: Dict[str, List[Record]], where: Union[str, Path]) -> AlphaTrajectory:
    for source in ("interval", "epoch"):
        if any(any(parse_alpha_name(n) for n in heads) for _, heads in records[source]):
            return _trajectory(records[source], source)
    raise _no_alpha(where)


def read_alpha_log(path: Union[str, Path]) -> AlphaTrajectory:
    """α (and density) per head over training from a fairseq text log (``--log-file`` or
    captured stdout), or from a tensorboard log folder when ``path`` is a folder.

    Raises ``ValueError`` naming the file when it holds no ``alpha/...`` scalar (a model
    without α-entmax attention, or a log of another program)."""
    if Path(path).is_dir():
        return read_alpha_tensorboard(path)
    records: Dict[str, List[Record]] = {"interval": [], "epoch": []}
    with open(path, encoding="utf-8", errors="replace") as handle:
        for line in handle:
            if "alpha/" not in line and "density/" not in line:
                continue
            values, summary = _scalars(line)
            heads = {k: v for k, v in values.items() if parse_head_scalar_name(k)}
            if heads:
                records["epoch" if summary else "interval"].append((values.get("num_updates"), heads))
    return _pick(records, path)


def _event_files(folder: Path) -> Iterable[Path]:
    return sorted(folder.glob("events.out.tfevents.*")) if folder.is_dir() else []


def _complete_records(path: Path) -> int:
    """How many whole TFRecord frames (8-byte length, 4-byte CRC, data, 4-byte CRC) the file
    holds, by their lengths alone; an incomplete frame at the end (a run still writing, or
    killed) is not counted."""
    count, offset, size = 0, 0, path.stat().st_size
    with open(path, "rb") as handle:
        while offset + 12 <= size:
            handle.seek(offset)
            length = struct.unpack("<Q", handle.read(8))[0]
            offset += 16 + length
            if offset > size:
                break
            count += 1
    return count


def _read_events(folder: Path) -> List[Record]:
    """The per-head scalars of every event file in ``folder``, oldest file first, grouped by
    update number within each file. A file whose records stop passing their checksums before
    its end is refused, naming it; an incomplete last record is left out."""
    try:
        from tensorboard.backend.event_processing.event_file_loader import LegacyEventFileLoader
        from tensorboard.util import tensor_util
    except ImportError as error:
        raise ValueError(f"{folder}: reading tensorboard event files needs the tensorboard "
                         "package (pip install tensorboard)") from error
    records: List[Record] = []
    for path in _event_files(folder):
        per_step: Dict[float, Dict[str, float]] = {}
        events = 0
        for event in LegacyEventFileLoader(str(path)).Load():
            events += 1
            for value in event.summary.value:
                if parse_head_scalar_name(value.tag) is None:
                    continue
                if value.HasField("tensor"):  # a scalar written in the tensor form
                    number = float(tensor_util.make_ndarray(value.tensor).reshape(-1)[0])
                else:
                    number = float(value.simple_value)
                per_step.setdefault(float(event.step), {})[value.tag] = number
        complete = _complete_records(path)
        if events < complete:
            raise ValueError(f"{path}: damaged tensorboard event file: record {events + 1} of "
                             f"{complete} fails its checksum")
        records.extend(sorted(per_step.items()))
    return records


def read_alpha_tensorboard(logdir: Union[str, Path]) -> AlphaTrajectory:
    """α (and density) per head over training from fairseq's ``--tensorboard-logdir``:
    ``train_inner`` events (per log interval), else ``train`` (per epoch). Several event
    files in one run folder (a resumed training) are read oldest first, so a repeated update
    takes the value written last. Raises ``ValueError`` naming the folder when no α is there."""
    logdir = Path(logdir)
    records = {source: _read_events(logdir / run) for source, run in _TENSORBOARD_RUNS.items()}
    return _pick(records, logdir)


def read_alpha_trajectory(log: Optional[Union[str, Path]] = None,
                          tensorboard_logdir: Optional[Union[str, Path]] = None) -> AlphaTrajectory:
    """The tensorboard events when given and holding α, else the text log; ``ValueError``
    naming what was read when neither holds α."""
    if tensorboard_logdir is None and log is None:
        raise ValueError("give a training log or a tensorboard log folder")
    if tensorboard_logdir is not None:
        try:
            return read_alpha_tensorboard(tensorboard_logdir)
        except ValueError:
            if log is None:
                raise
    return read_alpha_log(log)
