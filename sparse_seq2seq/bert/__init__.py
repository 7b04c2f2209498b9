"""BERT as encoder and decoder of a post-editing model (Correia & Martins, ACL 2019).

Plain PyTorch: :class:`BertEncoder` reads ``[CLS] src [SEP] mt [SEP]`` as a sentence pair,
:class:`BertDecoder` is BERT with a causal mask and a context attention, and every attention
is :class:`sparse_seq2seq.attention.SparseMultiheadAttention`, so softmax, sparsemax,
1.5-entmax or α-entmax can be used throughout. ``checkpoint`` loads Hugging Face BERT
weights (it imports ``transformers`` only when called); ``sharing`` ties encoder and
decoder parameters as in the paper's ablation.
"""
from .config import BertSizes
from .decoder import BertDecoder, causal_mask
from .encoder import BertEncoder, pair_segments_and_positions
from .layers import BertDecoderLayer, BertEmbeddings, BertEncoderLayer, init_bert_weights

__all__ = ["BertSizes", "BertEncoder", "BertDecoder", "BertEmbeddings", "BertEncoderLayer",
           "BertDecoderLayer", "causal_mask", "init_bert_weights", "pair_segments_and_positions"]
