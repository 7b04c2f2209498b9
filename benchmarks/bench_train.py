"""Training and beam-search speed of softmax, 1.5-entmax and α-entmax attention, in one run.

Four models with the same sizes, dropout, optimiser and criterion (label-smoothed cross-entropy
unless ``--criterion entmax_loss``): fairseq's own ``transformer`` (its softmax attention, the
baseline users compare against) and three ``entmax_transformer`` models that differ only in the
normaliser of every attention (``--encoder-attn-normalizer``, ``--decoder-self-attn-normalizer``,
``--decoder-cross-attn-normalizer``): softmax, entmax15, alpha_entmax. The ratios are given
against both softmax rows; the targets use ours on the CPU (where both run the same unfused
attention) and fairseq's on CUDA (where ours runs the fused kernels and fairseq's runs PyTorch's
fused softmax attention).

    python benchmarks/bench_train.py                  # CPU, 2 torch threads
    python benchmarks/bench_train.py --device cuda    # iwslt_de_en arch, larger batches
    python benchmarks/bench_train.py --json out.json --repeats 7
    python benchmarks/bench_train.py --quick          # a smoke run (tiny slice, few repeats)
    python benchmarks/bench_train.py --criterion entmax_loss -- --encoder-layers 3  # more flags

Data: the first ``--train-sentences`` pairs of Multi30k de→en train and the first
``--beam-sentences`` of val, read from ``$DATA_MIRROR/multi30k`` (default
``/work/shared/data/multi30k``), lowercased, split into words and punctuation by a regular
expression (no subword model) and binarised by ``fairseq-preprocess --joined-dictionary`` in a
temporary folder.

Everything is timed in this process (no CLI start-up): training is ``Trainer.train_step``
(forward, backward, optimizer step) over a fixed list of real batches; beam search is
``SequenceGenerator`` (beam 5) over a fixed list of sentences. The models are barely trained,
so where they would emit end-of-sentence is arbitrary: every hypothesis is decoded to the same
length (``--beam-len``, default the mean reference length) so that the settings do the
same number of decoder steps. Words are target tokens with end-of-sentence (fairseq's
``ntokens``, as in its ``wps``). Within a repeat the settings take turns batch by batch in a
rotating order, and the table reports medians over repeats, so that load from other processes
hits all of them alike.
"""
from __future__ import annotations

import argparse
import json
import logging
import os
import platform
import statistics
import sys
import tempfile
import time
import warnings
from pathlib import Path
from typing import Dict, List

import torch

from data_prep import DataError
from data_prep.samples import write_multi30k_sample

ROOT = Path(__file__).resolve().parents[1]
SETTINGS = ("fairseq", "softmax", "entmax15", "alpha_entmax")
LABELS = {"fairseq": "fairseq softmax", "softmax": "softmax", "entmax15": "1.5-entmax",
          "alpha_entmax": "alpha-entmax"}
# (kind, setting, baseline, limit) per device: throughput of setting / baseline >= limit
TARGETS = {
    "cpu": (("train", "alpha_entmax", "softmax", 0.8), ("train", "entmax15", "softmax", 0.9),
            ("beam", "alpha_entmax", "softmax", 0.8), ("beam", "entmax15", "softmax", 0.8)),
    "cuda": (("train", "alpha_entmax", "fairseq", 0.95), ("train", "entmax15", "fairseq", 0.95),
             ("beam", "alpha_entmax", "fairseq", 0.9), ("beam", "entmax15", "fairseq", 0.9)),
}
# the ratio columns of each baseline: ``train_ratio{suffix}``, ``beam_ratio{suffix}_paired``, ...
BASELINES = {"softmax": "", "fairseq": "_fairseq"}
# what the fairseq baseline takes from the entmax arch
SIZES = ("encoder_embed_dim", "encoder_ffn_embed_dim", "encoder_layers", "encoder_attention_heads",
         "decoder_embed_dim", "decoder_ffn_embed_dim", "decoder_layers", "decoder_attention_heads")


# -- data ----------------------------------------------------------------------------------
def binarise(data_dir: Path, work: Path, n_train: int, n_beam: int) -> Path:
    """Binarise the slices with fairseq-preprocess; returns the data-bin folder."""
    try:
        write_multi30k_sample(data_dir, work, {"train": n_train, "valid": n_beam})
    except DataError as err:
        raise DataError(f"{err} (set DATA_MIRROR or --data-dir)") from None
    from fairseq import options
    from fairseq_cli import preprocess

    dest = work / "bin"
    parser = options.get_preprocessing_parser()
    preprocess.main(parser.parse_args([
        "--source-lang", "de", "--target-lang", "en", "--trainpref", str(work / "train"),
        "--validpref", str(work / "valid"), "--destdir", str(dest), "--joined-dictionary",
        "--workers", "1"]))
    return dest


