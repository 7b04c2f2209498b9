#!/usr/bin/env bash
# WMT16-18 APE En-De (NMT and SMT subtasks) with BERT-initialised encoder and decoder, the
# set-up of Correia & Martins (ACL 2019) for GPU users:
#   - mBERT (bert-base-multilingual-cased) as encoder and decoder, the paper's best sharing
#     (context attention initialised from self-attention, self-attention shared with the encoder);
#   - trained on the 23K real triplets, optionally mixed with eSCAPE oversampled 35 times so
#     that the real data are about a tenth of the mix;
#   - BERT-style Adam, lr 5e-5, 5,000 warm-up updates then linear decay, weight decay 0.01,
#     label smoothing 0.1, 50,000 updates of 512 x 2 tokens, beam 5.
# The WMT APE data sit behind a form: download them and give the folder holding
# {train,dev,test}.{src,mt,pe} (concatenate the 2016-2018 training sets into train.*):
#   recipes/wmt18_ape/run.sh --wmt-dir ~/data/wmt18-ape-en-de [--escape-dir ~/data/escape-nmt]
# --escape-dir is a folder holding train.{src,mt,pe}.
set -euo pipefail
recipe_name=wmt18_ape
bert=${BERT:-bert-base-multilingual-cased}
arch=bert_ape_base
lr=5e-5
warmup_updates=5000
max_update=50000
max_tokens=512
update_freq=2
save_interval_updates=1000
beam=5
gen_batch_size=64
gen_args="--max-len-a 1.2 --max-len-b 10"
fp16=true
device=cuda
here=$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)
source "$here/../common/ape_stages.sh"
stage 0 plan "the options and the stages"
stage 1 data "validate and copy the WMT triplets, TER(mt, pe) statistics, mix with eSCAPE" \
  writes=text
stage 2 binarise "BERT WordPiece ids for the ape task" reads=text writes=bin
stage 3 train "fairseq-train --task ape --arch bert_ape_base" reads=bin creates=checkpoints
stage 4 decode "post-edit the test set; TER/BLEU against pe and do-nothing" \
  reads="bin checkpoints text" writes=decode
ape_options
opt wmt_dir "" "folder with {train,dev,test}.{src,mt,pe} of the WMT APE task"
opt escape_dir "" "folder with eSCAPE train.{src,mt,pe} (empty: real data only)"
opt oversample 35 "copies of the real triplets mixed with eSCAPE"
parse_options "$@"
finish_ape_options
check_int oversample
[[ -n $wmt_dir || $stage -gt 1 || $stop_stage -lt 1 ]] || die "--wmt-dir is required for stage 1"

stage_0() {
  echo "recipe $recipe_name: WMT APE from ${wmt_dir:-<--wmt-dir>}, eSCAPE ${escape_dir:-none}, BERT $bert"
  print_options
  print_stages
}

stage_1() {
  local text; text=$(aside text)
  ape import "$wmt_dir" --out "$text"
  ape stats "$text/train" "$text/dev" "$text/test"
  if [[ -n $escape_dir ]]; then
    ape stats "$escape_dir/train"
    ape mix --real "$text/train" --synthetic "$escape_dir/train" --oversample "$oversample" \
      --out "$text/mix"
  fi
}

stage_2() {
  local train=$work_dir/text/train
  [[ -z $escape_dir ]] || train=$work_dir/text/mix
  ape binarize --bert "$bert" --train "$train" --valid "$work_dir/text/dev" \
    --split "test=$work_dir/text/test" --destdir "$(aside bin)" --skip-invalid-train true
}

stage_3() {
  ape_train "$work_dir/bin" "$work_dir/checkpoints"
}

stage_4() {
  ape_decode "$work_dir/bin" test "$work_dir/text/test" "$(aside decode)"
}

run_stages
