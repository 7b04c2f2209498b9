"""Post-editing data: triplets (src, mt, pe) for BERT-initialised APE (Correia & Martins, ACL 2019).

- :mod:`.triplets` — the ``<prefix>.{src,mt,pe}`` files: strict reading, atomic writing, mixing, statistics;
- :mod:`.real_triplets` — MLQE-PE (downloaded) and WMT APE folders (a user's);
- :mod:`.synthetic_triplets` — jackknife folds and eSCAPE-style / round-trip triplets;
- :mod:`.wordpiece` and :mod:`.binarize` — BERT WordPiece ids for fairseq's ``ape`` task;
- :mod:`.score` — ``fairseq-generate`` output back to the triplets' tokens, TER/BLEU;
- :mod:`.table` — the results table of trained rows next to the do-nothing baseline.

Command line: ``python -m data_prep.ape --help``.
"""
