"""sparse_seq2seq.download: mirror first, upstream as the fallback, a checksum always, nothing
half-written; and the latent-variable data found through it by DATA_MIRROR or arguments only."""
from __future__ import annotations

import gzip
import hashlib
import io
import struct
from pathlib import Path

import numpy as np
import pytest

from data_prep.atomic import atomic_paths
from sparse_seq2seq import download
from sparse_seq2seq.download import Checksum, DownloadError, fetch, file_digest, mirror_from_env
from sparse_seq2seq.lvm.experiments import data as lvm_data

def _quiet(_message: str) -> None:
    pass


def _sha256(payload: bytes) -> str:
    return hashlib.sha256(payload).hexdigest()


def _files(folder: Path) -> list:
    return sorted(p.name for p in folder.iterdir()) if folder.exists() else []


def test_a_mirror_file_is_copied_verified_and_the_mirror_left_alone(tmp_path):
    mirror = tmp_path / "mirror"
    (mirror / "set").mkdir(parents=True)
    (mirror / "set" / "a.gz").write_bytes(b"payload")
    before = {p: p.stat().st_mtime_ns for p in mirror.rglob("*")}
    log = []
    got = fetch("a.gz", "http://invalid.invalid/a.gz", tmp_path / "dl", mirror=mirror,
                mirror_path="set/a.gz", checksum=Checksum(_sha256(b"payload")), log=log.append)
    assert got == tmp_path / "dl" / "a.gz" and got.read_bytes() == b"payload"
    assert log == [f"a.gz: copying from mirror {mirror / 'set' / 'a.gz'}", "a.gz: sha256 ok"]
    assert {p: p.stat().st_mtime_ns for p in mirror.rglob("*")} == before
    in_place = fetch("a.gz", "http://invalid.invalid/a.gz", tmp_path / "other", mirror=mirror,
                     mirror_path="set/a.gz", checksum=Checksum(_sha256(b"payload")), in_place=True)
    assert in_place == mirror / "set" / "a.gz" and not (tmp_path / "other").exists()


@pytest.mark.parametrize("in_place", (False, True))
def test_a_checksum_mismatch_names_the_file_and_leaves_nothing(tmp_path, in_place):
    mirror = tmp_path / "mirror"
    mirror.mkdir()
    (mirror / "a.gz").write_bytes(b"tampered")
    with pytest.raises(DownloadError) as caught:
        fetch("a.gz", "http://invalid.invalid/a.gz", tmp_path / "dl", mirror=mirror, mirror_path="a.gz",
              checksum=Checksum("0" * 64), in_place=in_place, log=_quiet)
    assert str(caught.value) == (f"{mirror / 'a.gz'}: sha256 mismatch for a.gz: expected {'0' * 64}, "
                                 f"got {_sha256(b'tampered')}")
    assert _files(tmp_path / "dl") == []


def test_the_upstream_url_is_the_fallback_and_is_logged(tmp_path):
    source = tmp_path / "upstream.tgz"
    source.write_bytes(b"from upstream")
    log = []
    got = fetch("up.tgz", source.as_uri(), tmp_path / "dl", mirror=tmp_path / "empty_mirror",
                mirror_path="c/up.tgz", checksum=Checksum(_sha256(b"from upstream")), log=log.append)
    assert got.read_bytes() == b"from upstream"
    assert log[:2] == [f"up.tgz: not in mirror {tmp_path / 'empty_mirror'}; downloading",
                       f"up.tgz: downloading {source.as_uri()}"]
    with pytest.raises(DownloadError, match=rf"^{source.as_uri()}: sha256 mismatch for up2\.tgz"):
        fetch("up2.tgz", source.as_uri(), tmp_path / "dl", checksum=Checksum("1" * 64), log=_quiet)
    assert _files(tmp_path / "dl") == ["up.tgz"]


def test_a_failed_or_interrupted_download_leaves_nothing(tmp_path, monkeypatch):
    with pytest.raises(DownloadError, match=r"^file:///nonexistent/x\.gz: download failed: "):
        fetch("x.gz", "file:///nonexistent/x.gz", tmp_path / "dl", checksum=Checksum("0" * 64), log=_quiet)

    class Broken(io.BytesIO):
        headers: dict = {}

        def read(self, size=-1):
            if self.tell() >= 3:
                raise ConnectionResetError("reset by peer")
            return super().read(3)

    monkeypatch.setattr(download.urllib.request, "urlopen", lambda url, timeout: Broken(b"abcdef"))
    with pytest.raises(DownloadError, match="reset by peer"):
        fetch("x.gz", "https://example.org/x.gz", tmp_path / "dl", checksum=Checksum("0" * 64), log=_quiet)
    assert _files(tmp_path / "dl") == []


