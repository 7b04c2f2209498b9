# The stages shared by every translation recipe. A recipe's run.sh sets `recipe_name` and its
# own defaults (plain shell variables), sources options.sh and this file, then calls
# `run_recipe "$@"`. Stages (each guarded by --stage/--stop-stage):
#   0 plan      print the options, the stages and where the data comes from
#   1 download  fetch archives ($DATA_MIRROR or upstream, sha256-checked), extract plain text
#   2 text      sacremoses punctuation normalisation and tokenisation
#   3 spm       joint sentencepiece model (unigram, character coverage 1.0); encode every split
#   4 binarise  fairseq-preprocess --joined-dictionary
#   5 train     fairseq-train --user-dir user_dir --arch entmax_transformer...
#   6 generate  fairseq-generate (beam search) on each test set; every sentence must come back
#   7 score     sacrebleu BLEU and TER, with signatures, on detokenised output
#   8 heads     sparse-seq2seq-heads: learned alpha, support sizes, head diversity, figures
# Data stages 1-4 skip themselves when their outputs exist and their options are unchanged
# (--force true reruns them); a stage that runs invalidates the later ones.

recipe_root=$(cd "$(dirname "${BASH_SOURCE[0]}")/../.." && pwd)
_partials=()
trap 'rm -f "${_partials[@]}"' EXIT

declare_options() {
  local venv_python=python3
  [[ -x $recipe_root/.venv/bin/python ]] && venv_python=$recipe_root/.venv/bin/python
  opt stage 0 "first stage (0 prints the plan)"
  opt stop_stage 8 "last stage"
  opt dry_run false "print the selected stages' commands without running them"
  opt force false "rerun data stages 1-4 even when up to date"
  opt work_dir "$recipe_root/exp/$recipe_name" "folder for every output"
  opt python_bin "$venv_python" "Python with fairseq, sacremoses, sentencepiece, sacrebleu"
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
  opt attn_normalizer "" "if set, the normaliser of all three attention types"
  opt encoder_attn_normalizer alpha_entmax "softmax, sparsemax, entmax15 or alpha_entmax"
  opt decoder_self_attn_normalizer alpha_entmax "softmax, sparsemax, entmax15 or alpha_entmax"
  opt decoder_cross_attn_normalizer alpha_entmax "softmax, sparsemax, entmax15 or alpha_entmax"
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
  opt device auto "auto, cpu or cuda"
  opt fp16 false "mixed precision training (GPU)"
  opt log_format simple "fairseq log format: simple, json, tqdm"
  opt log_interval 50 "updates between log lines"
  opt tensorboard true "write tensorboard scalars to WORK_DIR/tensorboard"
  opt train_from_scratch false "delete earlier checkpoints instead of resuming from them"
  opt train_args "" "extra fairseq-train flags, space separated"
  # decoding, scoring, analysis
  opt checkpoint checkpoint_best.pt "checkpoint file used by stages 6 and 8"
  opt beam 5 "beam size"
  opt lenpen 1.0 "length penalty"
  opt gen_batch_size 128 "sentences per generation batch"
  opt gen_args "--max-len-a 1.2 --max-len-b 10" "extra fairseq-generate flags"
  opt ter_case_sensitive false "case-sensitive TER"
  opt heads_args "" "extra sparse-seq2seq-heads flags"
}

_absolute() {  # _absolute PATH: PATH made absolute against the current folder
  if [[ -z $1 ]]; then echo ""; else realpath -m -- "$1"; fi
}

