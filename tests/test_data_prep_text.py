"""data_prep text processing on real Multi30k sentences: sacremoses normalisation,
tokenisation and detokenisation, and joint sentencepiece training and encoding."""
from __future__ import annotations

import pytest

from data_prep import DataError, spm
from data_prep.moses import detokenize_file, process_line, process_pair
from data_prep.text_lines import count_lines

from data_prep_helpers import leftovers, pair  # noqa: F401
from recipe_helpers import M30K, real_lines


# --- sacremoses ------------------------------------------------------------------------------

def test_moses_normalises_and_tokenises_without_escaping():
    assert process_line("„Hallo“, sagte er…  & ging.", "de") == '" Hallo " , sagte er ... & ging .'
    assert process_line("Don't stop.", "en", normalize=False) == "Don 't stop ."
    assert process_line("  a   b ", "en", normalize=False, tokenize=False) == "a b"


def test_process_pair_tokenises_real_data_and_drops_empty_pairs(pair, tmp_path):
    src, tgt = pair
    lines = src.read_text(encoding="utf-8").splitlines()
    lines[4] = "   "
    src.write_text("\n".join(lines) + "\n", encoding="utf-8")
    read, written = process_pair(src, tgt, tmp_path / "t.de", tmp_path / "t.en", "de", "en",
                                 drop_empty=True, workers=2, log=lambda _: None)
    assert (read, written) == (60, 59)
    tokenised = (tmp_path / "t.en").read_text(encoding="utf-8").splitlines()
    assert len(tokenised) == 59
    assert tokenised[0] == process_line(real_lines("train", "en", 1)[0], "en")
    assert tokenised[0].endswith(" .")
    kept, _ = process_pair(src, tgt, tmp_path / "k.de", tmp_path / "k.en", "de", "en",
                           drop_empty=False, log=lambda _: None)
    assert count_lines(tmp_path / "k.de") == kept == 60


def test_detokenize_undoes_tokenisation(tmp_path):
    sentences = ["A man, in a red shirt, is running.", "Two dogs play in the snow!",
                 "It's a \"big\" dog (brown)."]
    tok = tmp_path / "tok.en"
    tok.write_text("\n".join(process_line(s, "en", normalize=False) for s in sentences) + "\n")
    assert detokenize_file(tok, tmp_path / "detok.en", "en") == 3
    assert (tmp_path / "detok.en").read_text().splitlines() == sentences


# --- sentencepiece ---------------------------------------------------------------------------

def test_joint_sentencepiece_round_trips_and_filters_long_pairs(tmp_path):
    if not M30K.is_dir():
        pytest.skip("no Multi30k in DATA_MIRROR")
    de, en = tmp_path / "train.de", tmp_path / "train.en"
    de.write_text("\n".join(real_lines("train", "de", 1500)) + "\n", encoding="utf-8")
    en.write_text("\n".join(real_lines("train", "en", 1500)) + "\n", encoding="utf-8")
    model = spm.train([de, en], tmp_path / "spm", vocab_size=400, log=lambda _: None)
    assert model.is_file() and (tmp_path / "spm.vocab").is_file()
    import sentencepiece
    proc = sentencepiece.SentencePieceProcessor(model_file=str(model))
    assert proc.get_piece_size() == 400
    read, written = spm.encode_pair(model, de, en, tmp_path / "p.de", tmp_path / "p.en",
                                    log=lambda _: None)
    assert read == written == 1500
    pieces = (tmp_path / "p.de").read_text(encoding="utf-8").splitlines()
    assert proc.decode_pieces(pieces[10].split()) == real_lines("train", "de", 11)[10]
    longest = max(len(p.split()) for p in pieces)
    _, kept = spm.encode_pair(model, de, en, tmp_path / "q.de", tmp_path / "q.en",
                              max_len=longest - 1, log=lambda _: None)
    assert 0 < kept < 1500


def test_sentencepiece_refuses_unequal_training_sides(pair, tmp_path):
    src, tgt = pair
    tgt.write_text("only one line\n")
    with pytest.raises(DataError, match="line counts differ"):
        spm.train([src, tgt], tmp_path / "m", vocab_size=100, log=lambda _: None)
    assert not (tmp_path / "m.model").exists()
    assert leftovers(tmp_path) == []