@pytest.mark.parametrize("name", ("a.gz", "a.gz.partial", ".a.gz.partial"))
def test_the_temporary_name_ends_in_partial_once_as_data_prep_names_it(tmp_path, monkeypatch, name):
    """While a download runs, its bytes are in one temporary file beside the target, named as
    data_prep.atomic names its own (``.a.gz.<random>.partial`` for all three targets)."""
    dest = tmp_path / "dl"
    seen = []

    class Watched(io.BytesIO):
        headers: dict = {}

        def read(self, size=-1):
            seen.append(_files(dest))
            return super().read(size)

    monkeypatch.setattr(download.urllib.request, "urlopen", lambda url, timeout: Watched(b"abc"))
    got = fetch(name, "https://example.org/a.gz", dest, checksum=Checksum(_sha256(b"abc")), log=_quiet)
    assert got == dest / name and got.read_bytes() == b"abc" and _files(dest) == [name]
    (temp,) = seen[0]
    assert temp.startswith(".a.gz.") and temp.endswith(".partial") and temp.count(".partial") == 1
    assert "." not in temp[len(".a.gz."):-len(".partial")]
    with atomic_paths(dest / name) as (atomic_temp,):
        assert atomic_temp.parent == dest
        assert atomic_temp.name[:len(".a.gz.")] == temp[:len(".a.gz.")]
        assert atomic_temp.name.count(".partial") == 1 and atomic_temp.name.endswith(".partial")


def test_a_present_good_copy_is_kept_and_a_bad_one_replaced(tmp_path):
    source = tmp_path / "src.bin"
    source.write_bytes(b"good")
    (tmp_path / "dl").mkdir()
    (tmp_path / "dl" / "f.bin").write_bytes(b"stale")
    log = []
    fetch("f.bin", source.as_uri(), tmp_path / "dl", checksum=Checksum(_sha256(b"good")), log=log.append)
    assert (tmp_path / "dl" / "f.bin").read_bytes() == b"good" and "downloading" in log[0]
    log.clear()
    fetch("f.bin", "http://invalid.invalid/f", tmp_path / "dl", checksum=Checksum(_sha256(b"good")),
          log=log.append)
    assert log == ["f.bin: present, sha256 ok"]


def test_no_checksum_needs_an_explicit_choice_and_then_prints_the_digest(tmp_path):
    source = tmp_path / "x.tgz"
    source.write_bytes(b"data")
    with pytest.raises(DownloadError, match=r"^x\.tgz: no checksum recorded for file://"):
        fetch("x.tgz", source.as_uri(), tmp_path / "dl", log=_quiet)
    assert not (tmp_path / "dl").exists()
    log = []
    fetch("x.tgz", source.as_uri(), tmp_path / "dl", allow_unverified=True, log=log.append)
    assert log[-1].endswith(f"\n{_sha256(b'data')}  x.tgz") and "NOT VERIFIED" in log[-1]


def test_the_mirror_is_never_written(tmp_path):
    with pytest.raises(DownloadError, match="read-only"):
        fetch("a", "http://invalid.invalid/a", tmp_path / "m" / "dl", mirror=tmp_path / "m",
              checksum=Checksum("0" * 64))


def test_decompressed_digests_survive_recompression_and_name_a_truncated_file(tmp_path):
    raw = bytes(range(256)) * 50
    once, twice = tmp_path / "a.gz", tmp_path / "b.gz"
    once.write_bytes(gzip.compress(raw, compresslevel=1))
    twice.write_bytes(gzip.compress(raw, compresslevel=9, mtime=0))
    assert once.read_bytes() != twice.read_bytes()
    md5 = hashlib.md5(raw).hexdigest()
    assert file_digest(once, "md5", decompressed=True) == file_digest(twice, "md5", decompressed=True) == md5
    download.verify(twice, Checksum(md5, "md5", decompressed=True))
    with pytest.raises(DownloadError, match=r"a\.gz: md5 of the decompressed bytes mismatch for a\.gz"):
        download.verify(once, Checksum("0" * 32, "md5", decompressed=True))
    truncated = tmp_path / "t.gz"
    truncated.write_bytes(once.read_bytes()[:-20])
    with pytest.raises(DownloadError, match=rf"^{truncated}: not a complete gzip file"):
        download.verify(truncated, Checksum(md5, "md5", decompressed=True))


