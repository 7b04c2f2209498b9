# The stages of every translation recipe. A recipe's run.sh sets `recipe_name` and its own
# defaults (plain shell variables), sources this file and calls `run_recipe "$@"`.
# Data stages 1-4 skip themselves when their outputs exist and their options are unchanged
# (--force true reruns them); a stage that runs makes the later ones run again.

source "$(dirname "${BASH_SOURCE[0]}")/stages.sh"

stage 0 plan "print the options, the stages and where the data come from"
stage 1 download "fetch archives (\$DATA_MIRROR or upstream, sha256-checked), extract plain text" \
  creates=downloads writes=raw
stage 2 text "sacremoses punctuation normalisation and tokenisation" reads=raw writes=tok
stage 3 spm "joint sentencepiece model (unigram, character coverage 1.0); every split encoded" \
  reads=tok writes=spm
stage 4 binarise "fairseq-preprocess --joined-dictionary" reads=spm writes=bin
stage 5 train "fairseq-train --user-dir user_dir --arch entmax_transformer..." reads=bin \
  creates=checkpoints
stage 6 generate "fairseq-generate (beam search) on each test set; every sentence must come back" \
  reads="bin checkpoints raw" writes=generate
stage 7 score "sacrebleu BLEU, TER and chrF with signatures, on detokenised output; scores.json" \
  reads="generate raw" writes=scores
stage 8 heads "sparse-seq2seq-heads: learned alpha, support sizes, head diversity, figures" \
  reads="bin checkpoints" writes=heads
stage 9 export "sparse-seq2seq-export: model folder with dictionaries, sentencepiece, model card" \
  reads="bin spm checkpoints scores" writes=export

declare_options() {
  common_options
  opt force false "rerun data stages 1-4 even when up to date"
  opt nj 2 "parallel jobs for data preparation"
  opt user_dir "$recipe_root/user_dir" "fairseq --user-dir that registers the project's models"
  # data
  opt corpus "$recipe_name" "corpus name in data_prep.corpora"
  opt src "" "source language"
  opt tgt "" "target language"
  opt data_mirror "" "read-only folder holding the archives (env DATA_MIRROR)"
  opt checksums "" "file of '<sha256>  <name>' lines for archives without a recorded checksum"
  opt allow_unverified false "download archives that have no known checksum"
  opt test_sets "test" "test splits to binarise, translate and score"
  opt normalize true "sacremoses punctuation normalisation"
  opt tokenizer moses "moses or none (sentencepiece alone)"
  opt vocab_size 8000 "joint sentencepiece vocabulary size"
  opt spm_model_type unigram "sentencepiece model type"
  opt character_coverage 1.0 "sentencepiece character coverage"
  opt spm_sample 2000000 "sentences sampled to train sentencepiece"
  opt max_len 250 "drop training pairs longer than this many pieces"
  # model and training
  opt task translation_sparse "fairseq task; translation_sparse is translation whose beam search copes with entmax outputs"
  opt arch entmax_transformer "fairseq architecture"
  attention_types
  opt attn_normalizer "" "if set, the normaliser of every attention type"
  for i in "${!attn_flags[@]}"; do
    opt "$(flag_option "${attn_flags[i]}")" alpha_entmax \
      "normaliser of the ${attn_labels[i]}: ${normalizers[*]}"
  done
  opt attn_alpha_init random "initial alpha of alpha_entmax heads: a number in (1, 2] or random"
  opt criterion entmax_loss "entmax_loss, label_smoothed_cross_entropy, cross_entropy"
  opt loss_alpha 1.5 "alpha of the entmax loss"
  opt label_smoothing 0.1 "for label_smoothed_cross_entropy"
  opt share_embeddings true "share encoder, decoder and output embeddings"
  opt model_args "" "model flags after --arch (sizes...); '' keeps the architecture's own"
  opt dropout 0.1 "dropout"
  opt lr 5e-4 "peak learning rate"
  opt warmup_updates 4000 "linear warm-up updates before the inverse square root decay"
  opt warmup_init_lr 1e-7 "learning rate at update 0"
  opt adam_betas "(0.9, 0.98)" "Adam betas"
  opt clip_norm 0.0 "gradient clipping (0 = none)"
  opt weight_decay 0.0 "weight decay"
  opt max_tokens 4096 "tokens per batch (per device)"
  opt update_freq 1 "batches accumulated per update"
  opt max_update 100000 "stop after this many updates"
  opt max_epoch 0 "stop after this many epochs (0 = no limit)"
  opt stop_time_hours 0 "stop after this many hours (0 = no limit)"
  opt patience -1 "stop after this many validations without improvement (-1 = never)"
  opt validate_interval_updates 0 "validate every N updates as well as every epoch (0 = per epoch)"
  opt keep_last_epochs 2 "epoch checkpoints kept"
  opt seed 1 "random seed"
  device_option
  opt fp16 false "mixed precision training (GPU)"
  opt log_format simple "fairseq log format: simple, json, tqdm"
  opt log_interval 50 "updates between log lines"
  opt tensorboard true "write tensorboard scalars to WORK_DIR/tensorboard"
  opt train_from_scratch false "delete earlier checkpoints instead of resuming from them"
  opt train_args "" "extra fairseq-train flags, space separated"
  # decoding, scoring, analysis
  opt checkpoint checkpoint_best.pt "checkpoint file used by stages 6, 8 and 9"
  opt beam 5 "beam size"
  opt lenpen 1.0 "length penalty"
  opt gen_batch_size 128 "sentences per generation batch"
  opt gen_args "--max-len-a 1.2 --max-len-b 10" "extra fairseq-generate flags"
  opt ter_case_sensitive false "case-sensitive TER"
  opt heads_args "" "extra sparse-seq2seq-heads flags"
}

