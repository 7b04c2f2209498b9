"""Packaging: the library imports and runs with its core dependencies alone, the console
scripts start, every package the set-up installs is pinned in constraints.txt at the version
installed here, the pins satisfy pyproject.toml, and a wheel builds with the extras and the
scripts in its metadata."""
from __future__ import annotations

import importlib
import importlib.metadata as md
import shlex
import shutil
import subprocess
import sys
import textwrap
import tomllib
import zipfile
from pathlib import Path

import pytest
from packaging.requirements import Requirement
from packaging.utils import canonicalize_name
from packaging.version import Version

ROOT = Path(__file__).resolve().parents[1]
PROJECT = tomllib.loads((ROOT / "pyproject.toml").read_text(encoding="utf-8"))["project"]
# Subpackages that need an extra (the library itself needs none of these).
NEEDS_AN_EXTRA = ("sparse_seq2seq.fairseq_plugin", "sparse_seq2seq.hf", "sparse_seq2seq.kernels.",
                  "sparse_seq2seq.analysis", "sparse_seq2seq.lvm.experiments")
EXTRA_MODULES = ("fairseq", "fairseq_cli", "transformers", "triton", "matplotlib", "tqdm", "sacrebleu",
                 "sentencepiece", "sacremoses", "hydra", "omegaconf", "tensorboard", "tensorboardX",
                 "entmax", "sklearn", "scipy")


def constraints() -> dict[str, Version]:
    pins = {}
    for number, line in enumerate((ROOT / "constraints.txt").read_text().splitlines(), start=1):
        line = line.split("#", 1)[0].strip()
        if line:
            req = Requirement(line)
            spec = list(req.specifier)
            assert len(spec) == 1 and spec[0].operator == "==", f"constraints.txt:{number}: not a pin"
            pins[canonicalize_name(req.name)] = Version(spec[0].version)
    return pins


def setup_requests() -> list[Requirement]:
    """The packages named by the pip commands of the Makefile's set-up rule."""
    text = (ROOT / "Makefile").read_text().replace("\\\n", " ")
    rule = text[text.index("$(STAMP):"):]
    rule = rule[:rule.index("touch $@")]
    requests = []
    for line in rule.splitlines():
        words = shlex.split(line.strip())
        if words[:1] != ["$(PIP)"]:
            continue
        words = iter(words[1:])
        for word in words:
            if word in ("-c", "-r"):
                next(words)
            elif not word.startswith("-") and word != ".":
                requests.append(Requirement(word))
    return requests


def installed_closure(requests: list[Requirement]) -> dict[str, md.Distribution]:
    """The installed distributions that ``requests`` need, directly or through others."""
    found, todo = {}, list(requests)
    while todo:
        req = todo.pop()
        if req.marker is not None and not req.marker.evaluate({"extra": ""}):
            continue
        name = canonicalize_name(req.name)
        if name in found:
            continue
        try:
            dist = md.distribution(req.name)
        except md.PackageNotFoundError:
            continue  # e.g. torchaudio, which fairseq declares and the set-up leaves out
        found[name] = dist
        todo.extend(Requirement(r) for r in dist.requires or [])
    return found


def test_library_runs_without_the_extras():
    """Every module of the library imports, and the mappings and losses run, with the
    modules of the extras made unimportable."""
    script = textwrap.dedent(f"""
        import importlib, pkgutil, sys
        BLOCKED = {EXTRA_MODULES!r}
        class Block:
            def find_spec(self, name, path=None, target=None):
                if name.split(".")[0] in BLOCKED:
                    raise ImportError(f"{{name}} is not a core dependency")
        sys.meta_path.insert(0, Block())
        import torch
        import sparse_seq2seq as ss
        names = [m.name for m in pkgutil.walk_packages(ss.__path__, "sparse_seq2seq.")
                 if not m.name.startswith({NEEDS_AN_EXTRA!r})]
        for name in names:
            importlib.import_module(name)
        x = torch.tensor([[0.1, 1.0, 0.5]])
        assert torch.allclose(ss.sparsemax(x, dim=-1), torch.tensor([[0.0, 0.75, 0.25]]))
        loss = ss.Entmax15Loss()(torch.randn(4, 5, requires_grad=True), torch.tensor([0, 1, 2, 3]))
        loss.sum().backward()
        print(len(names))
    """)
    proc = subprocess.run([sys.executable, "-c", script], capture_output=True, text=True, cwd=ROOT)
    assert proc.returncode == 0, proc.stderr[-3000:]
    assert int(proc.stdout.split()[-1]) >= 10


