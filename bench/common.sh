# Shared by the bench scripts (sourced, not run): their arguments, their scratch folder, and the
# arithmetic they report with.

# parse_bench_args "$@": sets rounds (--rounds N, default 5) and dir (--dir DIR, default empty);
# --help prints the calling script's header comment.
parse_bench_args() {
  rounds=5
  dir=""
  while [ $# -gt 0 ]; do
    case $1 in
      --rounds) rounds=$2; shift 2 ;;
      --dir) dir=$2; shift 2 ;;
      -h|--help) awk 'NR > 1 && /^#/ {sub(/^# ?/, ""); print; next} NR > 1 {exit}' "$0"; exit 0 ;;
      *) echo "$0: unknown argument $1 (see --help)" >&2; exit 2 ;;
    esac
  done
}

# scratch_dir NAME MIN_FREE_KB: when no --dir was given, a fresh folder in /dev/shm (tmpfs) if it
# has MIN_FREE_KB free, else under /tmp, removed at exit. Sets dir to its absolute path.
scratch_dir() {
  if [ -z "$dir" ]; then
    local base=/tmp shm_free_kb
    shm_free_kb=$(df -Pk /dev/shm 2>/dev/null | awk 'NR == 2 {print $4}')
    [ "${shm_free_kb:-0}" -gt "$2" ] && base=/dev/shm
    dir=$(mktemp -d "$base/tapedeck-$1-XXXXXX")
    trap 'rm -rf "$dir"' EXIT
  fi
  mkdir -p "$dir"
  dir=$(cd "$dir" && pwd)
}

median() { sort -g | awk '{a[NR]=$1} END {print (NR % 2) ? a[(NR+1)/2] : (a[NR/2] + a[NR/2+1]) / 2}'; }
ratio() { awk -v a="$1" -v b="$2" 'BEGIN {printf "%.2f", (b > 0) ? a / b : 0}'; }

# seconds CMD...: the wall time of one run of CMD, its output discarded (its errors kept in
# $dir/cmd.err and shown when it fails, which stops the bench).
seconds() {
  local start stop
  start=$(date +%s%N)
  "$@" >/dev/null 2>"$dir/cmd.err" || { echo "bench: failed: $* ($(head -c 300 "$dir/cmd.err"))" >&2; exit 1; }
  stop=$(date +%s%N)
  awk -v ns=$((stop - start)) 'BEGIN {printf "%.4f\n", ns / 1e9}'
}
