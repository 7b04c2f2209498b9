# The stage runner of every recipe (sourced by run.sh; bash only).
#
# A recipe declares its stages, then its options, then runs them:
#   stage 2 text "Moses tokenisation" reads=raw writes=tok    # stage_2 does the work
#   common_options; opt ...; parse_options "$@"; finish_common_options; run_stages
# `reads`, `writes` and `creates` name folders under --work-dir (`creates`: written in place,
# e.g. checkpoints that training resumes from). A stage whose input folder is missing
# stops before it creates anything, saying which stage writes it. A stage writes each of its
# output folders aside (`$(aside tok)`, i.e. WORK_DIR/.tok.partial) and the runner swaps
# them in only when the whole stage succeeded, so a failed or interrupted stage leaves the
# earlier outputs as they were. A stage with a function `signature_N` (printing its options)
# is skipped while its outputs exist and the signature is unchanged (--force true reruns it);
# a stage that runs makes the later stages with signatures run again.
# Commands run through `run CMD...` (printed; skipped by --dry-run true) and
# `run_to FILE CMD...` (stdout to FILE, atomically). SIGTERM, SIGINT or SIGHUP stops the
# running command with every process it started and removes the stage's partial outputs.

recipe_root=$(cd "$(dirname "${BASH_SOURCE[0]}")/../.." && pwd)
source "$(dirname "${BASH_SOURCE[0]}")/options.sh"

_stage_order=()
declare -A _stage_name=() _stage_about=() _stage_reads=() _stage_writes=() _stage_creates=()
_partials=()  # temporary files of run_to
_staged=()    # output folders of the running stage, written aside
_child=""     # the command running now

stage() {  # stage N NAME ABOUT [reads=DIRS] [writes=DIRS] [creates=DIRS]: stage N, run by stage_N
  local n=$1 item
  _stage_order+=("$n")
  _stage_name[$n]=$2
  _stage_about[$n]=$3
  _stage_reads[$n]=""
  _stage_writes[$n]=""
  _stage_creates[$n]=""
  shift 3
  for item in "$@"; do
    case $item in
      reads=*) _stage_reads[$n]=${item#reads=} ;;
      writes=*) _stage_writes[$n]=${item#writes=} ;;
      creates=*) _stage_creates[$n]=${item#creates=} ;;
      *) echo "stage $n: unknown declaration '$item'" >&2; exit 2 ;;
    esac
  done
}

print_stages() {  # one line per stage (an ABOUT of several lines keeps them, aligned)
  local n
  for n in "${_stage_order[@]}"; do
    printf '  stage %s: %-10s %s\n' "$n" "${_stage_name[$n]}" \
      "$(sed '2,$s/^ */                      /' <<< "${_stage_about[$n]}")"
  done
}

common_options() {  # the options every recipe has
  local venv_python=python3
  [[ -x $recipe_root/.venv/bin/python ]] && venv_python=$recipe_root/.venv/bin/python
  opt stage "${_stage_order[0]}" "first stage"
  opt stop_stage "${_stage_order[-1]}" "last stage"
  opt dry_run false "print the selected stages' commands without running them"
  opt work_dir "$recipe_root/exp/$recipe_name" "folder for every output"
  opt python_bin "$venv_python" "Python of the project's environment"
  opt_alias out work_dir
  opt_alias python python_bin
}

