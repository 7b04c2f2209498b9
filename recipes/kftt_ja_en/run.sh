#!/usr/bin/env bash
# KFTT ja->en (Kyoto Free Translation Task 1.0, Wikipedia articles about Kyoto) with the
# paper's set-up.
#   recipes/kftt_ja_en/run.sh --stage 0 --stop-stage 0    # the plan: options, URLs, checksums
#   recipes/kftt_ja_en/run.sh --checksums my.sha256       # stages 1-9
# The archive's sha256 is not recorded in data_prep.corpora: pass --checksums FILE
# ('<sha256>  kftt-data-1.0.tar.gz') or --allow-unverified true.
# Uses the untokenised files (data/orig): Moses tokenisation only splits punctuation in
# Japanese and sentencepiece segments the rest. Validation: kyoto-dev; test: kyoto-test.
set -euo pipefail
recipe_name=kftt_ja_en
src=ja
tgt=en
test_sets=test
here=$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)
source "$here/../common/paper_defaults.sh"
validate_interval_updates=5000
source "$here/../common/mt_stages.sh"
run_recipe "$@"
