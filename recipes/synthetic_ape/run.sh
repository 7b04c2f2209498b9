#!/usr/bin/env bash
# Synthetic post-editing triplets from Multi30k, APE pre-training on them, fine-tuning on real
# MLQE-PE en-de triplets (Correia & Martins, ACL 2019, pre-train on artificial data, then real):
#   recipes/synthetic_ape/run.sh                         # every stage, CPU-sized budgets
#   recipes/synthetic_ape/run.sh --style both --k 4 --mt-updates 2000
#   recipes/synthetic_ape/run.sh --help
# Stages:
#   0 plan      the options and the stages
#   1 text      Multi30k ($DATA_MIRROR/multi30k or GitHub, sha256-checked), Moses-tokenised
#               like MLQE-PE; MLQE-PE en-de triplets
#   2 folds     k jackknife folds of Multi30k train (each fold is translated by MT models
#               trained on the other folds only)
#   3 mt        per fold: joint sentencepiece, fairseq-preprocess, entmax_transformer_tiny
#               en->de (and de->en for round-trip), translations of the held-out fold
#   4 triplets  eSCAPE style (en, MT(en), de) and/or round-trip (BT(de), MT(BT(de)), de);
#               TER(mt, pe) statistics of each; mixed with the real triplets (oversampled)
#   5 binarise  WordPiece ids: the pre-training mix, and MLQE-PE
#   6 pretrain  bert_ape on the mix
#   7 finetune  bert_ape on MLQE-PE, starting from the pre-trained model
#   8 decode    MLQE-PE test20: TER/BLEU against pe and against do-nothing
set -euo pipefail
recipe_name=synthetic_ape
here=$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)
source "$here/../common/options.sh"
source "$here/../common/ape_pipeline.sh"
ape_declare_options
opt style escape "synthetic triplets: escape, roundtrip or both"
opt k 2 "jackknife folds"
opt limit 8000 "Multi30k pairs used (drawn at random; 0 = all 29,000)"
opt mt_vocab_size 4000 "joint sentencepiece vocabulary of the MT models"
opt mt_updates 300 "updates of each MT model"
opt mt_max_tokens 4096 "tokens per MT batch"
opt mt_beam 1 "beam of the MT models"
opt oversample 1 "copies of the real triplets in the pre-training mix (the paper: 35)"
opt pretrain_updates 50 "APE pre-training updates (on the mix)"
opt finetune_updates 50 "APE fine-tuning updates (on MLQE-PE)"
ape_parse "$@"
check_choice style escape roundtrip both
for name in k limit mt_vocab_size mt_updates mt_max_tokens mt_beam oversample pretrain_updates \
            finetune_updates; do check_int "$name"; done
stage_names=([0]=plan [1]=text [2]=folds [3]=mt [4]=triplets [5]=binarise [6]=pretrain
             [7]=finetune [8]=decode)
dp() { run "$python_bin" -m data_prep "$@"; }
S=$work_dir/synthetic

stage_0() {
  echo "recipe $recipe_name: Multi30k -> $style triplets ($k folds) -> APE pre-training -> MLQE-PE"
  echo "BERT $bert; work dir $work_dir; stages $stage..$stop_stage"
  print_options
}

stage_1() {
  local mirror=(${data_mirror:+--mirror "$data_mirror"}) split
  dp download multi30k_de_en --dest "$S/downloads" "${mirror[@]}"
  dp extract multi30k_de_en --downloads "$S/downloads" --out "$S/raw" --splits train valid
  for split in train valid; do
    dp prepare-text --src en --tgt de --input "$S/raw/$split" --output "$S/tok/$split" \
      --drop-empty true
  done
  ape mlqe-pe --pair en-de --dest "$work_dir/downloads" --out "$work_dir/text" "${mirror[@]}"
}

stage_2() {
  local limit_args=()
  [[ $limit == 0 ]] || limit_args=(--limit "$limit")
  ape folds --input "$S/tok/train" --src en --tgt de --k "$k" --seed "$seed" "${limit_args[@]}" \
    --out "$S/folds"
}

# mt_model FOLD SRC TGT: train the fold's SRC->TGT model and translate its held-out SRC side.
mt_model() {
  local d=$S/folds/fold$1 s=$2 t=$3 bin cpu=()
  bin=$d/bin.$s-$t
  _ape_cpu && cpu=(--cpu)
  dp binarize --src "$s" --tgt "$t" --train "$d/sp.train" --valid "$d/sp.valid" \
    --test "heldout=$d/sp.heldout" --destdir "$bin"
  run fairseq-train "$bin" --user-dir "$user_dir" --task translation --source-lang "$s" \
    --target-lang "$t" --arch entmax_transformer_tiny --share-all-embeddings \
    --encoder-attn-normalizer softmax --decoder-self-attn-normalizer softmax \
    --decoder-cross-attn-normalizer softmax --criterion label_smoothed_cross_entropy \
    --label-smoothing 0.1 --optimizer adam --adam-betas "(0.9, 0.98)" --lr 2e-3 \
    --lr-scheduler inverse_sqrt --warmup-updates $(( mt_updates / 5 + 1 )) --dropout 0.1 \
    --max-tokens "$mt_max_tokens" --max-update "$mt_updates" --disable-validation \
    --no-epoch-checkpoints --save-dir "$d/ckpt.$s-$t" --seed "$seed" --log-format simple \
    --log-interval 20 --num-workers 0 "${cpu[@]}"
  translate "$1" "$s" "$t" heldout "$bin"
}

