#!/usr/bin/env bash
# Synthetic post-editing triplets from Multi30k, APE pre-training on them, fine-tuning on real
# MLQE-PE en-de triplets (Correia & Martins, ACL 2019, pre-train on artificial data, then real):
#   recipes/synthetic_ape/run.sh                         # every stage, CPU-sized budgets
#   recipes/synthetic_ape/run.sh --style both --k 4 --mt-updates 2000
#   recipes/synthetic_ape/run.sh --help
set -euo pipefail
recipe_name=synthetic_ape
here=$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)
source "$here/../common/ape_stages.sh"
S=synthetic  # the synthetic side's folders, under --work-dir
stage 0 plan "the options and the stages"
stage 1 text "Multi30k (\$DATA_MIRROR/multi30k or GitHub, sha256-checked), Moses-tokenised
           like MLQE-PE; MLQE-PE en-de triplets" \
  creates="$S/downloads downloads" writes="$S/raw $S/tok text"
stage 2 folds "k jackknife folds of Multi30k train (each fold is translated by MT models
           trained on the other folds only)" reads=$S/tok writes=$S/folds
stage 3 mt "per fold: joint sentencepiece, fairseq-preprocess, entmax_transformer_tiny
           en->de (and de->en for round-trip), translations of the held-out fold" \
  reads="$S/folds $S/tok" writes=$S/mt
stage 4 triplets "eSCAPE style (en, MT(en), de) and/or round-trip (BT(de), MT(BT(de)), de);
           TER(mt, pe) statistics of each; mixed with the real triplets (oversampled)" \
  reads="$S/folds $S/mt text" writes=$S/triplets
stage 5 binarise "WordPiece ids: the pre-training mix, and MLQE-PE" reads="$S/triplets text" \
  writes="bin.pretrain bin"
stage 6 pretrain "bert_ape on the mix" reads=bin.pretrain creates=checkpoints.pretrain
stage 7 finetune "bert_ape on MLQE-PE, starting from the pre-trained model" \
  reads="bin checkpoints.pretrain" creates=checkpoints
stage 8 decode "MLQE-PE test20: TER/BLEU against pe and against do-nothing" \
  reads="bin checkpoints text" writes=decode
ape_options
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
parse_options "$@"
finish_ape_options
check_choice style escape roundtrip both
check_int k limit mt_vocab_size mt_updates mt_max_tokens mt_beam oversample pretrain_updates \
  finetune_updates
folds=$work_dir/$S/folds tok=$work_dir/$S/tok mt=$work_dir/$S/mt

stage_0() {
  echo "recipe $recipe_name: Multi30k -> $style triplets ($k folds) -> APE pre-training -> MLQE-PE"
  echo "BERT $bert; work dir $work_dir; stages $stage..$stop_stage"
  print_options
  print_stages
}

stage_1() {
  local mirror=(${data_mirror:+--mirror "$data_mirror"}) split raw new_tok
  raw=$(aside $S/raw) new_tok=$(aside $S/tok)
  dp download multi30k_de_en --dest "$work_dir/$S/downloads" "${mirror[@]}"
  dp extract multi30k_de_en --downloads "$work_dir/$S/downloads" --out "$raw" --splits train valid
  for split in train valid; do
    dp prepare-text --src en --tgt de --input "$raw/$split" --output "$new_tok/$split" \
      --drop-empty true
  done
  ape mlqe-pe --pair en-de --dest "$work_dir/downloads" --out "$(aside text)" "${mirror[@]}"
}

stage_2() {
  local limit_args=()
  [[ $limit == 0 ]] || limit_args=(--limit "$limit")
  ape folds --input "$tok/train" --src en --tgt de --k "$k" --seed "$seed" "${limit_args[@]}" \
    --out "$(aside $S/folds)"
}

# mt_model FOLD SRC TGT: train fold FOLD's SRC->TGT model (in the fold's folder of the stage's
# output) and translate the fold's held-out SRC side.
mt_model() {
  local m=$(aside $S/mt)/fold$1 s=$2 t=$3 cpu=()
  use_cpu && cpu=(--cpu)
  dp binarize --src "$s" --tgt "$t" --train "$m/sp.train" --valid "$m/sp.valid" \
    --test "heldout=$m/sp.heldout" --destdir "$m/bin.$s-$t"
  run fairseq-train "$m/bin.$s-$t" --user-dir "$user_dir" --task translation --source-lang "$s" \
    --target-lang "$t" --arch entmax_transformer_tiny --share-all-embeddings \
    --encoder-attn-normalizer softmax --decoder-self-attn-normalizer softmax \
    --decoder-cross-attn-normalizer softmax --criterion label_smoothed_cross_entropy \
    --label-smoothing 0.1 --optimizer adam --adam-betas "(0.9, 0.98)" --lr 2e-3 \
    --lr-scheduler inverse_sqrt --warmup-updates $(( mt_updates / 5 + 1 )) --dropout 0.1 \
    --max-tokens "$mt_max_tokens" --max-update "$mt_updates" --disable-validation \
    --no-epoch-checkpoints --save-dir "$m/ckpt.$s-$t" --seed "$seed" --log-format simple \
    --log-interval 20 --num-workers 0 "${cpu[@]}"
  translate "$1" "$s" "$t" heldout "$m/bin.$s-$t" "$folds/fold$1/heldout.$t"
}

