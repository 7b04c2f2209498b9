#!/usr/bin/env bash
# Semi-supervised VAE on MNIST with 10% labels (Correia et al., NeurIPS 2020, §5.1).
#   recipes/lvm_ssvae/run.sh                          # stages 0 (data check) to 3 (table + plot)
#   recipes/lvm_ssvae/run.sh --stage 2 --stop-stage 2 --methods "dense sparsemax" --seeds "1 2 3"
#   recipes/lvm_ssvae/run.sh --help                   # every option and its value
# Data: $DATA_MIRROR/mnist and $DATA_MIRROR/ssvae-splits (default ../shared/data), else upstream.
# CPU budget: one epoch over the 45,000 unlabelled images per method and seed (the paper trains
# 200 epochs); dense takes about a minute per epoch on one core, the others less.
set -euo pipefail
here=$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)
repo=$(cd "$here/../.." && pwd)
source "$here/../common/options.sh"
default_python=python3
[[ -x $repo/.venv/bin/python ]] && default_python=$repo/.venv/bin/python
opt stage 0 "first stage to run (0 data check, 1 warm start, 2 train, 3 report)"
opt stop_stage 3 "last stage to run"
opt seed "" "run a single seed (overrides --seeds)"
opt seeds "1 2 3" "seeds, space separated"
opt methods "dense sparsemax sfe sfe_plus nvil gumbel st_gumbel sum_and_sample" "estimators to train"
opt epochs 1 "epochs over the unlabelled split per method"
opt warm_epochs 10 "warm-start epochs on the labelled split"
opt lr 5e-4 "learning rate after the warm start (the paper's)"
opt threads 1 "torch threads per run"
opt out "$repo/exp/lvm_ssvae" "output folder"
opt python "$default_python" "python interpreter"
opt force false "retrain runs whose record already exists (true/false)"
parse_options "$@"
check_int stage; check_int stop_stage; check_int epochs; check_int warm_epochs
check_choice force true false
[[ -n $seed ]] && seeds=$seed
cd "$repo"
mkdir -p "$out"
run() { nice -n 10 "$python" "$@"; }

if [[ $stage -le 0 && $stop_stage -ge 0 ]]; then
  echo "== stage 0: MNIST and the paper's splits (checksums verified)"
  run -c "from sparse_seq2seq.lvm.experiments.data import load_idx_dataset, load_ssvae_splits
x = load_idx_dataset('mnist'); s = load_ssvae_splits()
print('mnist', x[0].shape, x[2].shape, {k: len(v) for k, v in s.items()})"
fi

if [[ $stage -le 1 && $stop_stage -ge 1 ]]; then
  echo "== stage 1: warm start on the 5,000 labelled images"
  for family in softmax sparse; do
    if [[ -f $out/warmstart_$family.pt && $force == false ]]; then echo "exists: $out/warmstart_$family.pt"; continue; fi
    run -m sparse_seq2seq.lvm.experiments.ssvae warmstart --family "$family" --epochs "$warm_epochs" --threads "$threads" --out "$out"
  done
fi

if [[ $stage -le 2 && $stop_stage -ge 2 ]]; then
  echo "== stage 2: train each method from the warm start"
  for s in $seeds; do
    for m in $methods; do
      if [[ -f $out/${m}_seed$s.json && $force == false ]]; then echo "exists: $out/${m}_seed$s.json"; continue; fi
      family=softmax; [[ $m == sparsemax || $m == topk_sparsemax ]] && family=sparse
      run -m sparse_seq2seq.lvm.experiments.ssvae train --method "$m" --seed "$s" --epochs "$epochs" --lr "$lr" \
        --threads "$threads" --warm-start "$out/warmstart_$family.pt" --out "$out"
    done
  done
fi

if [[ $stage -le 3 && $stop_stage -ge 3 ]]; then
  echo "== stage 3: results table and training curves"
  run -m sparse_seq2seq.lvm.experiments.reporting "$out" --experiment ssvae \
    --metrics test_accuracy decoder_calls train_time_s \
    --curve val_accuracy decoder_calls --table "$out/results.md" --plot "$out/curves.png"
fi