# -- models ----------------------------------------------------------------------------------
def arch_sizes(arch: str) -> Dict[str, int]:
    """The model sizes a registered fairseq arch sets."""
    from fairseq.models import ARCH_CONFIG_REGISTRY

    import sparse_seq2seq.fairseq_plugin  # noqa: F401  registers the entmax archs

    if arch not in ARCH_CONFIG_REGISTRY:
        raise ValueError(f"--arch {arch}: not a registered fairseq arch")
    args = argparse.Namespace()
    ARCH_CONFIG_REGISTRY[arch](args)
    return {name: getattr(args, name) for name in SIZES}


def fairseq_arch(arch: str) -> List[str]:
    """fairseq's own transformer with the sizes of the ``entmax_transformer*`` ``arch``: its
    namesake without ``entmax_`` where that has the same sizes, else ``transformer`` with them."""
    from fairseq.models import ARCH_MODEL_REGISTRY

    sizes, namesake = arch_sizes(arch), arch[len("entmax_"):]
    if (ARCH_MODEL_REGISTRY.get(namesake) is ARCH_MODEL_REGISTRY["transformer"]
            and arch_sizes(namesake) == sizes):
        return ["--arch", namesake]
    flags = [[f"--{name.replace('_', '-')}", str(value)] for name, value in sizes.items()]
    return ["--arch", "transformer"] + sum(flags, [])


def train_args(bin_dir: Path, normalizer: str, opts: argparse.Namespace) -> List[str]:
    """fairseq-train flags of one setting; only the arch ("fairseq") or the normaliser flags vary."""
    arch = fairseq_arch(opts.arch) if normalizer == "fairseq" else ["--arch", opts.arch]
    args = [str(bin_dir), "--user-dir", str(ROOT / "user_dir"), "--task", "translation",
            "--source-lang", "de", "--target-lang", "en", *arch,
            "--share-all-embeddings", "--dropout", "0.1", "--optimizer", "adam",
            "--adam-betas", "(0.9, 0.98)", "--lr", "1e-3", "--clip-norm", "0.0",
            "--max-tokens", str(opts.max_tokens), "--seed", "1",
            "--criterion", opts.criterion, "--num-workers", "0"]
    if getattr(opts, "device", "cpu") == "cpu":
        args += ["--cpu"]
    if opts.criterion == "label_smoothed_cross_entropy":
        args += ["--label-smoothing", "0.1"]
    if getattr(opts, "fp16", False):
        args += ["--fp16"]
    if normalizer != "fairseq":
        for flag in ("--encoder-attn-normalizer", "--decoder-self-attn-normalizer",
                     "--decoder-cross-attn-normalizer"):
            args += [flag, normalizer]
    return args + opts.extra


def _sync() -> None:
    """Wait for the GPU (if one is in use) so that wall-clock times include its work."""
    if torch.cuda.is_available() and torch.cuda.is_initialized():
        torch.cuda.synchronize()


class Setting:
    """One model with its task, criterion, trainer and beam-search generator."""

    def __init__(self, normalizer: str, bin_dir: Path, opts: argparse.Namespace):
        from fairseq import options, tasks, utils
        from fairseq.dataclass.utils import convert_namespace_to_omegaconf
        from fairseq.sequence_generator import SequenceGenerator
        from fairseq.trainer import Trainer

        parser = options.get_training_parser()
        args = options.parse_args_and_arch(parser, train_args(bin_dir, normalizer, opts))
        cfg = convert_namespace_to_omegaconf(args)
        utils.import_user_module(cfg.common)
        utils.set_torch_seed(1)
        self.name = normalizer
        self.task = tasks.setup_task(cfg.task)
        for split in ("train", "valid"):
            self.task.load_dataset(split)
        self.model = self.task.build_model(cfg.model)
        self.parameters = sum(p.numel() for p in self.model.parameters())
        self.trainer = Trainer(cfg, self.task, self.model, self.task.build_criterion(cfg.criterion))
        self.max_positions = utils.resolve_max_positions(self.task.max_positions(),
                                                         self.model.max_positions())
        self.generator = SequenceGenerator([self.model], self.task.target_dictionary,
                                           beam_size=opts.beam, max_len_a=0, max_len_b=opts.beam_len,
                                           min_len=opts.beam_len)

    def train_step(self, sample: dict) -> float:
        """Seconds for one training step (forward, backward, optimizer step) on ``sample``."""
        start = time.perf_counter()
        self.trainer.train_step([sample])
        _sync()
        return time.perf_counter() - start

    def beam_step(self, sample: dict) -> float:
        """Seconds to beam-search the sentences of ``sample``."""
        self.model.eval()
        if torch.cuda.is_available() and next(self.model.parameters()).is_cuda:
            from fairseq import utils
            sample = utils.move_to_cuda(sample)
        with torch.no_grad():
            start = time.perf_counter()
            self.generator.generate([self.model], sample)
            _sync()
            elapsed = time.perf_counter() - start
        self.model.train()
        return elapsed


