"""BERT WordPiece tokenisation of triplets, and the way back to the triplets' own tokens.

Correia & Martins (ACL 2019) feed BERT its own WordPiece vocabulary, so the embeddings load
as they are. The tokenizer is the checkpoint's (``transformers``), never a hand-written one;
literal ``[SEP]`` or ``[CLS]`` in the text are read as text, not as special tokens.

Going back: BERT's basic tokenizer splits off every punctuation mark ("z.B." → "z . b .")
and an uncased vocabulary lowercases and strips accents ("Gewähren" → "gewahren"). A
post-edit mostly copies the translation, so :meth:`WordPieces.restore` rebuilds the
triplets' tokens from the sentence's own translation and source: a run of output tokens that
spells a word of the mt (or, failing that, of the src) the way BERT reads it becomes that
word, with its case, accents and attached punctuation; among several spellings it takes the
one nearest in relative position. Other tokens stay as BERT wrote them (lowercase for an
uncased BERT), which is why case-insensitive TER is reported too.
"""
from __future__ import annotations

import contextlib
import os
from typing import Iterator, Sequence

from .. import DataError

CONTINUATION = "##"


@contextlib.contextmanager
def _quiet() -> Iterator[None]:
    from transformers.utils import logging as hf_logging
    level = hf_logging.get_verbosity()
    hf_logging.set_verbosity_error()
    try:
        yield
    finally:
        hf_logging.set_verbosity(level)


def join_pieces(pieces: Sequence[str]) -> list[str]:
    """WordPieces → basic tokens: a ``##`` piece continues the previous token."""
    tokens: list[str] = []
    for piece in pieces:
        if piece.startswith(CONTINUATION) and tokens:
            tokens[-1] += piece[len(CONTINUATION):]
        else:
            tokens.append(piece[len(CONTINUATION):] if piece.startswith(CONTINUATION) else piece)
    return tokens


class WordPieces:
    """A BERT checkpoint's WordPiece tokenizer (``transformers``), with the way back."""

    def __init__(self, tokenizer, source: str):
        self.tokenizer = tokenizer
        self.source = source
        self._keys: dict[str, tuple[str, ...]] = {}

    @classmethod
    def load(cls, name_or_path: str | os.PathLike) -> "WordPieces":
        """The tokenizer of a BERT folder (or hub name), or of a binarised data folder's
        ``wordpiece/`` copy."""
        from transformers import AutoTokenizer
        try:
            with _quiet():
                tokenizer = AutoTokenizer.from_pretrained(str(name_or_path),
                                                          split_special_tokens=True)
        except (OSError, ValueError) as err:
            raise DataError(f"cannot load the BERT tokenizer {str(name_or_path)!r}: {err}") from None
        if not getattr(tokenizer, "is_fast", False):
            raise DataError(f"{name_or_path}: no fast (tokenizers) WordPiece tokenizer")
        return cls(tokenizer, str(name_or_path))

    @property
    def lowercase(self) -> bool:
        normalizer = self.tokenizer.backend_tokenizer.normalizer
        return normalizer is not None and normalizer.normalize_str("A") == "a"

    def vocabulary(self) -> list[str]:
        """Every WordPiece in id order (ids must be 0..n-1, no token with white space)."""
        ordered = sorted(self.tokenizer.get_vocab().items(), key=lambda item: item[1])
        if [i for _, i in ordered] != list(range(len(ordered))):
            raise DataError(f"{self.source}: vocabulary ids are not 0..{len(ordered) - 1}")
        bad = [t for t, _ in ordered if not t or any(c.isspace() for c in t)]
        if bad:
            raise DataError(f"{self.source}: WordPieces with white space cannot be written "
                            f"one per line: {bad[:5]!r}")
        return [t for t, _ in ordered]

    def save(self, folder: str | os.PathLike) -> None:
        """Write the tokenizer files into ``folder`` (loadable with :meth:`load`)."""
        self.tokenizer.save_pretrained(str(folder))

    def encode(self, lines: Sequence[str]) -> list[list[int]]:
        """WordPiece ids of each line, without [CLS]/[SEP]."""
        if not lines:
            return []
        return self.tokenizer(list(lines), add_special_tokens=False)["input_ids"]

    def pieces(self, ids: Sequence[int]) -> list[str]:
        return self.tokenizer.convert_ids_to_tokens(list(ids))

    def key(self, word: str) -> tuple[str, ...]:
        """How BERT reads one white-space token, as basic tokens ("z.B." → z . b .)."""
        if word not in self._keys:
            self._keys[word] = tuple(join_pieces(self.pieces(self.encode([word])[0])))
        return self._keys[word]

    def _lexicon(self, sentence: str) -> tuple[dict[tuple[str, ...], list[tuple[float, str]]], int]:
        """{basic tokens of a word: [(relative position, word), ...]} and the longest key."""
        lexicon: dict[tuple[str, ...], list[tuple[float, str]]] = {}
        words = sentence.split()
        for j, word in enumerate(words):
            key = self.key(word)
            if key:
                lexicon.setdefault(key, []).append((j / max(len(words), 1), word))
        return lexicon, max((len(k) for k in lexicon), default=1)

    def restore(self, hypothesis: str, context: Sequence[str]) -> str:
        """Rebuild the triplets' tokens of a hypothesis in basic tokens (or WordPieces).

        ``context``: the sentences whose words may be copied, best first (mt, then src); a
        later sentence is used only where no word of an earlier one matches.
        """
        tokens = join_pieces(hypothesis.split())
        lexicons = [self._lexicon(sentence) for sentence in context]
        out: list[str] = []
        i, n = 0, len(tokens)
        while i < n:
            match = None
            for lexicon, longest in lexicons:
                for width in range(min(longest, n - i), 0, -1):
                    candidates = lexicon.get(tuple(tokens[i:i + width]))
                    if candidates:
                        where = i / max(n, 1)
                        match = (width, min(candidates, key=lambda c: abs(c[0] - where))[1])
                        break
                if match:
                    break
            width, word = match or (1, tokens[i])
            out.append(word)
            i += width
        return " ".join(out)

    def round_trip(self, line: str, context: Sequence[str]) -> str:
        """``line`` → WordPieces → :meth:`restore`: what a perfect model could output."""
        return self.restore(" ".join(self.pieces(self.encode([line])[0])), context)
