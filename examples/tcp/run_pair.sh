#!/usr/bin/env bash
# SPDX-License-Identifier: MIT
# Runs one or two example programs over loopback and checks what the caller
# did. Used by the example.tcp.* tests.
#
#   run_pair.sh EXPECTATION [--caller-first] [--needs-ipv6] -- FIRST [ARGS...] [-- SECOND [ARGS...]]
#
# FIRST starts first. With a SECOND, FIRST is a server: the script waits for
# its first line on stdout (which names the addresses it listens on), puts
# the ports it names into SECOND's arguments (@PORT1@, @PORT2@, ...), then
# starts SECOND. The caller is SECOND, or FIRST with --caller-first (or when
# alone); the other one serves until the caller is done, then gets SIGTERM and
# must exit 0. EXPECTATION is about the caller:
#   --expect-list            exits 0; its last line is [0, 1, 4, ..., 81]
#   --expect-failure TEXT    exits 1 within 30 s; TEXT is on its stderr
#   --expect-usage           exits 2; "usage:" is on its stderr
# --needs-ipv6 skips the test (exit 77) on a machine without IPv6 loopback.
set -u

list='[0, 1, 4, 9, 16, 25, 36, 49, 64, 81]'
expect= text= caller=second
while [ $# -gt 0 ] && [ "$1" != -- ]; do
  case $1 in
    --expect-list | --expect-usage) expect=$1 ;;
    --expect-failure) expect=$1 text=$2; shift ;;
    --caller-first) caller=first ;;
    --needs-ipv6)
      grep -qs '^0\{31\}1 ' /proc/net/if_inet6 || { echo "no IPv6 loopback: skipped"; exit 77; } ;;
    *) echo "run_pair.sh: unknown option $1" >&2; exit 2 ;;
  esac
  shift
done
[ -n "$expect" ] && [ $# -gt 1 ] || { echo "run_pair.sh: see the usage in its header" >&2; exit 2; }
shift
first=() second=()
while [ $# -gt 0 ] && [ "$1" != -- ]; do first+=("$1"); shift; done
[ $# -gt 0 ] && shift
second=("$@")
[ ${#second[@]} -gt 0 ] || caller=first

dir=$(mktemp -d)
pids=()
cleanup() {
  for pid in "${pids[@]}"; do kill -KILL "$pid" 2>/dev/null; done
  rm -rf "$dir"
}
trap cleanup EXIT

fail() {
  echo "FAILED: $*"
  for f in "$dir"/*; do
    [ -s "$f" ] && { echo "---- ${f##*/}"; cat "$f"; }
  done
  exit 1
}

# Waits up to $2 seconds for process $1 to end; its exit status goes in $status.
wait_for() {
  local deadline=$((SECONDS + $2))
  while kill -0 "$1" 2>/dev/null; do
    [ $SECONDS -lt $deadline ] || return 1
    sleep 0.1
  done
  wait "$1"
  status=$?
}

echo "+ ${first[*]}"
"${first[@]}" >"$dir/first.out" 2>"$dir/first.err" &
first_pid=$!
pids+=("$first_pid")

if [ ${#second[@]} -gt 0 ]; then
  for ((i = 0; i < 300; ++i)); do
    [ -s "$dir/first.out" ] && break
    kill -0 "$first_pid" 2>/dev/null || fail "the first program ended before saying it listens"
    sleep 0.1
  done
  ready=$(head -n 1 "$dir/first.out")
  [ -n "$ready" ] || fail "the first program said nothing within 30 s"
  # The ports are what follows the last ':' of each address: ":15383," or ":15383" at the end.
  ports=($(grep -oE ':[0-9]+(,|$)' <<<"$ready" | tr -d ':,'))
  for ((i = 0; i < ${#ports[@]}; ++i)); do second=("${second[@]//@PORT$((i + 1))@/${ports[i]}}"); done
  echo "+ ${second[*]}"
  "${second[@]}" >"$dir/second.out" 2>"$dir/second.err" &
  second_pid=$!
  pids+=("$second_pid")
fi

if [ $caller = first ]; then
  caller_pid=$first_pid service_pid=${second_pid-} out=$dir/first.out err=$dir/first.err
else
  caller_pid=$second_pid service_pid=$first_pid out=$dir/second.out err=$dir/second.err
fi

start=$SECONDS
wait_for "$caller_pid" 60 || fail "the caller did not finish within 60 s"
caller_status=$status
elapsed=$((SECONDS - start))

if [ -n "$service_pid" ]; then
  kill -TERM "$service_pid"
  wait_for "$service_pid" 30 || fail "the serving program did not stop within 30 s of SIGTERM"
  [ $status -eq 0 ] || fail "the serving program exited with $status after SIGTERM, not 0"
fi

case $expect in
  --expect-list)
    [ $caller_status -eq 0 ] || fail "the caller exited with $caller_status, not 0"
    [ "$(tail -n 1 "$out")" = "$list" ] || fail "the caller's last line is not $list"
    ;;
  --expect-failure)
    [ $caller_status -eq 1 ] || fail "the caller exited with $caller_status, not 1"
    [ $elapsed -le 30 ] || fail "the caller took $elapsed s to give up"
    grep -qF -- "$text" "$err" || fail "the caller's stderr does not say: $text"
    ;;
  --expect-usage)
    [ $caller_status -eq 2 ] || fail "exit status $caller_status, not 2"
    grep -q 'usage:' "$err" || fail "no usage on stderr"
    ;;
esac
for f in "$dir"/*; do
  [ -s "$f" ] && { echo "---- ${f##*/}"; cat "$f"; }
done
echo "passed"