# translate FOLD SRC TGT NAME BIN: fold model SRC->TGT on split NAME of BIN -> $d/NAME.SRC-TGT.hyp
translate() {
  local d=$S/folds/fold$1 s=$2 t=$3 name=$4 bin=$5 subset cpu=()
  _ape_cpu && cpu=(--cpu)
  subset=test
  [[ $dry_run == true ]] || subset=$("$python_bin" -m data_prep subset --destdir "$bin" --name "$name")
  run_to "$d/$name.$s-$t.gen" fairseq-generate "$bin" --user-dir "$user_dir" --task translation \
    --source-lang "$s" --target-lang "$t" --path "$d/ckpt.$s-$t/checkpoint_last.pt" \
    --gen-subset "$subset" --beam "$mt_beam" --batch-size 200 --required-batch-size-multiple 1 \
    --remove-bpe sentencepiece --max-len-a 1.2 --max-len-b 10 "${cpu[@]}"
  dp hypotheses --generate-output "$d/$name.$s-$t.gen" --reference "$d/$name.$t" \
    --output "$d/$name.$s-$t.hyp"
}

stage_3() {
  local f d
  for (( f = 0; f < k; f++ )); do
    d=$S/folds/fold$f
    dp spm-train --inputs "$d/train.en" "$d/train.de" --model-prefix "$d/spm" \
      --vocab-size "$mt_vocab_size"
    dp spm-encode --model "$d/spm.model" --src en --tgt de --input "$d/train" \
      --output "$d/sp.train" --max-len 100
    dp spm-encode --model "$d/spm.model" --src en --tgt de --input "$S/tok/valid" --output "$d/sp.valid"
    dp spm-encode --model "$d/spm.model" --src en --tgt de --input "$d/heldout" --output "$d/sp.heldout"
    mt_model "$f" en de
    if [[ $style != escape ]]; then
      mt_model "$f" de en  # back-translation of the held-out German
      run cp "$d/heldout.de-en.hyp" "$d/bt.en"
      run cp "$d/heldout.de" "$d/bt.de"
      dp spm-encode --model "$d/spm.model" --src en --tgt de --input "$d/bt" --output "$d/sp.bt"
      dp binarize --src en --tgt de --train "$d/sp.train" --valid "$d/sp.valid" \
        --test "bt=$d/sp.bt" --destdir "$d/bin.bt" -- --srcdict "$d/bin.en-de/dict.en.txt"
      translate "$f" en de bt "$d/bin.bt"  # forward translation of the back-translation
    fi
  done
}

stage_4() {
  local f d parts=() sets=()
  if [[ $style != roundtrip ]]; then
    parts=()
    for (( f = 0; f < k; f++ )); do
      d=$S/folds/fold$f
      parts+=(--src "$d/heldout.en" --mt "$d/heldout.en-de.hyp" --pe "$d/heldout.de")
    done
    ape assemble "${parts[@]}" --skip-empty true --out "$S/escape"
    sets+=("$S/escape")
  fi
  if [[ $style != escape ]]; then
    parts=()
    for (( f = 0; f < k; f++ )); do
      d=$S/folds/fold$f
      parts+=(--src "$d/bt.en" --mt "$d/bt.en-de.hyp" --pe "$d/heldout.de")
    done
    ape assemble "${parts[@]}" --skip-empty true --out "$S/roundtrip"
    sets+=("$S/roundtrip")
  fi
  ape mix --real "$work_dir/text/train" --synthetic "${sets[@]}" --oversample "$oversample" \
    --out "$S/mix"
}

stage_5() {
  ape binarize --bert "$bert" --train "$S/mix" --valid "$work_dir/text/dev" \
    --destdir "$work_dir/bin.pretrain" --skip-invalid-train true
  ape binarize --bert "$bert" --train "$work_dir/text/train" --valid "$work_dir/text/dev" \
    --split "test20=$work_dir/text/test20" --destdir "$work_dir/bin"
}

stage_6() {
  local max_update=$pretrain_updates warmup_updates=$(( pretrain_updates / 10 ))
  ape_train "$work_dir/bin.pretrain" "$work_dir/checkpoints.pretrain"
}

stage_7() {
  local max_update=$finetune_updates warmup_updates=$(( finetune_updates / 10 ))
  local init_from=$work_dir/checkpoints.pretrain/checkpoint_last.pt
  ape_train "$work_dir/bin" "$work_dir/checkpoints"
}

stage_8() {
  ape_decode "$work_dir/bin" test20 "$work_dir/text/test20" "$work_dir/decode"
}

ape_run_stages 0 1 2 3 4 5 6 7 8
