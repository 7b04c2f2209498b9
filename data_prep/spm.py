"""Joint sentencepiece model: train on both sides of the training data, encode to pieces."""
from __future__ import annotations

import itertools
import os
from pathlib import Path
from typing import Callable, Sequence

import sentencepiece as sp

from . import DataError
from .atomic import atomic_paths
from .text_lines import check_parallel, read_parallel

ENCODE_BATCH = 10000


def train(inputs: Sequence[str | os.PathLike], model_prefix: str | os.PathLike,
          vocab_size: int, model_type: str = "unigram", character_coverage: float = 1.0,
          input_sentence_size: int = 2_000_000, threads: int = 1, seed: int = 1,
          log: Callable[[str], None] = print) -> Path:
    """Train one model on all ``inputs``; write ``<prefix>.model`` and ``.vocab``; return the model.

    ``inputs`` must be the two sides of a parallel corpus (checked). At most
    ``input_sentence_size`` sentences are sampled, so large corpora train in bounded time.
    """
    if len(inputs) != 2:
        raise DataError("sentencepiece training takes the source and target training files")
    pairs = check_parallel(inputs[0], inputs[1])
    prefix = Path(model_prefix)
    targets = [prefix.with_name(prefix.name + ".model"), prefix.with_name(prefix.name + ".vocab")]
    with atomic_paths(*targets) as (model_tmp, vocab_tmp):
        tmp_prefix = model_tmp.with_suffix("")
        sp.set_random_generator_seed(seed)
        try:
            sp.SentencePieceTrainer.train(
                input=[str(p) for p in inputs], model_prefix=str(tmp_prefix),
                vocab_size=vocab_size, model_type=model_type,
                character_coverage=character_coverage,
                input_sentence_size=input_sentence_size, shuffle_input_sentence=True,
                hard_vocab_limit=False, num_threads=threads,
                minloglevel=1,
            )
        except RuntimeError as err:
            raise DataError(f"sentencepiece training on {inputs[0]} failed: {err}") from None
        os.replace(f"{tmp_prefix}.model", model_tmp)
        os.replace(f"{tmp_prefix}.vocab", vocab_tmp)
    size = sp.SentencePieceProcessor(model_file=str(targets[0])).get_piece_size()
    log(f"sentencepiece {model_type}: {size} pieces from {pairs} pairs -> {targets[0]}")
    return targets[0]


def encode_pair(model: str | os.PathLike, src_in: str | os.PathLike, tgt_in: str | os.PathLike,
                src_out: str | os.PathLike, tgt_out: str | os.PathLike,
                max_len: int | None = None, log: Callable[[str], None] = print) -> tuple[int, int]:
    """Encode a parallel corpus into space-separated pieces; return (pairs read, written).

    With ``max_len`` (for training data) pairs with more pieces than that on either side, or
    no piece at all, are dropped; without it every line is kept so test sets stay aligned.
    """
    if not Path(model).is_file():
        raise DataError(f"{model}: no such sentencepiece model (run the sentencepiece stage)")
    proc = sp.SentencePieceProcessor(model_file=str(model))
    pairs = read_parallel(src_in, tgt_in)
    read = written = 0
    with atomic_paths(src_out, tgt_out) as (src_tmp, tgt_tmp), \
            open(src_tmp, "w", encoding="utf-8") as src_f, \
            open(tgt_tmp, "w", encoding="utf-8") as tgt_f:
        while batch := list(itertools.islice(pairs, ENCODE_BATCH)):
            src_pieces = proc.encode([s for s, _ in batch], out_type=str)
            tgt_pieces = proc.encode([t for _, t in batch], out_type=str)
            for s, t in zip(src_pieces, tgt_pieces):
                read += 1
                if max_len is not None and not (0 < len(s) <= max_len and 0 < len(t) <= max_len):
                    continue
                src_f.write(" ".join(s) + "\n")
                tgt_f.write(" ".join(t) + "\n")
                written += 1
        if written == 0:
            raise DataError(f"{src_in}: no sentence pair left after encoding")
    dropped = f" ({read - written} dropped: longer than {max_len} pieces or empty)" \
        if read != written else ""
    log(f"{Path(src_in).name}, {Path(tgt_in).name}: {written} pairs{dropped} -> {src_out}, {tgt_out}")
    return read, written
