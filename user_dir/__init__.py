from sparse_seq2seq.fairseq_plugin import *  # noqa: F401,F403  registers everything with fairseq
