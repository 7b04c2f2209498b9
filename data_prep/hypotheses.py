"""Read the translations out of ``fairseq-generate`` output and check none is missing."""
from __future__ import annotations

import os
from typing import Iterator

from . import DataError
from .atomic import atomic_paths
from .text_lines import read_lines


def _hypothesis_lines(path: str | os.PathLike) -> Iterator[tuple[str, int, str]]:
    for line in read_lines(path):
        tag, _, rest = line.partition("\t")
        kind, dash, number = tag.partition("-")
        if kind in ("H", "D") and dash and number.isdigit():
            text = rest.split("\t", 1)[1] if "\t" in rest else ""
            yield kind, int(number), text


def read_hypotheses(path: str | os.PathLike) -> dict[int, str]:
    """{sentence id: best hypothesis}; detokenised (``D-``) lines win over ``H-`` lines."""
    found: dict[str, dict[int, str]] = {"H": {}, "D": {}}
    for kind, number, text in _hypothesis_lines(path):
        found[kind].setdefault(number, text)
    return found["D"] or found["H"]


def write_hypotheses(generate_output: str | os.PathLike, out: str | os.PathLike,
                     expected: int) -> int:
    """Write hypotheses in input order to ``out``; fail unless there are exactly ``expected``."""
    hyps = read_hypotheses(generate_output)
    missing = [i for i in range(expected) if i not in hyps]
    extra = [i for i in hyps if not 0 <= i < expected]
    if missing or extra:
        shown = ", ".join(map(str, missing[:10])) + (" ..." if len(missing) > 10 else "")
        raise DataError(
            f"{generate_output}: {len(hyps)} hypotheses for a test set of {expected} lines"
            + (f"; missing ids {shown}" if missing else "")
            + (f"; unexpected ids beyond {expected - 1}" if extra else "")
            + " (fairseq-generate needs --required-batch-size-multiple 1 and no "
              "--skip-invalid-size-inputs-valid-test to translate every sentence)"
        )
    with atomic_paths(out) as (tmp,), open(tmp, "w", encoding="utf-8") as handle:
        for i in range(expected):
            handle.write(hyps[i] + "\n")
    return expected