# translate FOLD SRC TGT NAME BIN REF: fold model SRC->TGT on split NAME of BIN (REF: its
# reference, for the line count) -> NAME.SRC-TGT.hyp in the fold's folder
translate() {
  local m=$(aside $S/mt)/fold$1 s=$2 t=$3 name=$4 bin=$5 subset cpu=()
  use_cpu && cpu=(--cpu)
  subset=test
  [[ $dry_run == true ]] || subset=$("$python_bin" -m data_prep subset --destdir "$bin" --name "$name")
  run_to "$m/$name.$s-$t.gen" fairseq-generate "$bin" --user-dir "$user_dir" --task translation \
    --source-lang "$s" --target-lang "$t" --path "$m/ckpt.$s-$t/checkpoint_last.pt" \
    --gen-subset "$subset" --beam "$mt_beam" --batch-size 200 --required-batch-size-multiple 1 \
    --remove-bpe sentencepiece --max-len-a 1.2 --max-len-b 10 "${cpu[@]}"
  dp hypotheses --generate-output "$m/$name.$s-$t.gen" --reference "$6" \
    --output "$m/$name.$s-$t.hyp"
}

stage_3() {
  local f d m
  for (( f = 0; f < k; f++ )); do
    d=$folds/fold$f m=$(aside $S/mt)/fold$f
    run mkdir -p "$m"
    dp spm-train --inputs "$d/train.en" "$d/train.de" --model-prefix "$m/spm" \
      --vocab-size "$mt_vocab_size"
    dp spm-encode --model "$m/spm.model" --src en --tgt de --input "$d/train" \
      --output "$m/sp.train" --max-len 100
    dp spm-encode --model "$m/spm.model" --src en --tgt de --input "$tok/valid" --output "$m/sp.valid"
    dp spm-encode --model "$m/spm.model" --src en --tgt de --input "$d/heldout" --output "$m/sp.heldout"
    mt_model "$f" en de
    if [[ $style != escape ]]; then
      mt_model "$f" de en  # back-translation of the held-out German
      run cp "$m/heldout.de-en.hyp" "$m/bt.en"
      run cp "$d/heldout.de" "$m/bt.de"
      dp spm-encode --model "$m/spm.model" --src en --tgt de --input "$m/bt" --output "$m/sp.bt"
      dp binarize --src en --tgt de --train "$m/sp.train" --valid "$m/sp.valid" \
        --test "bt=$m/sp.bt" --destdir "$m/bin.bt" -- --srcdict "$m/bin.en-de/dict.en.txt"
      translate "$f" en de bt "$m/bin.bt" "$m/bt.de"  # forward translation of the back-translation
    fi
  done
}

stage_4() {
  local f d m parts=() sets=() out
  out=$(aside $S/triplets)
  if [[ $style != roundtrip ]]; then
    parts=()
    for (( f = 0; f < k; f++ )); do
      d=$folds/fold$f m=$mt/fold$f
      parts+=(--src "$d/heldout.en" --mt "$m/heldout.en-de.hyp" --pe "$d/heldout.de")
    done
    ape assemble "${parts[@]}" --skip-empty true --out "$out/escape"
    sets+=("$out/escape")
  fi
  if [[ $style != escape ]]; then
    parts=()
    for (( f = 0; f < k; f++ )); do
      d=$folds/fold$f m=$mt/fold$f
      parts+=(--src "$m/bt.en" --mt "$m/bt.en-de.hyp" --pe "$d/heldout.de")
    done
    ape assemble "${parts[@]}" --skip-empty true --out "$out/roundtrip"
    sets+=("$out/roundtrip")
  fi
  ape mix --real "$work_dir/text/train" --synthetic "${sets[@]}" --oversample "$oversample" \
    --out "$out/mix"
}

stage_5() {
  ape binarize --bert "$bert" --train "$work_dir/$S/triplets/mix" --valid "$work_dir/text/dev" \
    --destdir "$(aside bin.pretrain)" --skip-invalid-train true
  ape binarize --bert "$bert" --train "$work_dir/text/train" --valid "$work_dir/text/dev" \
    --split "test20=$work_dir/text/test20" --destdir "$(aside bin)"
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
  ape_decode "$work_dir/bin" test20 "$work_dir/text/test20" "$(aside decode)"
}

run_stages