finish_options() {
  local name
  for name in stage stop_stage nj vocab_size max_len max_tokens update_freq max_update \
              max_epoch keep_last_epochs beam gen_batch_size log_interval \
              validate_interval_updates seed spm_sample; do
    check_int "$name"
  done
  for name in dry_run force allow_unverified normalize share_embeddings tensorboard fp16 \
              train_from_scratch ter_case_sensitive; do
    check_choice "$name" true false
  done
  check_choice tokenizer moses none
  check_choice device auto cpu cuda
  check_choice log_format simple json tqdm none
  [[ -n $src && -n $tgt ]] || die "--src and --tgt must be set"
  if [[ -n $attn_normalizer ]]; then
    encoder_attn_normalizer=$attn_normalizer
    decoder_self_attn_normalizer=$attn_normalizer
    decoder_cross_attn_normalizer=$attn_normalizer
  fi
  for name in attn_normalizer encoder_attn_normalizer decoder_self_attn_normalizer \
              decoder_cross_attn_normalizer; do
    [[ -z ${!name} ]] || check_choice "$name" softmax sparsemax entmax15 alpha_entmax
  done
  work_dir=$(_absolute "$work_dir")
  user_dir=$(_absolute "$user_dir")
  checksums=$(_absolute "$checksums")
  if [[ -n $data_mirror && $data_mirror != /* && ! -d $data_mirror && -d $recipe_root/$data_mirror ]]; then
    data_mirror=$recipe_root/$data_mirror   # a mirror given relative to the project root
  fi
  data_mirror=$(_absolute "$data_mirror")
  read -ra test_list <<< "$test_sets"
  [[ ${#test_list[@]} -gt 0 ]] || die "--test-sets is empty"
  [[ -x $python_bin ]] || python_bin=$(command -v "$python_bin") || die "no Python '$python_bin'"
  case $python_bin in */*) PATH="$(dirname "$python_bin"):$PATH" ;; esac
  export PATH PYTHONPATH="$recipe_root${PYTHONPATH:+:$PYTHONPATH}"
  ckpt_dir=$work_dir/checkpoints
}

run() {  # run CMD...: print CMD, then run it unless --dry-run true
  echo "+ $(printf '%q ' "$@")"
  [[ $dry_run == true ]] || "$@"
}

run_to() {  # run_to FILE CMD...: like run, with CMD's output written to FILE atomically
  local out=$1 rc=0; shift
  echo "+ $(printf '%q ' "$@")> $(printf '%q' "$out")"
  [[ $dry_run == true ]] && return 0
  mkdir -p "$(dirname "$out")"
  local tmp="$out.$$.partial"
  _partials+=("$tmp")
  "$@" > "$tmp" || rc=$?
  if (( rc != 0 )); then rm -f "$tmp"; return "$rc"; fi
  mv -f "$tmp" "$out"
}

dp() { run "$python_bin" -m data_prep "$@"; }

_up_to_date() {  # _up_to_date N SIGNATURE DIR: stage N already made DIR with these options
  local file=$work_dir/.stages/$1
  [[ $force != true && -d $3 && -f $file && $(< "$file") == "$2" ]]
}

_record() {  # _record N SIGNATURE: stage N succeeded; later stages are out of date
  [[ $dry_run == true ]] && return 0
  mkdir -p "$work_dir/.stages"
  local n
  for (( n = $1 + 1; n <= 8; n++ )); do rm -f "$work_dir/.stages/$n"; done
  printf '%s\n' "$2" > "$work_dir/.stages/$1"
}

_use_cpu() {  # true when fairseq should get --cpu (device cpu, or auto without a GPU)
  if [[ $device == auto ]]; then
    device=cuda
    [[ $("$python_bin" -c 'import torch; print(torch.cuda.is_available())') == True ]] || device=cpu
  fi
  [[ $device == cpu ]]
}

stage_0() {
  echo "recipe $recipe_name: $corpus ($src -> $tgt), stages $stage..$stop_stage, work dir $work_dir"
  echo "options:"
  print_options
  "$python_bin" -m data_prep plan "$corpus" --mirror "$data_mirror" ${checksums:+--checksums "$checksums"}
  sed -n 's/^#   \([0-9]\) /  stage \1: /p' "${BASH_SOURCE[0]}"
}

stage_1() {
  local sig="corpus=$corpus splits=train valid ${test_list[*]}"
  if _up_to_date 1 "$sig" "$work_dir/raw"; then echo "up to date: $work_dir/raw"; return; fi
  dp download "$corpus" --dest "$work_dir/downloads" --mirror "$data_mirror" \
    --allow-unverified "$allow_unverified" ${checksums:+--checksums "$checksums"}
  dp extract "$corpus" --downloads "$work_dir/downloads" --out "$work_dir/raw" \
    --splits train valid "${test_list[@]}"
  _record 1 "$sig"
}

stage_2() {
  local sig="normalize=$normalize tokenizer=$tokenizer"
  if _up_to_date 2 "$sig" "$work_dir/tok"; then echo "up to date: $work_dir/tok"; return; fi
  # only training pairs may be dropped (when empty); valid and test sets stay aligned
  dp prepare-text --src "$src" --tgt "$tgt" --in-dir "$work_dir/raw" --out-dir "$work_dir/tok" \
    --splits train valid "${test_list[@]}" --filter-split train --normalize "$normalize" \
    --tokenizer "$tokenizer" --workers "$nj"
  _record 2 "$sig"
}

stage_3() {
  local sig="vocab=$vocab_size type=$spm_model_type coverage=$character_coverage max_len=$max_len sample=$spm_sample"
  if _up_to_date 3 "$sig" "$work_dir/spm"; then echo "up to date: $work_dir/spm"; return; fi
  dp spm-train --inputs "$work_dir/tok/train.$src" "$work_dir/tok/train.$tgt" \
    --model-prefix "$work_dir/spm/spm" --vocab-size "$vocab_size" --model-type "$spm_model_type" \
    --character-coverage "$character_coverage" --input-sentence-size "$spm_sample" --threads "$nj"
  dp spm-encode --model "$work_dir/spm/spm.model" --src "$src" --tgt "$tgt" \
    --in-dir "$work_dir/tok" --out-dir "$work_dir/spm" --splits train valid "${test_list[@]}" \
    --filter-split train --max-len "$max_len"
  _record 3 "$sig"
}

stage_4() {
  if _up_to_date 4 "binarised" "$work_dir/bin"; then echo "up to date: $work_dir/bin"; return; fi
  local tests=() split
  for split in "${test_list[@]}"; do tests+=(--test "$split=$work_dir/spm/$split"); done
  dp binarize --src "$src" --tgt "$tgt" --train "$work_dir/spm/train" \
    --valid "$work_dir/spm/valid" "${tests[@]}" --destdir "$work_dir/bin" --workers "$nj"
  _record 4 "binarised"
}

train_command() {  # the fairseq-train command line, one word per array element
  local extra=()
  train_cmd=(fairseq-train "$work_dir/bin" --user-dir "$user_dir" --task "$task"
    --source-lang "$src" --target-lang "$tgt" --arch "$arch")
  if [[ $arch == entmax_* ]]; then
    train_cmd+=(--encoder-attn-normalizer "$encoder_attn_normalizer"
      --decoder-self-attn-normalizer "$decoder_self_attn_normalizer"
      --decoder-cross-attn-normalizer "$decoder_cross_attn_normalizer"
      --attn-alpha-init "$attn_alpha_init")
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
  _use_cpu && train_cmd+=(--cpu)
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
  local ckpt name subset extra=() cpu=()
  ckpt=$(_checkpoint_path)
  read -ra extra <<< "$gen_args"
  _use_cpu && cpu=(--cpu)
  for name in "${test_list[@]}"; do
    subset="<fairseq subset of $name>"
    [[ $dry_run == true ]] || subset=$("$python_bin" -m data_prep subset --destdir "$work_dir/bin" --name "$name")
    run_to "$work_dir/generate/$name.out" fairseq-generate "$work_dir/bin" \
      --user-dir "$user_dir" --task "$task" --source-lang "$src" \
      --target-lang "$tgt" --path "$ckpt" --gen-subset "$subset" --beam "$beam" \
      --lenpen "$lenpen" --batch-size "$gen_batch_size" --required-batch-size-multiple 1 \
      --remove-bpe sentencepiece "${cpu[@]}" "${extra[@]}"
    dp hypotheses --generate-output "$work_dir/generate/$name.out" \
      --reference "$work_dir/raw/$name.$tgt" --output "$work_dir/generate/$name.hyp"
    if [[ $tokenizer == moses ]]; then
      dp detokenize --lang "$tgt" --input "$work_dir/generate/$name.hyp" \
        --output "$work_dir/generate/$name.detok"
    else
      run cp "$work_dir/generate/$name.hyp" "$work_dir/generate/$name.detok"
    fi
  done
}

stage_7() {
  local name case=()
  [[ $ter_case_sensitive == true ]] && case=(--ter-case-sensitive)
  for name in "${test_list[@]}"; do
    run_to "$work_dir/scores/$name.txt" sacrebleu "$work_dir/raw/$name.$tgt" \
      -i "$work_dir/generate/$name.detok" -m bleu ter -w 2 -f text "${case[@]}"
  done
  [[ $dry_run == true ]] && return 0
  echo "scores (detokenised output against the raw references):"
  for name in "${test_list[@]}"; do
    sed "s/^ */  $name  /" "$work_dir/scores/$name.txt"
  done
}

stage_8() {
  local ckpt extra=() more=(--user-dir "$user_dir")
  ckpt=$(_checkpoint_path)
  [[ $dry_run == true ]] || command -v sparse-seq2seq-heads > /dev/null \
    || die "sparse-seq2seq-heads not found; install the project (pip install -e .) in $python_bin's environment"
  [[ -f $work_dir/train.log || $dry_run == true ]] && more+=(--log "$work_dir/train.log")
  _use_cpu && more+=(--cpu)
  read -ra extra <<< "$heads_args"
  run sparse-seq2seq-heads "$ckpt" --data "$work_dir/bin" --out "$work_dir/heads" "${more[@]}" "${extra[@]}"
}

run_recipe() {
  declare_options
  parse_options "$@"
  finish_options
  local n started
  for n in 0 1 2 3 4 5 6 7 8; do
    (( stage <= n && n <= stop_stage )) || continue
    echo "=== stage $n: $(sed -n "s/^#   $n \([a-z]*\) .*/\1/p" "${BASH_SOURCE[0]}") ($(date +%H:%M:%S))"
    started=$SECONDS
    "stage_$n"
    echo "=== stage $n done in $((SECONDS - started)) s"
  done
}
