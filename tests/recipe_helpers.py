"""Shared pieces of the recipe tests (imported as ``recipe_helpers``: pytest puts tests/ on the
path): where the recipes and the data mirror are, a recipe run with a clean environment, and the
``sliced`` fixture, a Multi30k work folder taken through the data stages."""
from __future__ import annotations

import os
import signal
import subprocess
import sys
from pathlib import Path

import pytest

from data_prep.samples import head

REPO = Path(__file__).resolve().parents[1]
RECIPES = REPO / "recipes"
MIRROR = Path(os.environ.get("DATA_MIRROR") or REPO.parent / "shared" / "data")
if not MIRROR.is_absolute():
    MIRROR = (REPO / MIRROR).resolve()
M30K = MIRROR / "multi30k"
needs_mirror = pytest.mark.skipif(not M30K.is_dir(), reason="no Multi30k in DATA_MIRROR")

SLICE = {"train": ("train", 400), "valid": ("val", 40), "test_2016_flickr": ("test_2016_flickr", 30)}
SLICE_ARGS = ("--vocab-size", "300", "--test-sets", "test_2016_flickr")


def recipe(name: str, *args: str, env: dict | None = None, script: str = "run.sh",
           timeout: int = 300) -> subprocess.CompletedProcess:
    """Run a recipe with a clean environment (plus ``env``) and this test's Python."""
    clean = {"PATH": os.environ["PATH"], "HOME": os.environ.get("HOME", "/tmp"),
             "PYTHON_BIN": sys.executable, "DEVICE": "cpu", "NJ": "1"}
    clean.update(env or {})
    with subprocess.Popen(["bash", str(RECIPES / name / script), *args], cwd=REPO, env=clean,
                          stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
                          start_new_session=True) as proc:
        try:
            out, err = proc.communicate(timeout=timeout)
        except subprocess.TimeoutExpired:
            os.killpg(proc.pid, signal.SIGKILL)  # fairseq's processes too, not only bash
            raise
    return subprocess.CompletedProcess(proc.args, proc.returncode, out, err)


def real_lines(name: str, lang: str, count: int) -> list[str]:
    """The first ``count`` lines of the mirror's Multi30k ``name.lang.gz``."""
    return head(M30K / f"{name}.{lang}.gz", count)


@pytest.fixture(scope="module")
def sliced(tmp_path_factory) -> Path:
    """A work folder whose raw/ holds slices of Multi30k, taken through stages 2-4."""
    if not M30K.is_dir():
        pytest.skip("no Multi30k in DATA_MIRROR")
    work = tmp_path_factory.mktemp("m30k") / "w"
    (work / "raw").mkdir(parents=True)
    for split, (name, count) in SLICE.items():
        for lang in ("de", "en"):
            lines = real_lines(name, lang, count)
            (work / "raw" / f"{split}.{lang}").write_text("\n".join(lines) + "\n", encoding="utf-8")
    result = recipe("multi30k_de_en", "--stage", "2", "--stop-stage", "4", "--work-dir", str(work),
                    *SLICE_ARGS)
    assert result.returncode == 0, result.stdout + result.stderr
    work.joinpath("stages_2_4.log").write_text(result.stdout)
    return work
