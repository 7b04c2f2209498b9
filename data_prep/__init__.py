"""Data preparation for the sparse_seq2seq recipes.

Download (mirror or upstream, sha256-checked), corpus extraction and validation, sacremoses
normalisation and tokenisation, joint sentencepiece, and a thin ``fairseq-preprocess`` wrapper.
Every output is written to a temporary file and renamed into place, so a failed step leaves
nothing half-written. Run ``python -m data_prep --help`` for the command line.
"""


class DataError(Exception):
    """Bad or missing input data; the message names the file and, where known, the line."""
