#!/usr/bin/env bash
# The GPU checks in one run (about 8 minutes at most): the CUDA tests, then
# bench_attention.py, bench_sweeps.py, bench_mappings.py and bench_train.py with --device
# cuda, each step under its own time limit, outputs under "$OUT" (9 files: gpu_check.log,
# tests.txt, bench_sweeps.txt and a .txt + .json per timed benchmark).
#
#   bash benchmarks/gpu_check.sh fetch       # here, with pip: packages for the GPU machine in .whl/
#   OUT=/some/dir bash benchmarks/gpu_check.sh   # on the GPU machine (nothing fetched there)
#   GPU_CHECK_DRY=1 OUT=/tmp/x bash benchmarks/gpu_check.sh   # the same steps, CPU, tiny sizes
#
# The GPU machine's python3 has torch and triton; what it lacks (the entmax package,
# adasplash, fairseq and its needs) travels in .whl/ and is installed into /tmp/site.
# A missing package skips only the steps that need it.
set -uo pipefail
ROOT="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
cd "$ROOT"
PY="${PYTHON:-python3}"
WHEELS="$ROOT/.whl"

if [[ "${1:-}" == "fetch" ]]; then
  set -e
  mkdir -p "$WHEELS"
  grep -qx '/.whl/' .git/info/exclude 2>/dev/null || echo '/.whl/' >> .git/info/exclude
  PLATFORMS=(--platform manylinux_2_28_x86_64 --platform manylinux_2_17_x86_64 --platform manylinux2014_x86_64)
  "$PY" -m pip download -q --no-deps --only-binary=:all: --python-version 3.12 --implementation cp \
    "${PLATFORMS[@]}" -d "$WHEELS" entmax==1.3 adasplash==0.2.2 hydra-core==1.3.2 omegaconf==2.3.0 \
    bitarray==3.12.3
  "$PY" -m pip wheel -q --no-deps -w "$WHEELS" antlr4-python3-runtime==4.9.3
  "$PY" -m pip download -q --no-deps --no-binary :all: --no-build-isolation -d "$WHEELS" fairseq-fixed==0.12.3.1
  mkdir -p "$WHEELS/data"  # bench_train's Multi30k (1.3 MB) travels too
  cp -r "${DATA_MIRROR:-$ROOT/../shared/data}/multi30k" "$WHEELS/data/"
  ls -la "$WHEELS"; du -sh "$WHEELS"
  exit 0
fi

OUT="${OUT:?set OUT to the folder for the outputs}"
mkdir -p "$OUT"
LOG="$OUT/gpu_check.log"
: > "$LOG"
say() { echo "$*" | tee -a "$LOG"; }

# step NAME LIMIT_S FILE CMD...: run CMD under a time limit, its output appended to FILE
step() {
  local name=$1 limit=$2 file=$3; shift 3
  local start=$SECONDS
  say "== $name (limit ${limit}s): $*"
  timeout --kill-after=10 "$limit" "$@" >> "$file" 2>&1
  local rc=$?
  say "== $name: exit $rc after $((SECONDS - start))s$([[ $rc == 124 ]] && echo ' (time limit)')"
  tail -n 25 "$file" >> "$LOG"
  return 0
}

DEVICE=cuda
QUICK=()
TRAIN_ARGS=(--repeats 3)
if [[ -n "${GPU_CHECK_DRY:-}" ]]; then
  DEVICE=cpu
  QUICK=(--quick)
  TRAIN_ARGS=(--quick)
  export TRITON_INTERPRET=1
  say "# dry run on the CPU (GPU_CHECK_DRY set): tiny sizes, no installs"
else
  "$PY" -c "import torch, sys; sys.exit(0 if torch.cuda.is_available() else 1)" \
    || { say "no CUDA device visible to $PY"; exit 1; }
  if [[ -d "$WHEELS" ]]; then
    "$PY" -m pip install -q --no-index --no-deps --no-compile --no-cache-dir --upgrade \
      --target /tmp/site "$WHEELS"/*.whl >> "$LOG" 2>&1 && export PYTHONPATH=/tmp/site
    if ! PYTHONPATH=/tmp/site "$PY" -c "import fairseq" 2>/dev/null && ls "$WHEELS"/fairseq_fixed-*.tar.gz >/dev/null 2>&1; then
      step install_fairseq 200 "$LOG" env -u CUDA_HOME "$PY" -m pip install -q --no-index --no-deps --no-build-isolation \
        --no-cache-dir --target /tmp/site "$WHEELS"/fairseq_fixed-*.tar.gz
    fi
  else
    say "# no .whl/ (run 'bash benchmarks/gpu_check.sh fetch' where pip works): using what is installed"
  fi
fi
export PYTHONPATH="$ROOT${PYTHONPATH:+:$PYTHONPATH}"
[[ -d "$WHEELS/data/multi30k" ]] && export DATA_MIRROR="${DATA_MIRROR:-$WHEELS/data}"
export DATA_MIRROR="${DATA_MIRROR:-$ROOT/../shared/data}" HF_HUB_OFFLINE=1 TRANSFORMERS_OFFLINE=1
"$PY" - >> "$LOG" 2>&1 <<'EOF'
import importlib, torch
print("torch", torch.__version__, "cuda", torch.cuda.is_available(),
      torch.cuda.get_device_name() if torch.cuda.is_available() else "")
for name in ("triton", "adasplash", "entmax", "fairseq"):
    try:
        print(name, getattr(importlib.import_module(name), "__version__", "?"))
    except Exception as err:
        print(name, "missing:", type(err).__name__, err)
EOF

KERNEL_TESTS=(tests/test_cuda_kernels.py tests/test_kernels_attention.py tests/test_kernels_rowwise.py
              tests/test_kernels_module.py)
if [[ -n "${GPU_CHECK_DRY:-}" ]]; then
  step tests 240 "$OUT/tests.txt" "$PY" -m pytest -q -x -m "not slow" -p no:cacheprovider tests/test_kernels_rowwise.py
else
  step kernel_tests 180 "$OUT/tests.txt" "$PY" -m pytest -q -m "not slow" -p no:cacheprovider "${KERNEL_TESTS[@]}"
  step cuda_tests 60 "$OUT/tests.txt" "$PY" -m pytest -q -m "cuda and not slow" -p no:cacheprovider tests \
    --ignore=tests/test_cuda_kernels.py
fi
step bench_attention 110 "$OUT/bench_attention.txt" "$PY" benchmarks/bench_attention.py --device "$DEVICE" \
  "${QUICK[@]}" --json "$OUT/bench_attention.json"
step bench_sweeps 30 "$OUT/bench_sweeps.txt" "$PY" benchmarks/bench_sweeps.py --device "$DEVICE" \
  "${QUICK[@]}"
step bench_mappings 60 "$OUT/bench_mappings.txt" "$PY" benchmarks/bench_mappings.py --device "$DEVICE" \
  "${QUICK[@]}" --json "$OUT/bench_mappings.json"
if "$PY" -c "import fairseq" 2>/dev/null; then
  step bench_train 100 "$OUT/bench_train.txt" "$PY" benchmarks/bench_train.py --device "$DEVICE" \
    "${TRAIN_ARGS[@]}" --json "$OUT/bench_train.json"
else
  say "== bench_train: skipped (fairseq does not import)"
fi
say "== done in ${SECONDS}s"
