"""WordPieces back to the triplets' tokens: BERT's basic tokenizer splits punctuation and an
uncased BERT drops case and accents; words copied from the mt (or src) get their own form
back, and a post-edit that copies the mt round-trips exactly."""
from __future__ import annotations

import os

import pytest

from data_prep.ape.wordpiece import WordPieces, join_pieces

os.environ.setdefault("HF_HUB_OFFLINE", "1")


@pytest.fixture(scope="module")
def minilm() -> WordPieces:
    from ape_helpers import minilm_path
    return WordPieces.load(minilm_path())


def test_join_pieces():
    assert join_pieces(["ge", "##wa", "##hren", ".", "##x"]) == ["gewahren", ".x"]
    assert join_pieces(["##a", "b"]) == ["a", "b"]


def test_uncased_vocabulary_loses_case_and_accents(minilm):
    assert minilm.lowercase
    assert minilm.key("Gewähren") == ("gewahren",)
    assert minilm.key("z.B.") == ("z", ".", "b", ".")


def test_copied_words_get_their_form_back(minilm):
    mt = "Der Sultan kann z.B. Begnadigungen gewähren ."
    src = "The Sultan can grant pardons , e.g. in Orlando ."
    hyp = "der sultan kann z . b . beg ##nad ##ig ##ungen ge ##wa ##hre ##n in orlando ."
    assert minilm.restore(hyp, [mt, src]) == "Der Sultan kann z.B. Begnadigungen gewähren in Orlando ."
    assert minilm.restore("neue wort", [mt, src]) == "neue wort"  # not in mt or src: as written


def test_nearest_spelling_wins(minilm):
    mt = "Die Katze sieht die Maus"
    assert minilm.restore("die katze sieht die maus", [mt]) == mt


def test_mt_comes_before_src(minilm):
    """"'s" is one token in the English src but two in the German mt: take the mt's."""
    mt = "Smith ' s Befehl"
    assert minilm.restore("smith ' s befehl", [mt, "Smith's order"]) == mt


def test_copying_the_mt_round_trips(minilm):
    for mt, src in (("Er sagte : „ Nein ! “ – und ging .", "He said no ."),
                    ("Die U.S.-Armee ( 1,000 Mann ) zog ab .", "The U.S. Army left ."),
                    ("Straße 12a in Köln", "street 12a")):
        assert minilm.round_trip(mt, [mt, src]) == mt


def test_cased_vocabulary_keeps_case(tmp_path):
    from ape_helpers import tiny_bert
    pieces = WordPieces.load(tiny_bert(tmp_path / "cased", lowercase=False))
    assert not pieces.lowercase
    assert pieces.round_trip("die katze.", ["die katze."]) == "die katze."
