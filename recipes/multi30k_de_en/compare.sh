#!/usr/bin/env bash
# Softmax vs 1.5-entmax vs alpha-entmax attention on Multi30k de->en with the same budget:
# identical data, model size, optimiser, seed and number of updates; only the attention
# normaliser differs (label-smoothed cross-entropy for all three, as in Correia et al. 2019).
#   recipes/multi30k_de_en/compare.sh                  # MAX_UPDATE=1500 by default
#   MAX_UPDATE=3000 recipes/multi30k_de_en/compare.sh --arch entmax_transformer --model-args "..."
# Writes $WORK_DIR/results.md: BLEU/TER (sacrebleu signatures) on test_2016_flickr and
# test_2017_flickr, and the head statistics of every setting.
set -euo pipefail
here=$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)
root=$(cd "$here/../.." && pwd)
base=${WORK_DIR:-$root/exp/multi30k_compare}
settings=${SETTINGS:-softmax entmax15 alpha_entmax}
common=(--arch "${ARCH:-entmax_transformer_tiny}" --model-args "${MODEL_ARGS:-}"
  --criterion label_smoothed_cross_entropy --max-update "${MAX_UPDATE:-1500}"
  --lr "${LR:-2e-3}" --warmup-updates "${WARMUP_UPDATES:-300}" --dropout "${DROPOUT:-0.1}"
  --max-tokens "${MAX_TOKENS:-4096}" --attn-alpha-init "${ATTN_ALPHA_INIT:-1.5}"
  --checkpoint checkpoint_last.pt --keep-last-epochs 1 --train-from-scratch true
  --test-sets "test_2016_flickr test_2017_flickr" --log-interval 50)
WORK_DIR= "$here/run.sh" --work-dir "$base/data" --stage 1 --stop-stage 4
for setting in $settings; do
  work=$base/$setting
  mkdir -p "$work"
  for shared in raw tok spm bin; do  # data stages are shared; the model stages are not
    [[ -e $base/data/$shared ]] && ln -sfn "$base/data/$shared" "$work/$shared"
  done
  start=$SECONDS
  WORK_DIR= "$here/run.sh" --work-dir "$work" --stage 5 --stop-stage 8 \
    --attn-normalizer "$setting" "${common[@]}" "$@"
  echo "$((SECONDS - start))" > "$work/seconds"
done
"$root/.venv/bin/python" "$here/summarize.py" "$base" $settings | tee "$base/results.md"
