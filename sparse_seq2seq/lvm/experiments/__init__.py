"""The paper's three experiments with the estimators of :mod:`sparse_seq2seq.lvm`, and their helpers.

Correia, Niculae, Aziz & Martins, "Efficient Marginalization of Discrete and Structured Latent
Variables via Sparsity", NeurIPS 2020, §5:

* :mod:`.ssvae` — semi-supervised VAE on MNIST (§5.1);
* :mod:`.emergent` — emergent communication, a referential game (§5.2);
* :mod:`.bitvector_vae` — bit-vector VAE on Fashion-MNIST (§5.3);

with their data (:mod:`.data`: MNIST, Fashion-MNIST and the SSVAE splits from ``DATA_MIRROR`` or
upstream, checksum-verified), PCA image features (:mod:`.features`), shared run plumbing
(:mod:`.common`) and results tables and curves (:mod:`.reporting`). Each program runs as
``python -m sparse_seq2seq.lvm.experiments.<name> --help``.
"""
