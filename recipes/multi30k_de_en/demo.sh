#!/usr/bin/env bash
# The project's demo (`make demo`): Multi30k de->en with a tiny alpha-entmax transformer on
# CPU, start to finish in about a quarter of an hour on two cores.
#   1-4  raw text -> Moses tokens -> joint sentencepiece (unigram, 8k) -> fairseq binaries
#   5    entmax_transformer_tiny (2+2 layers, 128 wide, 4 heads), alpha-entmax in every
#        attention type (one learned alpha per head), 1.5-entmax loss, 600 updates with a
#        progress bar (about 11 minutes on two quiet cores); a number of updates, not a time
#        limit, so a rerun with the same seed on the same kind of machine gives the same figures
#   6-7  beam search on test_2016_flickr, BLEU, TER and chrF with sacrebleu signatures
#   8    learned alpha per head, support sizes and head diversity (300 validation
#        sentences), figures
#   9    the model as a folder that travels (sparse-seq2seq-export), with a model card
# Settings are environment variables (so `ARCH=... make demo` works) and any run.sh option
# can follow, e.g. `recipes/multi30k_de_en/demo.sh --max-update 50`.
set -euo pipefail
here=$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)
root=$(cd "$here/../.." && pwd)
export WORK_DIR=${WORK_DIR:-$root/exp/multi30k_de_en_demo}
export TEST_SETS=${TEST_SETS:-test_2016_flickr}
export ARCH=${ARCH:-entmax_transformer_tiny}
export MODEL_ARGS=${MODEL_ARGS:-}
export ATTN_NORMALIZER=${ATTN_NORMALIZER:-alpha_entmax}
export ATTN_ALPHA_INIT=${ATTN_ALPHA_INIT:-random}
export CRITERION=${CRITERION:-entmax_loss}
export LOSS_ALPHA=${LOSS_ALPHA:-1.5}
export DROPOUT=${DROPOUT:-0.1}
export LR=${LR:-2e-3}
export WARMUP_UPDATES=${WARMUP_UPDATES:-200}
export MAX_TOKENS=${MAX_TOKENS:-4096}
export MAX_UPDATE=${MAX_UPDATE:-600}
export STOP_TIME_HOURS=${STOP_TIME_HOURS:-0}
export KEEP_LAST_EPOCHS=${KEEP_LAST_EPOCHS:-1}
export LOG_FORMAT=${LOG_FORMAT:-tqdm}
export TRAIN_FROM_SCRATCH=${TRAIN_FROM_SCRATCH:-true}
export GEN_BATCH_SIZE=${GEN_BATCH_SIZE:-200}
export HEADS_ARGS=${HEADS_ARGS:---max-sentences 300}
started=$SECONDS
"$here/run.sh" "$@"
echo "demo finished in $(( (SECONDS - started) / 60 )) min $(( (SECONDS - started) % 60 )) s; outputs in $WORK_DIR"
