#!/usr/bin/env bash
# Bit-vector VAE on Fashion-MNIST, D = 32 and 128 bits (Correia et al., NeurIPS 2020, §5.3).
#   recipes/lvm_bitvector/run.sh                      # stages 0 (data check) to 2 (tables + plots)
#   recipes/lvm_bitvector/run.sh --stage 1 --stop-stage 1 --dims 32 --methods "sparsemap sfe" --seed 2
# Data: $DATA_MIRROR/fashion-mnist (default ../shared/data), else upstream.
# CPU budget: 300 updates of 64 images per method (the paper trains 100 epochs of 60,000), and the
# importance-sampled NLL (1024 samples per image) on the first 200 test images, fixed binarisation.
set -euo pipefail
recipe_name=lvm_bitvector
here=$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)
source "$here/../common/stages.sh"
stage 0 data "Fashion-MNIST (checksums of the decompressed files verified)"
stage 1 train "train each method, then the importance-sampled NLL (one folder per D)"
stage 2 report "results tables and training curves"
common_options
opt seed "" "run a single seed (overrides --seeds)"
opt seeds "1" "seeds, space separated"
opt dims "32 128" "latent sizes D"
opt methods "topk_sparsemax sparsemap sparsemap_budget sfe sfe_plus nvil gumbel st_gumbel sum_and_sample" "estimators to train"
opt max_steps 300 "updates per method (0: full epochs)"
opt epochs 1 "epochs (an upper bound when --max-steps is set)"
opt lr 0.002 "learning rate (the paper's)"
opt k 10 "top-k sparsemax k"
opt budget "" "SparseMAP budget B (default D/4)"
opt sparsemap_encoding states "SparseMAP structure vector: states ([z; 1-z], the paper's factor) or bits (z)"
opt eval_size 200 "test images for the importance-sampled NLL (10000: the whole test set)"
opt is_samples 1024 "importance samples per test image"
opt threads 1 "torch threads per run"
opt force false "retrain runs whose record already exists"
parse_options "$@"
finish_common_options
check_int max_steps epochs eval_size
check_bool force
check_choice sparsemap_encoding states bits
[[ -n $seed ]] && seeds=$seed
cd "$recipe_root"
py() { run nice -n 10 "$python_bin" "$@"; }

stage_0() {
  py -c "from sparse_seq2seq.lvm.experiments.data import load_idx_dataset
x = load_idx_dataset('fashion-mnist'); print('fashion-mnist', x[0].shape, x[2].shape)"
}

stage_1() {
  for d in $dims; do
    for s in $seeds; do
      for m in $methods; do
        dest=$work_dir/d$d
        if [[ -f $dest/${m}_seed$s.json && $force == false ]]; then echo "exists: $dest/${m}_seed$s.json"; continue; fi
        extra=()
        [[ -n $budget ]] && extra+=(--budget "$budget")
        [[ $m == topk_sparsemax ]] && extra+=(--k "$k")
        [[ $m == sparsemap* ]] && extra+=(--sparsemap-encoding "$sparsemap_encoding")
        py -m sparse_seq2seq.lvm.experiments.bitvector_vae --method "$m" --latent-dim "$d" --seed "$s" --epochs "$epochs" \
          --max-steps "$max_steps" --lr "$lr" --eval-size "$eval_size" --is-samples "$is_samples" \
          --threads "$threads" --out "$dest" "${extra[@]}"
      done
    done
  done
}

stage_2() {
  for d in $dims; do
    py -m sparse_seq2seq.lvm.experiments.reporting "$work_dir/d$d" --experiment bitvector_vae --digits 3 \
      --metrics nll_bpd elbo_recon_bpd elbo_kl_bpd posterior_entropy_bits decoder_calls decoder_calls_last train_time_s \
      --curve train_neg_elbo_bpd decoder_calls --table "$work_dir/d$d/results.md" --plot "$work_dir/d$d/curves.png"
  done
}

run_stages