finish_common_options() {  # check the common options; make paths absolute; PATH and PYTHONPATH
  check_int stage stop_stage
  check_bool dry_run
  work_dir=$(absolute "$work_dir")
  [[ -x $python_bin ]] || python_bin=$(command -v "$python_bin") || die "no Python '$python_bin'"
  case $python_bin in */*) PATH="$(dirname "$python_bin"):$PATH" ;; esac
  export PATH PYTHONPATH="$recipe_root${PYTHONPATH:+:$PYTHONPATH}"
}

absolute() {  # absolute PATH: PATH made absolute against the current folder ('' stays '')
  if [[ -z $1 ]]; then echo ""; else realpath -m -- "$1"; fi
}

mirror_path() {  # mirror_path DIR: DIR absolute; a relative one is tried against the project root too
  local dir=$1
  if [[ -n $dir && $dir != /* && ! -d $dir && -d $recipe_root/$dir ]]; then dir=$recipe_root/$dir; fi
  absolute "$dir"
}

device_option() {
  opt device auto "auto (a GPU when torch sees one), cpu or cuda"
}

use_cpu() {  # true when fairseq should get --cpu: --device cpu, or auto on a machine without GPU
  if [[ $device == auto ]]; then
    device=cuda
    [[ $("$python_bin" -c 'import torch; print(torch.cuda.is_available())') == True ]] || device=cpu
  fi
  [[ $device == cpu ]]
}

attention_types() {  # attn_flags/attn_labels and normalizers, from the project's one registry
  # (python -m sparse_seq2seq.registry), cached per version of the registry file
  local registry=$recipe_root/sparse_seq2seq/registry.py py sum cache tmp line
  py=${python_bin:-${PYTHON_BIN:-$recipe_root/.venv/bin/python}}
  [[ -x $py ]] || py=python3
  sum=$(sha256sum "$registry" | cut -c1-16)
  cache=${XDG_CACHE_HOME:-${HOME:-/tmp}/.cache}/sparse_seq2seq/registry.$sum
  if [[ ! -s $cache ]]; then
    mkdir -p "$(dirname "$cache")"
    tmp=$(mktemp "$cache.XXXXXX")
    if ! { PYTHONPATH=$recipe_root "$py" -m sparse_seq2seq.registry --types && echo "--" &&
           PYTHONPATH=$recipe_root "$py" -m sparse_seq2seq.registry --normalizers; } > "$tmp"; then
      rm -f "$tmp"
      die "python -m sparse_seq2seq.registry failed with $py"
    fi
    mv -f "$tmp" "$cache"
  fi
  attn_flags=() attn_labels=() normalizers=()
  local part=types key flag label
  while IFS= read -r line; do
    if [[ $line == "--" ]]; then part=normalizers; continue; fi
    if [[ $part == types ]]; then
      read -r key flag label <<< "$line"
      attn_flags+=("$flag")
      attn_labels+=("$label")
    else
      normalizers+=("$line")
    fi
  done < "$cache"
}

flag_option() {  # flag_option --some-flag: the option variable of that flag (some_flag)
  local name=${1#--}
  echo "${name//-/_}"
}

# --- running commands ----------------------------------------------------------------------

run() {  # run CMD...: print CMD, then run it unless --dry-run true
  echo "+ $(printf '%q ' "$@")"
  [[ $dry_run == true ]] || _wait_for "$@"
}

run_to() {  # run_to FILE CMD...: like run, with CMD's output written to FILE atomically
  local out=$1 rc=0 tmp; shift
  echo "+ $(printf '%q ' "$@")> $(printf '%q' "$out")"
  [[ $dry_run == true ]] && return 0
  mkdir -p "$(dirname "$out")"
  tmp=$(mktemp "$(_temp_template "$out")")
  _partials+=("$tmp")
  _wait_for "$@" > "$tmp" || rc=$?
  if (( rc != 0 )); then rm -f "$tmp"; return "$rc"; fi
  mv -f "$tmp" "$out"
}

dp() { run "$python_bin" -m data_prep "$@"; }

_temp_template() {  # _temp_template PATH: mktemp's template DIR/.NAME.XXXXXX.partial for PATH
  # (the names data_prep/atomic.py gives); a PATH that is aside already, DIR/.NAME.partial,
  # gets the same template as DIR/NAME, so that a temporary name ends in .partial only once
  local dir name
  dir=$(dirname "$1") name=$(basename "$1")
  if [[ $name == ?*.partial ]]; then
    name=${name%.partial}
    if [[ $name == .?* ]]; then name=${name#.}; fi
  fi
  printf '%s/.%s.XXXXXX.partial' "$dir" "$name"
}

_wait_for() {  # CMD in the background, waited for: a signal then reaches the trap at once
  local rc=0
  "$@" &
  _child=$!
  wait "$_child" || rc=$?
  _child=""
  return "$rc"
}

_descendants() {  # _descendants PID: every process below PID
  local pid
  for pid in $(pgrep -P "$1" 2>/dev/null); do echo "$pid"; _descendants "$pid"; done
}

_alive() {  # _alive PID...: some PID is a process that has not ended (zombies have)
  ps -o stat= -p "$(IFS=,; echo "$*")" 2>/dev/null | grep -q '^[[:space:]]*[^Z[:space:]]'
}

_stop_tree() {  # _stop_tree PID: SIGTERM to PID and everything it started; SIGKILL after 10 s
  local pids tries=0
  pids=("$1" $(_descendants "$1"))
  kill -TERM "${pids[@]}" 2>/dev/null || true
  while _alive "${pids[@]}" && (( tries++ < 100 )); do sleep 0.1; done
  kill -KILL "${pids[@]}" 2>/dev/null || true
  wait "$1" 2>/dev/null || true
}

_on_signal() {  # _on_signal NAME STATUS
  trap '' TERM INT HUP
  echo "$(basename "$0"): stopped by SIG$1; removing partial outputs" >&2
  [[ -n $_child ]] && _stop_tree "$_child"
  exit "$2"
}

_cleanup() {
  rm -f "${_partials[@]}"
  rm -rf "${_staged[@]}"
}

trap _cleanup EXIT
trap '_on_signal TERM 143' TERM
trap '_on_signal INT 130' INT
trap '_on_signal HUP 129' HUP

# --- stages --------------------------------------------------------------------------------

aside() {  # aside DIR: where the running stage writes its output folder WORK_DIR/DIR
  local path=$work_dir/$1
  printf '%s/.%s.partial' "$(dirname "$path")" "$(basename "$path")"
}

_writer_of() {  # _writer_of DIR: the stage that declares DIR among its outputs
  local n dir
  for n in "${_stage_order[@]}"; do
    for dir in ${_stage_writes[$n]} ${_stage_creates[$n]}; do
      [[ $dir == "$1" ]] && { echo "$n"; return; }
    done
  done
}

_check_inputs() {  # stop, creating nothing, when an input folder of stage N is missing
  local n=$1 dir m
  for dir in ${_stage_reads[$n]}; do
    [[ -e $work_dir/$dir ]] && continue
    m=$(_writer_of "$dir")
    [[ -n $m ]] || die "stage $n (${_stage_name[$n]}) needs $work_dir/$dir"
    die "stage $n (${_stage_name[$n]}) needs $work_dir/$dir, which stage $m" \
        "(${_stage_name[$m]}) writes: run it first (--stage $m)"
  done
}

_up_to_date() {  # _up_to_date N SIGNATURE: stage N's outputs exist, made with these options
  local dir file=$work_dir/.stages/$1
  [[ ${force:-false} != true && -f $file && $(< "$file") == "$2" ]] || return 1
  for dir in ${_stage_writes[$1]}; do [[ -e $work_dir/$dir ]] || return 1; done
}

_record() {  # _record N SIGNATURE: stage N succeeded; later stages are out of date
  local file
  mkdir -p "$work_dir/.stages"
  for file in "$work_dir"/.stages/*; do
    [[ -f $file ]] && (( $(basename "$file") > $1 )) && rm -f "$file"
  done
  printf '%s\n' "$2" > "$work_dir/.stages/$1"
}

_swap_in() {  # replace each output folder of the stage by the one written aside
  local dir final new old
  for dir in ${_stage_writes[$1]}; do
    final=$work_dir/$dir
    new=$(aside "$dir")
    old=${new%.partial}.old
    rm -rf "$old"
    if [[ -e $final || -L $final ]]; then mv "$final" "$old"; fi
    mv "$new" "$final"
    rm -rf "$old"
  done
  _staged=()
}

_run_stage() {
  local n=$1 dir sig=""
  [[ $dry_run == true ]] || _check_inputs "$n"
  if declare -F "signature_$n" > /dev/null; then
    sig=$("signature_$n")
    if [[ $dry_run != true ]] && _up_to_date "$n" "$sig"; then
      echo "up to date: $(for dir in ${_stage_writes[$n]}; do printf '%s ' "$work_dir/$dir"; done)"
      return 0
    fi
  fi
  if [[ $dry_run != true ]]; then
    for dir in ${_stage_writes[$n]}; do
      _staged+=("$(aside "$dir")")
      rm -rf "${_staged[-1]}"
      mkdir -p "${_staged[-1]}"
    done
  fi
  "stage_$n"
  [[ $dry_run == true ]] && return 0
  _swap_in "$n"
  [[ -z $sig ]] || _record "$n" "$sig"
}

run_stages() {  # run every declared stage within --stage..--stop-stage, in order
  local n started
  for n in "${_stage_order[@]}"; do
    (( stage <= n && n <= stop_stage )) || continue
    echo "=== stage $n: ${_stage_name[$n]} ($(date +%H:%M:%S))"
    started=$SECONDS
    _run_stage "$n"
    echo "=== stage $n done in $((SECONDS - started)) s"
  done
}