def fixed_batches(setting: Setting, split: str, max_tokens: int, max_sentences, count: int) -> List[dict]:
    """The first ``count`` batches of ``split`` (shuffled with a fixed seed)."""
    itr = setting.task.get_batch_iterator(
        dataset=setting.task.dataset(split), max_tokens=max_tokens, max_sentences=max_sentences,
        max_positions=setting.max_positions, seed=1, num_workers=0,
        ignore_invalid_inputs=True).next_epoch_itr(shuffle=split == "train")
    batches = []
    for sample in itr:
        batches.append(sample)
        if len(batches) == count:
            break
    return batches


# -- measurement -------------------------------------------------------------------------------
def measure(settings: Dict[str, Setting], train_batches, beam_batches, repeats: int,
            warmup: int) -> Dict[str, Dict[str, List[float]]]:
    """Seconds per pass over the batches, for every setting and repeat.

    The settings take turns batch by batch, in an order that rotates, so that a burst of load
    from other processes slows all of them alike; a pass is the sum of its batches.
    """
    names = list(settings)
    times = {name: {"train": [], "beam": []} for name in names}
    for r in range(-warmup, repeats):
        for kind, batches in (("train", train_batches), ("beam", beam_batches)):
            spent = dict.fromkeys(names, 0.0)
            for i, sample in enumerate(batches):
                shift = (r + i) % len(names)
                for name in names[shift:] + names[:shift]:
                    setting = settings[name]
                    step = setting.train_step if kind == "train" else setting.beam_step
                    spent[name] += step(sample)
            for name in names:
                if r >= 0:
                    times[name][kind].append(spent[name])
            print(f"  {'warm-up' if r < 0 else f'repeat {r + 1}'}: {kind:5s} "
                  + "  ".join(f"{LABELS[n]} {spent[n]:.3f} s" for n in names), file=sys.stderr, flush=True)
    return times


def summarise(times, train_words: int, beam_sentences: int) -> List[dict]:
    """Median throughput per setting and its ratios to ours and (if present) fairseq's softmax.

    ``train_ratio`` / ``beam_ratio`` are against ours, ``*_ratio_fairseq`` against fairseq's;
    ``*_paired`` is the median over repeats of the ratio within one repeat.
    """
    rows = []
    for name, t in times.items():
        rows.append({"setting": LABELS[name], "normalizer": name,
                     "train_s_median": statistics.median(t["train"]),
                     "beam_s_median": statistics.median(t["beam"]),
                     "train_s_all": t["train"], "beam_s_all": t["beam"]})
    for row in rows:
        row["train_words_per_s"] = train_words / row["train_s_median"]
        row["beam_sentences_per_s"] = beam_sentences / row["beam_s_median"]
    by_name = {r["normalizer"]: r for r in rows}
    for base_name, suffix in BASELINES.items():
        base = by_name.get(base_name)
        if base is None:
            continue
        for row in rows:
            for kind in ("train", "beam"):
                row[f"{kind}_ratio{suffix}"] = base[f"{kind}_s_median"] / row[f"{kind}_s_median"]
                pairs = zip(base[f"{kind}_s_all"], row[f"{kind}_s_all"])  # one repeat side by side
                row[f"{kind}_ratio{suffix}_paired"] = statistics.median(b / t for b, t in pairs)
    return rows


def check_targets(rows: List[dict], device: str = "cpu") -> List[dict]:
    """Throughput ratios against the targets of the project on ``device`` ("cpu" or "cuda")."""
    by_name = {r["normalizer"]: r for r in rows}
    checks = []
    for kind, name, base, limit in TARGETS[device]:
        if name not in by_name or base not in by_name:
            continue
        value = by_name[name][f"{kind}_ratio{BASELINES[base]}"]
        what = "training words/s" if kind == "train" else "beam-search sentences/s"
        checks.append({"target": f"{LABELS[name]} {what} / {LABELS[base]}", "value": value,
                       "op": ">=", "limit": limit, "passed": bool(value >= limit)})
    return checks


