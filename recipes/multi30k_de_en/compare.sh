#!/usr/bin/env bash
# Softmax vs 1.5-entmax vs alpha-entmax attention on Multi30k de->en with the same budget:
# identical data, model size, optimiser, seed and number of updates; only the attention
# normaliser differs (label-smoothed cross-entropy for all three, as in Correia et al. 2019).
#   recipes/multi30k_de_en/compare.sh                  # 1,500 updates per setting
#   recipes/multi30k_de_en/compare.sh --max-update 3000 --arch entmax_transformer --model-args "..."
#   recipes/multi30k_de_en/compare.sh --run-args "--beam 2"   # more run.sh options for every setting
# Writes <work-dir>/results.md: BLEU/TER (sacrebleu signatures) on test_2016_flickr and
# test_2017_flickr, and the head statistics of every setting.
set -euo pipefail
recipe_name=multi30k_compare
here=$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)
source "$here/../common/stages.sh"
stage 1 data "run.sh stages 1-4 once, in <work-dir>/data" creates=data
stage 2 train "run.sh stages 5-8 for each setting, the data folders linked" reads=data
stage 3 table "results.md from every setting's scores and heads" reads=data
common_options
opt settings "softmax entmax15 alpha_entmax" "attention normalisers compared"
opt arch entmax_transformer_tiny "fairseq architecture"
opt model_args "" "model flags after --arch"
opt max_update 1500 "updates per setting"
opt lr 2e-3 "peak learning rate"
opt warmup_updates 300 "warm-up updates"
opt dropout 0.1 "dropout"
opt max_tokens 4096 "tokens per batch"
opt attn_alpha_init 1.5 "initial alpha of alpha_entmax heads"
opt run_args "" "more run.sh options for every setting, space separated"
parse_options "$@"
finish_common_options
check_int max_update
for setting in $settings; do check_choice setting softmax sparsemax entmax15 alpha_entmax; done
read -ra more <<< "$run_args"
tests="test_2016_flickr test_2017_flickr"

stage_1() {
  WORK_DIR= run bash "$here/run.sh" --work-dir "$work_dir/data" --stage 1 --stop-stage 4 \
    --test-sets "$tests" --python-bin "$python_bin" --dry-run "$dry_run"
}

stage_2() {
  local setting work start shared
  for setting in $settings; do
    work=$work_dir/$setting
    run mkdir -p "$work"
    for shared in raw tok spm bin; do  # data stages are shared; the model stages are not
      run ln -sfn "$work_dir/data/$shared" "$work/$shared"
    done
    start=$SECONDS
    WORK_DIR= run bash "$here/run.sh" --work-dir "$work" --stage 5 --stop-stage 8 \
      --attn-normalizer "$setting" --arch "$arch" --model-args "$model_args" \
      --criterion label_smoothed_cross_entropy --max-update "$max_update" --lr "$lr" \
      --warmup-updates "$warmup_updates" --dropout "$dropout" --max-tokens "$max_tokens" \
      --attn-alpha-init "$attn_alpha_init" --checkpoint checkpoint_last.pt --keep-last-epochs 1 \
      --train-from-scratch true --test-sets "$tests" --log-interval 50 \
      --python-bin "$python_bin" --dry-run "$dry_run" "${more[@]}"
    [[ $dry_run == true ]] || echo "$((SECONDS - start))" > "$work/seconds"
  done
}

stage_3() {
  run_to "$work_dir/results.md" "$python_bin" "$here/summarize.py" "$work_dir" $settings
  [[ $dry_run == true ]] || cat "$work_dir/results.md"
}

run_stages