finish_options() {
  local name flag
  finish_common_options
  check_int nj vocab_size max_len max_tokens update_freq max_update max_epoch keep_last_epochs \
    beam gen_batch_size log_interval validate_interval_updates seed spm_sample
  check_bool force allow_unverified normalize share_embeddings tensorboard fp16 \
    train_from_scratch ter_case_sensitive
  check_choice tokenizer moses none
  check_choice device auto cpu cuda
  check_choice log_format simple json tqdm none
  [[ -n $src && -n $tgt ]] || die "--src and --tgt must be set"
  [[ -z $attn_normalizer ]] || check_choice attn_normalizer "${normalizers[@]}"
  for flag in "${attn_flags[@]}"; do
    name=$(flag_option "$flag")
    [[ -z $attn_normalizer ]] || printf -v "$name" '%s' "$attn_normalizer"
    check_choice "$name" "${normalizers[@]}"
  done
  user_dir=$(absolute "$user_dir")
  checksums=$(absolute "$checksums")
  data_mirror=$(mirror_path "$data_mirror")
  read -ra test_list <<< "$test_sets"
  [[ ${#test_list[@]} -gt 0 ]] || die "--test-sets is empty"
  ckpt_dir=$work_dir/checkpoints
}

stage_0() {
  echo "recipe $recipe_name: $corpus ($src -> $tgt), stages $stage..$stop_stage, work dir $work_dir"
  echo "options:"
  print_options
  "$python_bin" -m data_prep plan "$corpus" --mirror "$data_mirror" ${checksums:+--checksums "$checksums"}
  print_stages
}

signature_1() { echo "corpus=$corpus splits=train valid ${test_list[*]}"; }
stage_1() {
  dp download "$corpus" --dest "$work_dir/downloads" --mirror "$data_mirror" \
    --allow-unverified "$allow_unverified" ${checksums:+--checksums "$checksums"}
  dp extract "$corpus" --downloads "$work_dir/downloads" --out "$(aside raw)" \
    --splits train valid "${test_list[@]}"
}

signature_2() { echo "normalize=$normalize tokenizer=$tokenizer"; }
stage_2() {
  # only training pairs may be dropped (when empty); valid and test sets stay aligned
  dp prepare-text --src "$src" --tgt "$tgt" --in-dir "$work_dir/raw" --out-dir "$(aside tok)" \
    --splits train valid "${test_list[@]}" --filter-split train --normalize "$normalize" \
    --tokenizer "$tokenizer" --workers "$nj"
}

signature_3() {
  echo "vocab=$vocab_size type=$spm_model_type coverage=$character_coverage max_len=$max_len sample=$spm_sample"
}
stage_3() {
  local spm; spm=$(aside spm)
  dp spm-train --inputs "$work_dir/tok/train.$src" "$work_dir/tok/train.$tgt" \
    --model-prefix "$spm/spm" --vocab-size "$vocab_size" --model-type "$spm_model_type" \
    --character-coverage "$character_coverage" --input-sentence-size "$spm_sample" --threads "$nj"
  dp spm-encode --model "$spm/spm.model" --src "$src" --tgt "$tgt" \
    --in-dir "$work_dir/tok" --out-dir "$spm" --splits train valid "${test_list[@]}" \
    --filter-split train --max-len "$max_len"
}

signature_4() { echo "binarised"; }
stage_4() {
  local tests=() split
  for split in "${test_list[@]}"; do tests+=(--test "$split=$work_dir/spm/$split"); done
  dp binarize --src "$src" --tgt "$tgt" --train "$work_dir/spm/train" \
    --valid "$work_dir/spm/valid" "${tests[@]}" --destdir "$(aside bin)" --workers "$nj"
}

train_command() {  # the fairseq-train command line, one word per array element
  local extra=() flag name
  train_cmd=(fairseq-train "$work_dir/bin" --user-dir "$user_dir" --task "$task"
    --source-lang "$src" --target-lang "$tgt" --arch "$arch")
  if [[ $arch == entmax_* ]]; then
    for flag in "${attn_flags[@]}"; do
      name=$(flag_option "$flag")
      train_cmd+=("$flag" "${!name}")
    done
    train_cmd+=(--attn-alpha-init "$attn_alpha_init")
  fi
  train_cmd+=(--criterion "$criterion")
  case $criterion in
    entmax_loss) train_cmd+=(--loss-alpha "$loss_alpha") ;;
    label_smoothed_cross_entropy) train_cmd+=(--label-smoothing "$label_smoothing") ;;
  esac
  [[ $share_embeddings == true ]] && train_cmd+=(--share-all-embeddings)
  read -ra extra <<< "$model_args"
  train_cmd+=("${extra[@]}" --dropout "$dropout"
    --optimizer adam --adam-betas "$adam_betas" --clip-norm "$clip_norm"
    --weight-decay "$weight_decay" --lr "$lr" --lr-scheduler inverse_sqrt
    --warmup-updates "$warmup_updates" --warmup-init-lr "$warmup_init_lr"
    --max-tokens "$max_tokens" --update-freq "$update_freq" --max-update "$max_update"
    --patience "$patience" --seed "$seed"
    --save-dir "$ckpt_dir" --keep-last-epochs "$keep_last_epochs"
    --log-format "$log_format" --log-interval "$log_interval" --log-file "$work_dir/train.log")
  [[ $max_epoch != 0 ]] && train_cmd+=(--max-epoch "$max_epoch")
  [[ $stop_time_hours != 0 ]] && train_cmd+=(--stop-time-hours "$stop_time_hours")
  if [[ $validate_interval_updates != 0 ]]; then
    train_cmd+=(--validate-interval-updates "$validate_interval_updates"
      --save-interval-updates "$validate_interval_updates" --keep-interval-updates 5)
  fi
  [[ $tensorboard == true ]] && train_cmd+=(--tensorboard-logdir "$work_dir/tensorboard")
  [[ $fp16 == true ]] && train_cmd+=(--fp16)
  use_cpu && train_cmd+=(--cpu)
  read -ra extra <<< "$train_args"
  train_cmd+=("${extra[@]}")
}

stage_5() {
  if [[ $train_from_scratch == true ]]; then
    run rm -rf "$ckpt_dir" "$work_dir/tensorboard" "$work_dir/train.log"
  fi
  train_command
  run "${train_cmd[@]}"
}

_checkpoint_path() {
  local path=$ckpt_dir/$checkpoint
  [[ $checkpoint == /* ]] && path=$checkpoint
  [[ $dry_run == true || -f $path ]] || die "no checkpoint $path (run stage 5)"
  echo "$path"
}

stage_6() {
  local ckpt name subset extra=() cpu=() out
  ckpt=$(_checkpoint_path)
  out=$(aside generate)
  read -ra extra <<< "$gen_args"
  use_cpu && cpu=(--cpu)
  for name in "${test_list[@]}"; do
    subset="<fairseq subset of $name>"
    [[ $dry_run == true ]] || subset=$("$python_bin" -m data_prep subset --destdir "$work_dir/bin" --name "$name")
    run_to "$out/$name.out" fairseq-generate "$work_dir/bin" \
      --user-dir "$user_dir" --task "$task" --source-lang "$src" \
      --target-lang "$tgt" --path "$ckpt" --gen-subset "$subset" --beam "$beam" \
      --lenpen "$lenpen" --batch-size "$gen_batch_size" --required-batch-size-multiple 1 \
      --remove-bpe sentencepiece "${cpu[@]}" "${extra[@]}"
    dp hypotheses --generate-output "$out/$name.out" \
      --reference "$work_dir/raw/$name.$tgt" --output "$out/$name.hyp"
    if [[ $tokenizer == moses ]]; then
      dp detokenize --lang "$tgt" --input "$out/$name.hyp" --output "$out/$name.detok"
    else
      run cp "$out/$name.hyp" "$out/$name.detok"
    fi
  done
}

stage_7() {
  local name out
  out=$(aside scores)
  for name in "${test_list[@]}"; do
    run_to "$out/$name.txt" "$python_bin" -m data_prep score --reference "$work_dir/raw/$name.$tgt" \
      --hypotheses "$work_dir/generate/$name.detok" --test-set "$name" \
      --ter-case-sensitive "$ter_case_sensitive" --json "$out/$name.json"
  done
  [[ $dry_run == true ]] && return 0
  echo "scores (detokenised output against the raw references):"
  for name in "${test_list[@]}"; do
    sed "s/^ */  $name  /" "$out/$name.txt"
  done
}

stage_8() {
  local ckpt extra=() more=(--user-dir "$user_dir")
  ckpt=$(_checkpoint_path)
  [[ $dry_run == true ]] || command -v sparse-seq2seq-heads > /dev/null \
    || die "sparse-seq2seq-heads not found; install the project (pip install -e .) in $python_bin's environment"
  [[ -f $work_dir/train.log || $dry_run == true ]] && more+=(--log "$work_dir/train.log")
  use_cpu && more+=(--cpu)
  read -ra extra <<< "$heads_args"
  run sparse-seq2seq-heads "$ckpt" --data "$work_dir/bin" --out "$(aside heads)" "${more[@]}" \
    "${extra[@]}"
}

stage_9() {
  local ckpt export=(sparse-seq2seq-export)
  ckpt=$(_checkpoint_path)
  train_command
  [[ $dry_run == true ]] || command -v sparse-seq2seq-export > /dev/null \
    || export=("$python_bin" -m sparse_seq2seq.fairseq_plugin.export)
  run "${export[@]}" "$ckpt" --data "$work_dir/bin" --spm "$work_dir/spm/spm.model" \
    --out "$(aside export)" --scores "$work_dir/scores/${test_list[0]}.json" \
    --tokenizer "$tokenizer" --name "$recipe_name" --train-command "$(printf '%q ' "${train_cmd[@]}")"
  [[ $dry_run == true ]] || echo "model folder: $work_dir/export (fairseq-interactive $work_dir/export" \
    "--path $work_dir/export/model.pt --user-dir $user_dir --task $task -s $src -t $tgt)"
}

run_recipe() {
  declare_options
  parse_options "$@"
  finish_options
  run_stages
}