def print_report(rows: List[dict], checks: List[dict], info: dict) -> None:
    print(f"# {info['device']} | torch {info['torch']} | fairseq {info['fairseq']} | "
          f"threads {info['threads']} | arch {info['arch']} | criterion {info['criterion']}"
          + (" | fp16" if info.get("fp16") else "") + (" | QUICK (smoke run)" if info["quick"] else ""))
    print(f"# train: {info['train_batches']} batches, {info['train_words']} target tokens, "
          f"max-tokens {info['max_tokens']}; beam {info['beam']}: {info['beam_sentences']} "
          f"sentences, {info['beam_len']} steps each; vocab {info['vocab']}; "
          f"median of {info['repeats']} interleaved repeats after {info['warmup']} warm-up")
    print(f"# {info['cores']} cores; 1-minute load average {info['load_average_1min'][0]:.1f} at the "
          f"start, {info['load_average_1min'][1]:.1f} at the end (other processes slow all settings)")
    def ratios(r: dict, kind: str) -> tuple:
        return tuple(f"{r[f'{kind}_ratio{sfx}']:.2f} ({r[f'{kind}_ratio{sfx}_paired']:.2f})"
                     if f"{kind}_ratio{sfx}" in r else "-" for sfx in BASELINES.values())

    head = ("setting", "parameters", "train words/s", "x softmax", "x fairseq", "beam sent/s",
            "x softmax", "x fairseq")
    lines = [head] + [(r["setting"], f"{r.get('parameters', 0):,}", f"{r['train_words_per_s']:.0f}",
                       *ratios(r, "train"), f"{r['beam_sentences_per_s']:.1f}", *ratios(r, "beam"))
                      for r in rows]
    widths = [max(len(line[i]) for line in lines) for i in range(len(head))]
    for i, line in enumerate(lines):
        print("| " + " | ".join(c.ljust(w) for c, w in zip(line, widths)) + " |")
        if i == 0:
            print("|" + "|".join("-" * (w + 2) for w in widths) + "|")
    print("# x softmax: throughput / ours with softmax; x fairseq: / fairseq's own transformer; "
          "ratio of the medians (the verdicts use it), in brackets the median over repeats of the "
          "ratio within one repeat")
    print()
    if info["quick"]:
        print("# quick run: tiny slice and few repeats, so the verdicts below do not speak for the targets")
    for c in checks:
        print(f"{'PASS' if c['passed'] else 'FAIL'}  {c['target']}: {c['value']:.3f} {c['op']} {c['limit']:g}")


def quiet() -> None:
    """Only warnings from fairseq, hydra and torch's compiler: the timings go to stderr."""
    warnings.filterwarnings("ignore")
    logging.getLogger().setLevel(logging.WARNING)
    for name in ("fairseq", "fairseq_cli", "hydra", "filelock", "torch"):
        logging.getLogger(name).setLevel(logging.WARNING)


