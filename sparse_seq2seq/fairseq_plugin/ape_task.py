"""fairseq task ``ape``: automatic post-editing from (src, mt, pe) triplets.

As in Correia & Martins (ACL 2019), the encoder reads the source and the machine
translation as one BERT sentence pair, ``[CLS] src [SEP] mt [SEP]``, and the decoder writes
the post-edit ``pe [SEP]``. The data folder is made by ``python -m data_prep.ape
binarize``: ``<split>.{src,mt,pe}.{bin,idx}`` hold BERT WordPiece ids without special tokens
and ``vocab.txt`` is BERT's vocabulary, so dictionary index i *is* WordPiece id i and the
pre-trained embeddings load as they are. ``fairseq-generate`` prints (``D-`` lines) the
post-edits with WordPieces joined into BERT's basic tokens; ``python -m data_prep.ape
detokenize`` turns them back into the triplets' own tokenisation.

Every triplet is batched whatever ``--required-batch-size-multiple`` says (see
:mod:`.batching`).
"""
import logging
import os
from dataclasses import dataclass, field
from typing import List, Optional, Sequence

from fairseq.data import (AppendTokenDataset, ConcatSentencesDataset, Dictionary,
                          LanguagePairDataset, PrependTokenDataset, data_utils)
from fairseq.dataclass import FairseqDataclass
from fairseq.tasks import FairseqTask, register_task

logger = logging.getLogger(__name__)

VOCAB_FILE = "vocab.txt"
SIDES = ("src", "mt", "pe")
SPECIALS = {"bos": "[CLS]", "pad": "[PAD]", "eos": "[SEP]", "unk": "[UNK]"}


class WordPieceDictionary(Dictionary):
    """A fairseq dictionary whose index i is BERT WordPiece id i.

    ``[CLS]`` plays fairseq's bos, ``[SEP]`` its eos (the end of ``pe`` and of each input
    segment), ``[PAD]`` and ``[UNK]`` pad and unk.
    """

    def __init__(self, tokens: Sequence[str]):
        super().__init__(bos=SPECIALS["bos"], pad=SPECIALS["pad"], eos=SPECIALS["eos"],
                         unk=SPECIALS["unk"])
        self.symbols, self.count, self.indices = [], [], {}
        for index, token in enumerate(tokens):
            if token in self.indices:
                raise ValueError(f"WordPiece {token!r} appears twice (ids "
                                 f"{self.indices[token]} and {index})")
            self.add_symbol(token)
        missing = [t for t in SPECIALS.values() if t not in self.indices]
        if missing:
            raise ValueError(f"the vocabulary lacks BERT's special tokens {', '.join(missing)}")
        self.bos_index, self.pad_index = self.indices[SPECIALS["bos"]], self.indices[SPECIALS["pad"]]
        self.eos_index, self.unk_index = self.indices[SPECIALS["eos"]], self.indices[SPECIALS["unk"]]
        self.nspecial = 0  # BERT's special tokens are ordinary entries of its vocabulary

    @classmethod
    def load_vocab(cls, path: str) -> "WordPieceDictionary":
        """Read BERT's ``vocab.txt``: one WordPiece per line, line i = id i."""
        if not os.path.isfile(path):
            raise FileNotFoundError(f"{path}: no such file (binarise the triplets with "
                                    "`python -m data_prep.ape binarize`)")
        with open(path, "r", encoding="utf-8") as handle:
            return cls([line.rstrip("\n") for line in handle.readlines()])


class WordPieceJoiner:
    """``fairseq-generate``'s detokeniser for this task: glue ``##`` continuations."""

    @staticmethod
    def decode(text: str) -> str:
        return " ".join(text.replace(" ##", "").replace("##", "").split())


@dataclass
class ApeConfig(FairseqDataclass):
    data: Optional[str] = field(default=None, metadata={
        "help": "folder of binarised triplets (python -m data_prep.ape binarize)"})


@register_task("ape", dataclass=ApeConfig)
class ApeTask(FairseqTask):
    """Post-editing: source + MT in, post-edit out (Correia & Martins, ACL 2019)."""

    cfg: ApeConfig

    def __init__(self, cfg: ApeConfig, dictionary: WordPieceDictionary):
        super().__init__(cfg)
        self.dictionary = dictionary
        self.building_from_checkpoint = False

    @classmethod
    def setup_task(cls, cfg: ApeConfig, **kwargs) -> "ApeTask":
        if not cfg.data or not os.path.isdir(cfg.data):
            raise FileNotFoundError(f"--task ape needs the folder of binarised triplets, got {cfg.data!r}")
        dictionary = WordPieceDictionary.load_vocab(os.path.join(cfg.data, VOCAB_FILE))
        logger.info(f"WordPiece dictionary: {len(dictionary)} types")
        return cls(cfg, dictionary)

    @property
    def source_dictionary(self) -> WordPieceDictionary:
        return self.dictionary

    @property
    def target_dictionary(self) -> WordPieceDictionary:
        return self.dictionary

    def available_splits(self) -> List[str]:
        names = os.listdir(self.cfg.data)
        return sorted(n[: -len(".pe.idx")] for n in names if n.endswith(".pe.idx"))

    def load_dataset(self, split: str, epoch: int = 1, combine: bool = False, **kwargs) -> None:
        """``[CLS] src [SEP] mt [SEP]`` → ``pe [SEP]`` for the triplets of ``split``."""
        d = self.dictionary
        sides = {}
        for side in SIDES:
            path = os.path.join(self.cfg.data, f"{split}.{side}")
            dataset = data_utils.load_indexed_dataset(path, d, "mmap")
            if dataset is None:
                raise FileNotFoundError(f"{path}.{{bin,idx}}: no such split; {self.cfg.data} has "
                                        f"{', '.join(self.available_splits()) or 'none'}")
            sides[side] = dataset
        lengths = {side: len(ds) for side, ds in sides.items()}
        if len(set(lengths.values())) != 1:
            raise ValueError(f"{split}: src/mt/pe have {lengths} items")
        part_a = AppendTokenDataset(PrependTokenDataset(sides["src"], d.bos()), d.eos())
        part_b = AppendTokenDataset(sides["mt"], d.eos())
        source = ConcatSentencesDataset(part_a, part_b)
        target = AppendTokenDataset(sides["pe"], d.eos())
        self.datasets[split] = LanguagePairDataset(
            source, source.sizes, d, target, target.sizes, d, left_pad_source=False,
            left_pad_target=False, shuffle=True)
        logger.info(f"{split}: {lengths['src']} triplets")

    def build_model(self, cfg, from_checkpoint: bool = False):
        """fairseq only tells the task whether the weights will come from a checkpoint;
        the model reads ``building_from_checkpoint`` so that it skips loading BERT then."""
        self.building_from_checkpoint = from_checkpoint
        try:
            return super().build_model(cfg, from_checkpoint)
        finally:
            self.building_from_checkpoint = False

    def build_bpe(self, args) -> Optional[object]:
        """WordPieces → basic tokens for ``fairseq-generate`` (unless ``--bpe`` is given)."""
        if getattr(args, "_name", None) or getattr(args, "bpe", None):
            return super().build_bpe(args)
        return WordPieceJoiner()
