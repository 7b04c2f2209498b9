#!/usr/bin/env bash
# IWSLT 2017 de->en (TED talks, WIT3 release 2017-01-trnted) with the paper's set-up.
#   recipes/iwslt17_de_en/run.sh --stage 0 --stop-stage 0    # the plan: options, URLs, checksums
#   recipes/iwslt17_de_en/run.sh --checksums my.sha256       # stages 1-9
# The archive's sha256 is not recorded in data_prep.corpora: pass --checksums FILE
# ('<sha256>  iwslt17-de-en.tgz') or --allow-unverified true.
# Validation: dev2010; test: tst2015 (tst2010-tst2014 are in the archive too: --test-sets).
set -euo pipefail
recipe_name=iwslt17_de_en
src=de
tgt=en
test_sets=tst2015
here=$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)
source "$here/../common/paper_defaults.sh"
validate_interval_updates=5000
source "$here/../common/mt_stages.sh"
run_recipe "$@"
