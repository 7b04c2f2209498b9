#!/usr/bin/env bash
# Emergent communication game, |Z| = 256 symbols, |V| = 16 candidates (Correia et al., NeurIPS 2020, §5.2).
#   recipes/lvm_emergent/run.sh                       # stages 0 (features) to 2 (table + plot)
#   recipes/lvm_emergent/run.sh --stage 1 --stop-stage 1 --methods sparsemax --seed 3
#   recipes/lvm_emergent/run.sh --features-dir my_feats   # any train.npy / test.npy feature matrices
# The paper plays the game on ImageNet image features, which cannot be had offline: stage 0
# writes 256-dimensional PCA features of Fashion-MNIST ($DATA_MIRROR/fashion-mnist) instead.
# CPU budget: 2 epochs of 16,000 games per method and seed (the paper trains 500 epochs).
set -euo pipefail
recipe_name=lvm_emergent
here=$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)
source "$here/../common/stages.sh"
stage 0 features "256-dimensional PCA features of the images (unless --features-dir has them)"
stage 1 train "train sender and receiver with each method"
stage 2 report "results table and training curves"
common_options
opt seed "" "run a single seed (overrides --seeds)"
opt seeds "1" "seeds, space separated"
opt methods "dense sparsemax topk_sparsemax sfe sfe_plus nvil gumbel st_gumbel sum_and_sample" "estimators to train"
opt dataset fashion-mnist "images for the features (mnist or fashion-mnist)"
opt features_dir "" "folder with train.npy and test.npy (default: <work-dir>/features, made by stage 0)"
opt epochs 2 "epochs of --games-per-epoch games"
opt games_per_epoch 16000 "games per epoch"
opt lr 0.005 "learning rate (the paper's)"
opt method_lrs "sparsemax=0.002" "per-method learning rates overriding --lr: 'METHOD=LR ...' (sparsemax: chosen on validation games, docs/lvm_results.md)"
opt entropy_coeff 0.1 "sender entropy bonus (the paper's)"
opt threads 1 "torch threads per run"
opt force false "retrain runs whose record already exists"
parse_options "$@"
finish_common_options
check_int epochs games_per_epoch
check_choice dataset mnist fashion-mnist
check_bool force
[[ -n $seed ]] && seeds=$seed
for pair in $method_lrs; do
  [[ $pair =~ ^[a-z_]+=[0-9.eE+-]+$ ]] || die "--method-lrs '$pair': expected METHOD=LR"
done
lr_of() {  # lr_of METHOD: its --method-lrs entry, else --lr
  local pair
  for pair in $method_lrs; do [[ ${pair%%=*} == "$1" ]] && { echo "${pair#*=}"; return; }; done
  echo "$lr"
}
[[ -z $features_dir ]] && features_dir=$work_dir/features
cd "$recipe_root"
py() { run nice -n 10 "$python_bin" "$@"; }

stage_0() {
  if [[ -f $features_dir/train.npy && -f $features_dir/test.npy && $force == false ]]; then
    echo "exists: $features_dir/{train,test}.npy"
  else
    py -m sparse_seq2seq.lvm.experiments.features --dataset "$dataset" --dim 256 --out "$features_dir"
  fi
}

stage_1() {
  for s in $seeds; do
    for m in $methods; do
      if [[ -f $work_dir/${m}_seed$s.json && $force == false ]]; then echo "exists: $work_dir/${m}_seed$s.json"; continue; fi
      py -m sparse_seq2seq.lvm.experiments.emergent --method "$m" --seed "$s" --epochs "$epochs" \
        --games-per-epoch "$games_per_epoch" --lr "$(lr_of "$m")" --entropy-coeff "$entropy_coeff" --threads "$threads" \
        --train-features "$features_dir/train.npy" --test-features "$features_dir/test.npy" --out "$work_dir"
    done
  done
}

stage_2() {
  py -m sparse_seq2seq.lvm.experiments.reporting "$work_dir" --experiment emergent \
    --metrics test_success decoder_calls decoder_calls_last train_time_s \
    --curve train_success decoder_calls --table "$work_dir/results.md" --plot "$work_dir/curves.png"
}

run_stages
