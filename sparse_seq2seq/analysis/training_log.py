"""Read the learned α of every head over training from a fairseq training log.

``entmax_transformer`` logs α per head as scalars ``alpha/<type>_l<layer>_h<head>``
(type enc, dec_self or dec_cross), which fairseq writes in each of its log formats:

* simple, per ``--log-interval``: ``epoch 001:  3 / 5 alpha/enc_l0_h0=1.398, ..., num_updates=3``
* simple or tqdm, end of epoch: ``epoch 001 | alpha/enc_l0_h0 1.398 | ... | num_updates 3``
* json: ``{"epoch": 1, "alpha/enc_l0_h0": "1.398", ..., "num_updates": "3"}``

Interval lines give the trajectory (the paper's Fig. 5 plots α against updates); when a log
has none (a run shorter than its log interval), the end-of-epoch averages are used.
"""
from __future__ import annotations

import json
import re
from dataclasses import dataclass, field
from pathlib import Path
from typing import Dict, List, Optional, Tuple, Union

__all__ = ["AlphaTrajectory", "parse_alpha_name", "read_alpha_log"]

_NUMBER = r"[-+]?(?:\d+\.?\d*|\.\d+)(?:[eE][-+]?\d+)?"
_KEY_EQUALS = re.compile(rf"(?:^|[\s,])([\w/.]+)=({_NUMBER})(?=,|\s|$)")
_KEY_BAR = re.compile(rf"\|\s*([\w/.]+)\s+({_NUMBER})\s*(?=\||$)")
_ALPHA_NAME = re.compile(r"^alpha/(enc|dec_self|dec_cross)_l(\d+)_h(\d+)$")


def parse_alpha_name(name: str) -> Optional[Tuple[str, int, int]]:
    """``alpha/dec_cross_l1_h3`` → ("dec_cross", 1, 3); None for any other scalar."""
    match = _ALPHA_NAME.match(name)
    return (match.group(1), int(match.group(2)), int(match.group(3))) if match else None


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


@dataclass
class AlphaTrajectory:
    """α of each head (keyed by ``(type, layer, head)``) at each logged update."""

    updates: List[float] = field(default_factory=list)
    alphas: Dict[Tuple[str, int, int], List[float]] = field(default_factory=dict)
    source: str = "interval"  # "interval" or "epoch": which kind of log line was read

    def __len__(self) -> int:
        return len(self.updates)


def read_alpha_log(path: Union[str, Path]) -> AlphaTrajectory:
    """Parse α per head over training from a fairseq log (``--log-file`` or captured stdout).

    Raises ``ValueError`` naming the file when it holds no ``alpha/...`` scalar (a model
    without α-entmax attention, or a log of another program)."""
    records: Dict[str, List[Tuple[float, Dict[str, float]]]] = {"interval": [], "epoch": []}
    with open(path, encoding="utf-8", errors="replace") as handle:
        for line in handle:
            if "alpha/" not in line:
                continue
            values, summary = _scalars(line)
            heads = {k: v for k, v in values.items() if parse_alpha_name(k)}
            if not heads:
                continue
            kind = "epoch" if summary else "interval"
            step = values.get("num_updates", float(len(records[kind]) + 1))
            records[kind].append((step, heads))
    kind = "interval" if records["interval"] else "epoch"
    if not records[kind]:
        raise ValueError(f"{path}: no alpha/<type>_l<layer>_h<head> scalars in this log "
                         "(was the model trained with alpha_entmax attention?)")
    trajectory = AlphaTrajectory(source=kind)
    names = sorted({name for _, heads in records[kind] for name in heads},
                   key=lambda name: _order(parse_alpha_name(name)))
    for name in names:
        trajectory.alphas[parse_alpha_name(name)] = []
    for step, heads in records[kind]:
        trajectory.updates.append(step)
        for name in names:
            trajectory.alphas[parse_alpha_name(name)].append(heads.get(name, float("nan")))
    return trajectory


def _order(key: Tuple[str, int, int]) -> Tuple[int, int, int]:
    kind, layer, head = key
    return ({"enc": 0, "dec_self": 1, "dec_cross": 2}[kind], layer, head)