def parse_args(argv=None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    mirror = Path(os.environ.get("DATA_MIRROR", "/work/shared/data")) / "multi30k"
    parser.add_argument("--data-dir", type=Path, default=mirror, help=f"Multi30k folder (default {mirror})")
    parser.add_argument("--arch", default=None, help="entmax_transformer* arch (default: "
                        "entmax_transformer_tiny on cpu, entmax_transformer_iwslt_de_en on cuda)")
    parser.add_argument("--criterion", default="label_smoothed_cross_entropy",
                        choices=["label_smoothed_cross_entropy", "entmax_loss"])
    parser.add_argument("--threads", type=int, default=2, help="torch CPU threads (default 2)")
    parser.add_argument("--train-sentences", type=int, default=3000, help="size of the train slice")
    parser.add_argument("--train-batches", type=int, default=8, help="batches per training pass")
    parser.add_argument("--max-tokens", type=int, default=None,
                        help="tokens per training batch (default 2000 on cpu, 4096 on cuda)")
    parser.add_argument("--beam", type=int, default=5)
    parser.add_argument("--beam-sentences", type=int, default=None,
                        help="sentences per beam-search pass (default 64 on cpu, 128 on cuda)")
    parser.add_argument("--beam-batch-size", type=int, default=None, help="default 32 on cpu, 64 on cuda")
    parser.add_argument("--beam-len", type=int, default=None,
                        help="decoder steps per hypothesis (default: mean reference length)")
    parser.add_argument("--repeats", type=int, default=5)
    parser.add_argument("--warmup", type=int, default=1, help="untimed passes first")
    parser.add_argument("--json", metavar="FILE", help="write results and targets as JSON")
    parser.add_argument("--device", default="cpu", choices=["cpu", "cuda"],
                        help="cuda: fairseq trains and decodes on the GPU (no --cpu)")
    parser.add_argument("--fp16", action="store_true", help="fairseq's --fp16 for all settings (cuda only)")
    parser.add_argument("--quick", action="store_true", help="tiny slice, few repeats (smoke run)")
    parser.add_argument("--strict", action="store_true", help="exit 1 when a target fails")
    parser.add_argument("extra", nargs="*", help="more fairseq-train flags, after --, for all settings")
    opts = parser.parse_args(argv)
    if opts.device == "cuda" and not torch.cuda.is_available():
        parser.error("--device cuda: no GPU present")
    if opts.fp16 and opts.device != "cuda":
        parser.error("--fp16 needs --device cuda")
    cuda = opts.device == "cuda"
    for name, cpu_default, cuda_default in (("arch", "entmax_transformer_tiny", "entmax_transformer_iwslt_de_en"),
                                            ("max_tokens", 2000, 4096), ("beam_sentences", 64, 128),
                                            ("beam_batch_size", 32, 64)):
        if getattr(opts, name) is None:
            setattr(opts, name, cuda_default if cuda else cpu_default)
    if not opts.arch.startswith("entmax_transformer"):
        parser.error(f"--arch {opts.arch}: expected an entmax_transformer* arch (the fairseq "
                     "baseline takes its sizes)")
    if opts.quick:
        opts.train_sentences, opts.train_batches, opts.max_tokens = 200, 2, 200
        opts.beam_sentences, opts.beam_batch_size, opts.repeats, opts.warmup = 6, 6, 2, 1
        opts.beam_len = opts.beam_len or 5
    return opts


def main(argv=None) -> int:
    opts = parse_args(argv)
    torch.set_num_threads(opts.threads)
    import fairseq

    quiet()

    load_start = os.getloadavg()[0]
    with tempfile.TemporaryDirectory(prefix="bench_train_") as tmp:
        print(f"# binarising {opts.train_sentences} train / {opts.beam_sentences} val sentences",
              file=sys.stderr, flush=True)
        bin_dir = binarise(opts.data_dir, Path(tmp), opts.train_sentences, opts.beam_sentences)
        if opts.beam_len is None:
            with open(Path(tmp) / "valid.en", encoding="utf-8") as fh:
                lengths = [len(line.split()) + 1 for line in fh]
            opts.beam_len = round(statistics.mean(lengths))
        settings = {name: Setting(name, bin_dir, opts) for name in SETTINGS}
        first = settings["softmax"]
        train_batches = fixed_batches(first, "train", opts.max_tokens, None, opts.train_batches)
        beam_batches = fixed_batches(first, "valid", None, opts.beam_batch_size, 10 ** 9)
        vocab = len(first.task.target_dictionary)
    quiet()  # building the settings set up fairseq's and hydra's logging again
    train_words = sum(int(b["ntokens"]) for b in train_batches)
    beam_sentences = sum(int(b["nsentences"]) for b in beam_batches)
    times = measure(settings, train_batches, beam_batches, opts.repeats, opts.warmup)
    rows = summarise(times, train_words, beam_sentences)
    for row in rows:
        row["parameters"] = settings[row["normalizer"]].parameters
    checks = check_targets(rows, opts.device)
    device = (f"cuda: {torch.cuda.get_device_name()}" if opts.device == "cuda"
              else f"cpu: {platform.processor() or platform.machine()}")
    info = {"device": device, "torch": torch.__version__,
            "fairseq": fairseq.__version__, "threads": torch.get_num_threads(), "arch": opts.arch,
            "criterion": opts.criterion, "fp16": opts.fp16, "quick": opts.quick,
            "train_batches": len(train_batches),
            "train_words": train_words, "max_tokens": opts.max_tokens, "beam": opts.beam,
            "beam_sentences": beam_sentences, "beam_len": opts.beam_len, "vocab": vocab,
            "repeats": opts.repeats, "warmup": opts.warmup, "cores": os.cpu_count(),
            "load_average_1min": [load_start, os.getloadavg()[0]], "train_sentences": opts.train_sentences,
            "data": "Multi30k de-en, lowercased, words and punctuation split by a regex, "
                    "fairseq-preprocess --joined-dictionary",
            "timing": "wall clock in-process; train = Trainer.train_step per batch, beam = "
                      "SequenceGenerator.generate; median over interleaved repeats"}
    print_report(rows, checks, info)
    if opts.json:
        with open(opts.json, "w", encoding="utf-8") as fh:
            json.dump({**info, "rows": rows, "targets": checks}, fh, indent=2)
    return 1 if opts.strict and not all(c["passed"] for c in checks) else 0


if __name__ == "__main__":
    sys.exit(main())
