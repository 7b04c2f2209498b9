# Options of a staged recipe (sourced through stages.sh; bash only).
#
# `opt NAME DEFAULT HELP` declares the option --NAME (underscores become dashes) whose value
# comes, in order of precedence, from the command line (`--name value` or `--name=value`),
# the environment variable NAME in capitals (e.g. MAX_UPDATE), a value the recipe set before
# declaring it, and DEFAULT. `opt_alias OLD NAME` accepts --OLD as another spelling of --NAME.
# `parse_options "$@"` reads the command line; `--help` prints the recipe's header comment,
# its stages and every option with its current value.

_recipe_options=()
declare -A _recipe_help=()
declare -A _recipe_origin=()
declare -A _recipe_alias=()

opt() {
  local name=$1 default=$2 env=${1^^}
  _recipe_options+=("$name")
  _recipe_help[$name]=$3
  if [[ -n ${!env+x} ]]; then
    printf -v "$name" '%s' "${!env}"
    _recipe_origin[$name]="env $env"
  elif [[ -z ${!name+x} ]]; then
    printf -v "$name" '%s' "$default"
    _recipe_origin[$name]=default
  else
    _recipe_origin[$name]=recipe
  fi
}

opt_alias() {  # opt_alias OLD NAME: --OLD is accepted for --NAME
  _recipe_alias[$1]=$2
}

die() {
  echo "$(basename "$0"): error: $*" >&2
  exit 1
}

_is_option() {
  local name
  for name in "${_recipe_options[@]}"; do [[ $name == "$1" ]] && return 0; done
  return 1
}

_set_option() {
  local flag=$1 value=$2 name
  name=${flag#--}
  name=${name//-/_}
  [[ -n ${_recipe_alias[$name]:-} ]] && name=${_recipe_alias[$name]}
  _is_option "$name" || die "unknown option $flag (see --help)"
  printf -v "$name" '%s' "$value"
  _recipe_origin[$name]="command line"
}

print_options() {
  local name old also
  for name in "${_recipe_options[@]}"; do
    also=""
    for old in "${!_recipe_alias[@]}"; do
      [[ ${_recipe_alias[$old]} == "$name" ]] && also+=" (also --${old//_/-})"
    done
    printf '  --%-32s %-28s # %s%s\n' "${name//_/-}" "'${!name}'" "${_recipe_help[$name]}" "$also"
  done
}

_print_help() {
  sed -n '2,/^[^#]/{/^#/s/^# \{0,1\}//p}' "$0"
  echo
  echo "usage: $0 [--name value ...]"
  if declare -F print_stages > /dev/null; then
    echo "stages (--stage N --stop-stage M):"
    print_stages
  fi
  echo "options (current value; each can also be set by its name in capitals in the environment):"
  print_options
}

parse_options() {
  while [[ $# -gt 0 ]]; do
    case $1 in
      -h|--help) _print_help; exit 0 ;;
      --*=*) _set_option "${1%%=*}" "${1#*=}"; shift ;;
      --*)
        [[ $# -ge 2 ]] || die "option $1 needs a value"
        _set_option "$1" "$2"; shift 2 ;;
      *) die "unexpected argument '$1' (options are --name value; see --help)" ;;
    esac
  done
}

# check_choice NAME CHOICE... : fail unless option NAME holds one of the choices.
check_choice() {
  local name=$1 choice; shift
  for choice in "$@"; do [[ ${!name} == "$choice" ]] && return 0; done
  die "--${name//_/-} '${!name}': expected one of: $*"
}

# check_int NAME... : fail unless each option NAME holds a non-negative integer.
check_int() {
  local name
  for name in "$@"; do
    [[ ${!name} =~ ^[0-9]+$ ]] || die "--${name//_/-} '${!name}': expected a non-negative integer"
  done
}

# check_bool NAME... : fail unless each option NAME is true or false.
check_bool() {
  local name
  for name in "$@"; do check_choice "$name" true false; done
}