def test_checksum_files_are_parsed_and_a_bad_line_named(tmp_path):
    sums = tmp_path / "SUMS"
    sums.write_text(f"# comment\n{'A' * 64}  ./dir/x.tgz\n{'b' * 64} *y.gz\n")
    assert download.read_checksums(sums) == {"x.tgz": "a" * 64, "y.gz": "b" * 64}
    sums.write_text("# comment\nabc  file\n")
    with pytest.raises(DownloadError, match=r"SUMS:2: expected"):
        download.read_checksums(sums)


# --- the latent-variable data: DATA_MIRROR or arguments, never the checkout's neighbours ----

def test_the_mirror_comes_from_data_mirror_only(tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    monkeypatch.setenv("DATA_MIRROR", "relative/mirror")
    assert mirror_from_env() == lvm_data.data_root() == tmp_path / "relative" / "mirror"
    monkeypatch.delenv("DATA_MIRROR")
    assert mirror_from_env() is None and lvm_data.data_root() is None
    monkeypatch.setenv("DATA_MIRROR", "")
    assert lvm_data.data_root() is None


def _idx(values: list) -> bytes:
    return b"\x00\x00\x08\x01" + struct.pack(">I", len(values)) + bytes(values)


def test_idx_files_without_a_mirror_come_from_the_recorded_upstream(tmp_path, monkeypatch):
    """Every file of the data set is fetched from its recorded upstream address into the cache,
    checked by the md5 of the decompressed bytes, and read from the cache the next time."""
    raw = _idx([4, 5, 6])
    md5 = hashlib.md5(raw).hexdigest()
    monkeypatch.setitem(lvm_data.DECOMPRESSED_MD5, "mnist", {name: md5 for name in lvm_data.IDX_FILES})
    requested = []

    def urlopen(url, timeout):
        requested.append(url)
        response = io.BytesIO(gzip.compress(raw))
        response.headers = {}
        return response

    monkeypatch.setattr(download.urllib.request, "urlopen", urlopen)
    arrays = lvm_data.load_idx_dataset("mnist", mirror=tmp_path / "no_mirror", cache=tmp_path / "cache")
    assert [a.tolist() for a in arrays] == [[4, 5, 6]] * 4
    assert requested == [f"https://ossci-datasets.s3.amazonaws.com/mnist/{name}.gz"
                         for name in lvm_data.IDX_FILES]
    assert _files(tmp_path / "cache" / "mnist") == sorted(f"{n}.gz" for n in lvm_data.IDX_FILES)
    lvm_data.load_idx_dataset("mnist", mirror=tmp_path / "no_mirror", cache=tmp_path / "cache")
    assert len(requested) == 4
    for dataset in ("mnist", "fashion-mnist"):
        for name in lvm_data.IDX_FILES:
            assert lvm_data.upstream_url(dataset, name + ".gz").endswith(f"/{name}.gz")
    assert lvm_data.upstream_url("ssvae-splits", "labeled_train_indx.npy").startswith(
        "https://raw.githubusercontent.com/deep-spin/sparse-marginalization-lvm/")


def test_a_corrupt_split_file_in_the_mirror_is_named(tmp_path):
    folder = tmp_path / "ssvae-splits"
    folder.mkdir()
    for name in lvm_data.SPLIT_SHA256:
        np.save(folder / name, np.arange(3))
    with pytest.raises(ValueError, match=rf"{folder / 'labeled_train_indx.npy'}: sha256 mismatch"):
        lvm_data.load_ssvae_splits(mirror=tmp_path)
    splits = lvm_data.load_ssvae_splits(verify=False, mirror=tmp_path)
    assert {k: v.tolist() for k, v in splits.items()} == {k: [0, 1, 2] for k in ("labeled", "unlabeled",
                                                                                 "validation")}
