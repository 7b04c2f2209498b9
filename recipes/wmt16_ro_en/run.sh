#!/usr/bin/env bash
# WMT16 ro->en (Europarl v7 + SETIMES2; newsdev2016; newstest2016) with the paper's set-up.
#   recipes/wmt16_ro_en/run.sh --stage 0 --stop-stage 0    # the plan: options, URLs, checksums
#   recipes/wmt16_ro_en/run.sh --checksums my.sha256       # stages 1-9
# The archives' sha256 are not recorded in data_prep.corpora: pass --checksums FILE
# ('<sha256>  <archive name>' lines) or --allow-unverified true.
set -euo pipefail
recipe_name=wmt16_ro_en
src=ro
tgt=en
test_sets=newstest2016
here=$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)
source "$here/../common/paper_defaults.sh"
validate_interval_updates=10000
source "$here/../common/mt_stages.sh"
run_recipe "$@"