@pytest.mark.parametrize("script", sorted(PROJECT["scripts"]))
def test_console_scripts_start(script, capsys):
    module, function = PROJECT["scripts"][script].split(":")
    main = getattr(importlib.import_module(module), function)
    with pytest.raises(SystemExit) as done:
        main(["--help"])
    assert done.value.code == 0 and script in capsys.readouterr().out


def test_every_package_the_setup_installs_is_pinned_at_its_installed_version():
    pins = constraints()
    requests = setup_requests()
    assert {"torch", "fairseq-fixed", "transformers", "tensorboard", "triton"} <= {
        canonicalize_name(r.name) for r in requests}
    closure = installed_closure(requests)
    assert len(closure) > 40  # the requests and what they pulled in
    unpinned = sorted(set(closure) - set(pins))
    assert not unpinned, f"installed by the set-up, not in constraints.txt: {unpinned}"
    differ = {name: (str(pins[name]), d.version) for name, d in closure.items()
              if Version(d.version).public != pins[name].public}
    assert not differ, f"constraints.txt pin vs installed: {differ}"


def test_pins_satisfy_the_project_requirements():
    pins = constraints()
    extras = PROJECT["optional-dependencies"]
    assert {"fairseq", "hf", "gpu", "test"} <= set(extras)
    for text in PROJECT["dependencies"] + [r for reqs in extras.values() for r in reqs]:
        req = Requirement(text)
        if canonicalize_name(req.name) == canonicalize_name(PROJECT["name"]):
            continue  # the "all" extra
        pin = pins.get(canonicalize_name(req.name))
        assert pin is not None, f"{req.name}: not in constraints.txt"
        assert req.specifier.contains(pin, prereleases=True), f"{req}: pinned at {pin}"


@pytest.mark.slow
def test_wheel_has_the_extras_the_scripts_and_the_kernel_sources(tmp_path):
    src = tmp_path / "src"
    src.mkdir()
    for name in ("pyproject.toml", "README.md"):
        shutil.copy(ROOT / name, src / name)
    for package in ("sparse_seq2seq", "data_prep"):
        shutil.copytree(ROOT / package, src / package, ignore=shutil.ignore_patterns("__pycache__"))
    proc = subprocess.run([sys.executable, "-m", "pip", "wheel", "-q", "--no-deps", "--no-build-isolation",
                           "-w", str(tmp_path / "dist"), str(src)], capture_output=True, text=True)
    assert proc.returncode == 0, proc.stderr[-3000:]
    (wheel,) = (tmp_path / "dist").glob("sparse_seq2seq-*.whl")
    with zipfile.ZipFile(wheel) as zf:
        names = zf.namelist()
        info = next(n for n in names if n.endswith(".dist-info/METADATA")).rsplit("/", 1)[0]
        metadata = zf.read(f"{info}/METADATA").decode()
        entry_points = zf.read(f"{info}/entry_points.txt").decode()
    fields = [line.split(": ", 1) for line in metadata.split("\n\n", 1)[0].splitlines() if ": " in line]
    extras = {value for key, value in fields if key == "Provides-Extra"}
    assert {"fairseq", "hf", "gpu", "test"} <= extras
    core = [Requirement(value) for key, value in fields if key == "Requires-Dist"
            and "extra ==" not in value]
    assert {canonicalize_name(r.name) for r in core} == {"torch", "numpy", "ninja"}
    for script, target in PROJECT["scripts"].items():
        assert f"{script} = {target}" in entry_points
    for path in ("sparse_seq2seq/csrc/rowwise.cpp", "sparse_seq2seq/csrc/common.h",
                 "sparse_seq2seq/kernels/__init__.py", "data_prep/samples.py"):
        assert path in names
    assert not any(n.startswith(("tests/", "recipes/", "benchmarks/")) for n in names)
