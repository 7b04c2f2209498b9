#!/usr/bin/env bash
# Automatic post-editing of MLQE-PE (en-de or en-zh) with a BERT-initialised encoder-decoder
# (Correia & Martins, ACL 2019), start to finish with fairseq's `ape` task:
#   recipes/mlqe_pe_ape/run.sh                          # every stage with the MiniLM BERT
#   BERT=bert-base-multilingual-cased recipes/mlqe_pe_ape/run.sh --device cuda --beam 5 ...
#   recipes/mlqe_pe_ape/run.sh --stage 3 --stop-stage 4 --init random
#   recipes/mlqe_pe_ape/run.sh --help                   # every option and its value
# Defaults fit a CPU: a short budget (100 updates of 512 tokens, greedy decoding).
set -euo pipefail
recipe_name=mlqe_pe_ape
here=$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)
source "$here/../common/ape_stages.sh"
stage 0 plan "the options and the stages"
stage 1 data "MLQE-PE tarballs (\$DATA_MIRROR/mlqe-pe or GitHub, sha256-checked) ->
           text/{train,dev,test20}.{src,mt,pe}; TER(mt, pe) of each split (do nothing)" \
  creates=downloads writes=text
stage 2 binarise "BERT WordPiece ids for the ape task (vocabulary = BERT's)" reads=text writes=bin
stage 3 train "fairseq-train --task ape --arch bert_ape (BERT-style Adam, warm-up, linear decay)" \
  reads=bin creates=checkpoints
stage 4 decode "fairseq-generate on the test set (TER with signature), detokenised back to the
           triplets' tokens, TER/BLEU (sacrebleu signatures) against pe and do-nothing" \
  reads="bin checkpoints text" writes=decode
ape_options
opt pair en-de "MLQE-PE language pair: en-de or en-zh"
opt test_set test20 "split to post-edit and score: test20 or dev"
parse_options "$@"
finish_ape_options
check_choice pair en-de en-zh
check_choice test_set test20 dev

stage_0() {
  echo "recipe $recipe_name: MLQE-PE $pair, BERT $bert, stages $stage..$stop_stage, work dir $work_dir"
  print_options
  print_stages
}

stage_1() {
  local text; text=$(aside text)
  ape mlqe-pe --pair "$pair" --dest "$work_dir/downloads" --out "$text" \
    ${data_mirror:+--mirror "$data_mirror"}
  ape stats "$text/train" "$text/dev" "$text/test20"
}

stage_2() {
  ape binarize --bert "$bert" --train "$work_dir/text/train" --valid "$work_dir/text/dev" \
    --split "test20=$work_dir/text/test20" --destdir "$(aside bin)"
}

stage_3() {
  ape_train "$work_dir/bin" "$work_dir/checkpoints"
}

stage_4() {
  local split=$test_set
  [[ $split == dev ]] && split=valid
  ape_decode "$work_dir/bin" "$split" "$work_dir/text/$test_set" "$(aside decode)"
}

run_stages
