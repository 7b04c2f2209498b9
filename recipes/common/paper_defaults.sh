# Training set-up of the adaptively sparse transformer paper (Correia, Niculae & Martins,
# EMNLP 2019), as defaults for the IWSLT17, KFTT, WMT16 and WMT14 recipes. Source it before
# options.sh; every value stays overridable (--name value or NAME in the environment).
#   - Transformer base: 6+6 layers, 8 heads in every attention, model size 512, FFN 2048.
#   - alpha-entmax in the encoder self-attention, decoder self-attention and context
#     attention, one alpha per head, initialised at random.
#   - 8,192 tokens per batch; learning rate warmed up linearly for 20k updates, then
#     decayed with the inverse square root of the update number. The peak 6.25e-4 is
#     2 * 512^-0.5 * 20000^-0.5, the Noam schedule with factor 2 of the OpenNMT-py base
#     set-up the paper trained with (Adam betas 0.9, 0.998).
#   - A joint subword vocabulary of 32k (the paper: 32k BPE merges; here sentencepiece).
#   - Trained until validation stops improving (here: 5 validations without a better loss),
#     validating every 5k updates (de-en, ja-en) or 10k (ro-en, en-de).
arch=entmax_transformer
attn_normalizer=alpha_entmax
attn_alpha_init=random
vocab_size=32000
dropout=0.1
lr=6.25e-4
adam_betas="(0.9, 0.998)"
warmup_updates=20000
max_tokens=8192
max_update=500000
patience=5
validate_interval_updates=5000
keep_last_epochs=1
