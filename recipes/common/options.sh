# Options of a staged recipe (sourced by run.sh; bash only).
#
# `opt NAME DEFAULT HELP` declares the option --NAME (underscores become dashes) whose value
# comes, in order of precedence, from the command line (`--name value` or `--name=value`),
# the environment variable NAME in capitals (e.g. MAX_UPDATE), a value the recipe set before
# declaring it, and DEFAULT. `parse_options "$@"` reads the command line.

_recipe_options=()
declare -A _recipe_help=()
declare -A _recipe_origin=()

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
  _is_option "$name" || die "unknown option $flag (see --help)"
  printf -v "$name" '%s' "$value"
  _recipe_origin[$name]="command line"
}

print_options() {
  local name
  for name in "${_recipe_options[@]}"; do
    printf '  --%-32s %-28s # %s\n' "${name//_/-}" "'${!name}'" "${_recipe_help[$name]}"
  done
}

parse_options() {
  while [[ $# -gt 0 ]]; do
    case $1 in
      -h|--help)
        echo "usage: $0 [--name value ...]"
        echo "options (current value; each can also be set by its name in capitals in the environment):"
        print_options
        exit 0 ;;
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

# check_int NAME : fail unless option NAME holds a non-negative integer.
check_int() {
  [[ ${!1} =~ ^[0-9]+$ ]] || die "--${1//_/-} '${!1}': expected a non-negative integer"
}
