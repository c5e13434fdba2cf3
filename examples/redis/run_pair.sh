#!/usr/bin/env bash
# SPDX-License-Identifier: MIT
# Starts a private redis-server, then the Redis example programs against it,
# and checks what the last one did. Used by the example.redis.* tests.
#
#   run_pair.sh EXPECTATION... [--requirepass PASSWORD] -- PROGRAM [ARGS...] [-- PROGRAM [ARGS...]]...
#
# redis-server ($PATIO_REDIS_SERVER, else the one on the PATH or in /usr/sbin)
# listens on a free port of 127.0.0.1, in a temporary directory, saving
# nothing; --requirepass gives it a password. @PORT@ in any argument is its
# port. Every program but the last is a worker: the script starts it, waits
# for its first line on stdout (it serves), and once the last program is done
# sends it SIGTERM, after which it must say "closed" and exit 0. The last
# program is the one checked (a caller, or a lone worker that must fail):
#   --expect-success         exits 0 and shows the tour: the squares, a
#                            remote_error and a no_route_error on stdout
#   --expect-stdout TEXT     TEXT is on its stdout (repeatable)
#   --expect-failure TEXT    exits 1 within 30 s; TEXT is on its stderr
#   --expect-usage           exits 2; "usage:" is on its stderr
# Without redis-server the test is skipped (exit 77).
set -u

expect= text= requirepass= stdout_texts=()
while [ $# -gt 0 ] && [ "$1" != -- ]; do
  case $1 in
    --expect-success | --expect-usage) expect=$1 ;;
    --expect-failure) expect=$1 text=$2; shift ;;
    --expect-stdout) stdout_texts+=("$2"); shift ;;
    --requirepass) requirepass=$2; shift ;;
    *) echo "run_pair.sh: unknown option $1" >&2; exit 2 ;;
  esac
  shift
done
[ -n "$expect" ] && [ $# -gt 1 ] || { echo "run_pair.sh: see the usage in its header" >&2; exit 2; }
[ "$expect" = --expect-success ] && stdout_texts+=(
  "mul(i, i) for i in 0..9 = [0, 1, 4, 9, 16, 25, 36, 49, 64, 81]"
  "div(1, 0) raised remote_error: std::domain_error: division by zero"
  "no_such_function(1) raised no_route_error")

redis=${PATIO_REDIS_SERVER:-$(PATH=$PATH:/usr/sbin command -v redis-server)}
[ -n "$redis" ] && [ -x "$redis" ] || { echo "redis-server not found (apt-get install redis-server): skipped"; exit 77; }

dir=$(mktemp -d)
pids=()
redis_pid=
cleanup() {
  for pid in "${pids[@]}" $redis_pid; do kill -KILL "$pid" 2>/dev/null && wait "$pid" 2>/dev/null; done
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

# A free port: one nobody answers on, which redis-server then manages to
# bind (another process may take it in between: then try another).
port=
for ((attempt = 0; attempt < 20 && ! port; ++attempt)); do
  candidate=$((20000 + RANDOM % 30000))
  (exec 3<>"/dev/tcp/127.0.0.1/$candidate") 2>/dev/null && continue
  : >"$dir/redis.log"
  extra=()
  [ -n "$requirepass" ] && extra=(--requirepass "$requirepass")
  "$redis" --port "$candidate" --bind 127.0.0.1 --dir "$dir" --save "" --appendonly no \
    --logfile "$dir/redis.log" "${extra[@]}" &
  redis_pid=$!
  for ((i = 0; i < 100; ++i)); do
    grep -q 'Ready to accept connections' "$dir/redis.log" && { port=$candidate; break; }
    kill -0 "$redis_pid" 2>/dev/null || break
    sleep 0.1
  done
  [ -n "$port" ] || { kill -KILL "$redis_pid" 2>/dev/null; wait "$redis_pid" 2>/dev/null; redis_pid=; }
done
[ -n "$port" ] || fail "redis-server did not start on a free port"
echo "+ redis-server on 127.0.0.1:$port${requirepass:+ (requirepass)}"

# The programs, split at each --, @PORT@ replaced: program n is
# "${all[@]:${starts[n]}:${sizes[n]}}".
all=() starts=() sizes=()
shift
for arg in "$@" --; do
  if [ "$arg" = -- ]; then
    [ ${#starts[@]} -eq 0 ] && previous=0 || previous=$((${starts[-1]} + ${sizes[-1]}))
    starts+=("$previous") sizes+=($((${#all[@]} - previous)))
  else
    all+=("${arg//@PORT@/$port}")
  fi
done

workers=()
last=$((${#starts[@]} - 1))
for ((n = 0; n < last; ++n)); do
  program=("${all[@]:${starts[n]}:${sizes[n]}}")
  echo "+ ${program[*]}"
  "${program[@]}" >"$dir/worker$n.out" 2>"$dir/worker$n.err" &
  pid=$!
  pids+=("$pid") workers+=("$pid")
  for ((i = 0; i < 300; ++i)); do
    [ -s "$dir/worker$n.out" ] && break
    kill -0 "$pid" 2>/dev/null || fail "worker $n ended before saying it serves"
    sleep 0.1
  done
  [ -s "$dir/worker$n.out" ] || fail "worker $n said nothing within 30 s"
done

program=("${all[@]:${starts[last]}:${sizes[last]}}")
echo "+ ${program[*]}"
"${program[@]}" >"$dir/last.out" 2>"$dir/last.err" &
last_pid=$!
pids+=("$last_pid")
start=$SECONDS
wait_for "$last_pid" 120 || fail "the last program did not finish within 120 s"
last_status=$status
elapsed=$((SECONDS - start))

for ((n = 0; n < ${#workers[@]}; ++n)); do
  kill -TERM "${workers[n]}"
  wait_for "${workers[n]}" 30 || fail "worker $n did not stop within 30 s of SIGTERM"
  [ $status -eq 0 ] || fail "worker $n exited with $status after SIGTERM, not 0"
  [ "$(tail -n 1 "$dir/worker$n.out")" = closed ] || fail "worker $n did not say closed"
done

case $expect in
  --expect-success)
    [ $last_status -eq 0 ] || fail "the last program exited with $last_status, not 0"
    ;;
  --expect-failure)
    [ $last_status -eq 1 ] || fail "the last program exited with $last_status, not 1"
    [ $elapsed -le 30 ] || fail "the last program took $elapsed s to give up"
    grep -qF -- "$text" "$dir/last.err" || fail "its stderr does not say: $text"
    ;;
  --expect-usage)
    [ $last_status -eq 2 ] || fail "exit status $last_status, not 2"
    grep -q 'usage:' "$dir/last.err" || fail "no usage on stderr"
    ;;
esac
for line in "${stdout_texts[@]}"; do
  grep -qF -- "$line" "$dir/last.out" || fail "its stdout does not say: $line"
done
for f in "$dir"/*.out "$dir"/*.err; do
  [ -s "$f" ] && { echo "---- ${f##*/}"; cat "$f"; }
done
echo "passed"
