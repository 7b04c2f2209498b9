#!/usr/bin/env bash
# WMT14 en->de (Europarl v7 + Common Crawl + News Commentary v9, about 4.5M pairs;
# newstest2013; newstest2014) with the paper's set-up.
#   recipes/wmt14_en_de/run.sh --stage 0 --stop-stage 0    # the plan: options, URLs, checksums
#   recipes/wmt14_en_de/run.sh --checksums my.sha256       # stages 1-9
# The archives' sha256 are not recorded in data_prep.corpora: pass --checksums FILE
# ('<sha256>  <archive name>' lines) or --allow-unverified true.
set -euo pipefail
recipe_name=wmt14_en_de
src=en
tgt=de
test_sets=newstest2014
here=$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)
source "$here/../common/paper_defaults.sh"
arch=entmax_transformer_wmt_en_de
validate_interval_updates=10000
source "$here/../common/mt_stages.sh"
run_recipe "$@"
