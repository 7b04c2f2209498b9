"""Where each recipe's data comes from: archives (URL, sha256, mirror path) and splits.

A split maps each language to the parts that are concatenated into ``<split>.<lang>``.
A part names an archive, a member inside it (a glob; ``None`` for a lone ``.gz`` or plain
file) and a format: ``plain`` (every line), ``tags`` (IWSLT ``train.tags``: metadata lines
dropped, ``<title>``/``<description>`` kept as text) or ``seg`` (the ``<seg>`` lines of an
SGML/XML test set, entities decoded). ``sha256=None`` means no checksum is recorded yet:
downloading then needs a checksum file or an explicit ``--allow-unverified``. In a mirror
folder an archive is looked up at its ``mirror_path``, by default ``<corpus>/<name>``.
"""
from __future__ import annotations

from dataclasses import dataclass, field, replace

from . import DataError


@dataclass(frozen=True)
class Archive:
    """One downloadable file."""

    name: str
    url: str
    sha256: str | None
    mirror_path: str | None = None


@dataclass(frozen=True)
class Part:
    """Lines taken from one archive member."""

    archive: str
    member: str | None = None
    fmt: str = "plain"


@dataclass(frozen=True)
class Corpus:
    """A parallel corpus: its archives and the splits built from them."""

    name: str
    src: str
    tgt: str
    archives: tuple[Archive, ...]
    splits: dict[str, dict[str, tuple[Part, ...]]]
    about: str = ""
    notes: tuple[str, ...] = field(default_factory=tuple)

    def __post_init__(self) -> None:
        filled = tuple(a if a.mirror_path else replace(a, mirror_path=f"{self.name}/{a.name}")
                       for a in self.archives)
        object.__setattr__(self, "archives", filled)

    def archive(self, name: str) -> Archive:
        """The archive called ``name``."""
        for archive in self.archives:
            if archive.name == name:
                return archive
        raise KeyError(name)


def _pair(src: str, tgt: str, **parts: tuple[Part, Part]) -> dict[str, dict[str, tuple[Part, ...]]]:
    return {split: {src: (s,), tgt: (t,)} for split, (s, t) in parts.items()}


_M30K_URL = "https://github.com/multi30k/dataset/raw/master/data/task1/raw/"
_M30K_SHA = {
    "train.de.gz": "726e39b2fa9eb9ffb6dc763fb35a179f80fae06ffc5d28b6ace5faa883de28a6",
    "train.en.gz": "d79cfa999dd4c51d2cb42499b6796d5a882c3a8a961923c25a898c90f8bbd56f",
    "val.de.gz": "f0cba2f995189cf5770f29a8a9a537a3ad3f51657ad873405082ff6863a5e75a",
    "val.en.gz": "14f7d25ddd868909a9213e361768460edcacdd6ab9d1e77b92560dc10c10dc28",
    "test_2016_flickr.de.gz": "9204244e408ccb38d2a55cfcd344df15005fc42a07a6e55ca6c52b6ababb8cc8",
    "test_2016_flickr.en.gz": "611d361c6334bc7246101d48097c13cf5c4413c5befc793cc629934359d532d9",
    "test_2017_flickr.de.gz": "a2c89666db00c495cd8513b9d708d5a3acc205d7de312ef2bf5fb7ebc1540aee",
    "test_2017_flickr.en.gz": "76a444ee25172e72695cddb13ae4a3bda59430617be88e0bb46b60504f054074",
}


def _multi30k() -> Corpus:
    archives = tuple(
        Archive(name, _M30K_URL + name, sha, f"multi30k/{name}") for name, sha in _M30K_SHA.items()
    )
    names = {"train": "train", "valid": "val",
             "test_2016_flickr": "test_2016_flickr", "test_2017_flickr": "test_2017_flickr"}
    splits = _pair("de", "en", **{
        split: (Part(f"{stem}.de.gz"), Part(f"{stem}.en.gz")) for split, stem in names.items()
    })
    return Corpus("multi30k_de_en", "de", "en", archives, splits,
                  about="Multi30k task 1 (Flickr30k captions), raw text; 29,000 training pairs.")


def _iwslt17() -> Corpus:
    tgz = "iwslt17-de-en.tgz"
    url = ("https://raw.githubusercontent.com/hlt-mt/WIT3/master/archive/"
           "2017-01-trnted/texts/de/en/de-en.tgz")
    xml = "de-en/IWSLT17.TED.{}.de-en.{}.xml"
    splits = _pair("de", "en", train=(Part(tgz, "de-en/train.tags.de-en.de", "tags"),
                                      Part(tgz, "de-en/train.tags.de-en.en", "tags")))
    for name in ["dev2010"] + [f"tst{year}" for year in range(2010, 2016)]:
        split = "valid" if name == "dev2010" else name
        splits.update(_pair("de", "en", **{split: (Part(tgz, xml.format(name, "de"), "seg"),
                                                   Part(tgz, xml.format(name, "en"), "seg"))}))
    return Corpus("iwslt17_de_en", "de", "en", (Archive(tgz, url, None),), splits,
                  about="IWSLT 2017 TED talks German-English (WIT3 2017-01-trnted release).")


