#!/usr/bin/env bash
# Semi-supervised VAE on MNIST with 10% labels (Correia et al., NeurIPS 2020, §5.1).
#   recipes/lvm_ssvae/run.sh                          # stages 0 (data check) to 3 (table + plot)
#   recipes/lvm_ssvae/run.sh --stage 2 --stop-stage 2 --methods "dense sparsemax" --seeds "1 2 3"
#   recipes/lvm_ssvae/run.sh --help                   # every option and its value
# Data: $DATA_MIRROR/mnist and $DATA_MIRROR/ssvae-splits (default ../shared/data), else upstream.
# CPU budget: one epoch over the 45,000 unlabelled images per method and seed (the paper trains
# 200 epochs); dense takes about a minute per epoch on one core, the others less.
set -euo pipefail
recipe_name=lvm_ssvae
here=$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)
source "$here/../common/stages.sh"
stage 0 data "MNIST and the paper's splits (checksums verified)"
stage 1 warmstart "warm start on the 5,000 labelled images"
stage 2 train "train each method from the warm start"
stage 3 report "results table and training curves"
common_options
opt seed "" "run a single seed (overrides --seeds)"
opt seeds "1 2 3" "seeds, space separated"
opt methods "dense sparsemax sfe sfe_plus nvil gumbel st_gumbel sum_and_sample" "estimators to train"
opt epochs 1 "epochs over the unlabelled split per method"
opt warm_epochs 10 "warm-start epochs on the labelled split"
opt lr 5e-4 "learning rate after the warm start (the paper's)"
opt threads 1 "torch threads per run"
opt force false "retrain runs whose record already exists"
parse_options "$@"
finish_common_options
check_int epochs warm_epochs
check_bool force
[[ -n $seed ]] && seeds=$seed
cd "$recipe_root"
py() { run nice -n 10 "$python_bin" "$@"; }

stage_0() {
  py -c "from sparse_seq2seq.lvm.experiments.data import load_idx_dataset, load_ssvae_splits
x = load_idx_dataset('mnist'); s = load_ssvae_splits()
print('mnist', x[0].shape, x[2].shape, {k: len(v) for k, v in s.items()})"
}

stage_1() {
  for family in softmax sparse; do
    if [[ -f $work_dir/warmstart_$family.pt && $force == false ]]; then echo "exists: $work_dir/warmstart_$family.pt"; continue; fi
    py -m sparse_seq2seq.lvm.experiments.ssvae warmstart --family "$family" --epochs "$warm_epochs" --threads "$threads" --out "$work_dir"
  done
}

stage_2() {
  for s in $seeds; do
    for m in $methods; do
      if [[ -f $work_dir/${m}_seed$s.json && $force == false ]]; then echo "exists: $work_dir/${m}_seed$s.json"; continue; fi
      family=softmax; [[ $m == sparsemax || $m == topk_sparsemax ]] && family=sparse
      py -m sparse_seq2seq.lvm.experiments.ssvae train --method "$m" --seed "$s" --epochs "$epochs" --lr "$lr" \
        --threads "$threads" --warm-start "$work_dir/warmstart_$family.pt" --out "$work_dir"
    done
  done
}

stage_3() {
  py -m sparse_seq2seq.lvm.experiments.reporting "$work_dir" --experiment ssvae \
    --metrics test_accuracy decoder_calls train_time_s \
    --curve val_accuracy decoder_calls --table "$work_dir/results.md" --plot "$work_dir/curves.png"
}

run_stages