def _kftt() -> Corpus:
    tgz = "kftt-data-1.0.tar.gz"
    url = "http://www.phontron.com/kftt/download/kftt-data-1.0.tar.gz"
    member = "kftt-data-1.0/data/orig/kyoto-{}.{}"
    splits = _pair("ja", "en", **{
        split: (Part(tgz, member.format(stem, "ja")), Part(tgz, member.format(stem, "en")))
        for split, stem in (("train", "train"), ("valid", "dev"), ("test", "test"))
    })
    return Corpus("kftt_ja_en", "ja", "en", (Archive(tgz, url, None),), splits,
                  about="Kyoto Free Translation Task 1.0, Japanese-English Wikipedia articles.")


def _wmt16_ro_en() -> Corpus:
    archives = (
        Archive("europarl-v7-ro-en.tgz", "http://www.statmt.org/europarl/v7/ro-en.tgz", None),
        Archive("setimes2-en-ro.txt.zip",
                "https://object.pouta.csc.fi/OPUS-SETIMES/v2/moses/en-ro.txt.zip", None),
        Archive("wmt16-dev.tgz", "http://data.statmt.org/wmt16/translation-task/dev.tgz", None),
        Archive("wmt16-test.tgz", "http://data.statmt.org/wmt16/translation-task/test.tgz", None),
    )
    train = {
        "ro": (Part("europarl-v7-ro-en.tgz", "*europarl-v7.ro-en.ro"),
               Part("setimes2-en-ro.txt.zip", "*.en-ro.ro")),
        "en": (Part("europarl-v7-ro-en.tgz", "*europarl-v7.ro-en.en"),
               Part("setimes2-en-ro.txt.zip", "*.en-ro.en")),
    }
    splits = {"train": train}
    splits.update(_pair("ro", "en", valid=(
        Part("wmt16-dev.tgz", "dev/newsdev2016-roen-src.ro.sgm", "seg"),
        Part("wmt16-dev.tgz", "dev/newsdev2016-roen-ref.en.sgm", "seg"))))
    splits.update(_pair("ro", "en", newstest2016=(
        Part("wmt16-test.tgz", "test/newstest2016-roen-src.ro.sgm", "seg"),
        Part("wmt16-test.tgz", "test/newstest2016-roen-ref.en.sgm", "seg"))))
    return Corpus("wmt16_ro_en", "ro", "en", archives, splits,
                  about="WMT16 Romanian-English: Europarl v7 + SETIMES2 (about 600k pairs), "
                        "newsdev2016, newstest2016.")


def _wmt14_en_de() -> Corpus:
    archives = (
        Archive("training-parallel-europarl-v7.tgz",
                "http://www.statmt.org/wmt13/training-parallel-europarl-v7.tgz", None),
        Archive("training-parallel-commoncrawl.tgz",
                "http://www.statmt.org/wmt13/training-parallel-commoncrawl.tgz", None),
        Archive("training-parallel-nc-v9.tgz",
                "http://www.statmt.org/wmt14/training-parallel-nc-v9.tgz", None),
        Archive("wmt14-dev.tgz", "http://www.statmt.org/wmt14/dev.tgz", None),
        Archive("wmt14-test-full.tgz", "http://www.statmt.org/wmt14/test-full.tgz", None),
    )
    sources = (("training-parallel-europarl-v7.tgz", "*europarl-v7.de-en.{}"),
               ("training-parallel-commoncrawl.tgz", "*commoncrawl.de-en.{}"),
               ("training-parallel-nc-v9.tgz", "*news-commentary-v9.de-en.{}"))
    train = {lang: tuple(Part(a, m.format(lang)) for a, m in sources) for lang in ("en", "de")}
    splits = {"train": train}
    splits.update(_pair("en", "de", valid=(Part("wmt14-dev.tgz", "dev/newstest2013.en"),
                                           Part("wmt14-dev.tgz", "dev/newstest2013.de"))))
    splits.update(_pair("en", "de", newstest2014=(
        Part("wmt14-test-full.tgz", "test-full/newstest2014-deen-src.en.sgm", "seg"),
        Part("wmt14-test-full.tgz", "test-full/newstest2014-deen-ref.de.sgm", "seg"))))
    return Corpus("wmt14_en_de", "en", "de", archives, splits,
                  about="WMT14 English-German: Europarl v7 + Common Crawl + News Commentary v9 "
                        "(about 4.5M pairs), newstest2013, newstest2014 (full, 3,003 lines).")


CORPORA: dict[str, Corpus] = {
    c.name: c for c in (_multi30k(), _iwslt17(), _kftt(), _wmt16_ro_en(), _wmt14_en_de())
}


def get_corpus(name: str) -> Corpus:
    """The registered corpus called ``name``."""
    try:
        return CORPORA[name]
    except KeyError:
        raise DataError(f"unknown corpus {name!r}; known: {', '.join(sorted(CORPORA))}") from None
