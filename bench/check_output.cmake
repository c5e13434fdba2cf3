# SPDX-License-Identifier: MIT
# Checks patio-bench's output: every line a JSON object with the keys its
# case and mode promise, and every case and mode of a full run present.
# No timing assertions: the figures need only be numbers.
#
#   cmake -DINPUT=bench.jsonl [-DEXPECT_REDIS=OFF] -P bench/check_output.cmake
#
# EXPECT_REDIS=OFF: a run without the Redis cases (no redis-server, or
# patio built with PATIO_WITH_REDIS=OFF) passes; they are expected otherwise.
cmake_minimum_required(VERSION 3.25)

if(NOT DEFINED INPUT)
  message(FATAL_ERROR "usage: cmake -DINPUT=<patio-bench output> -P check_output.cmake")
endif()
file(STRINGS "${INPUT}" lines)

set(common case calls inflight repeat calls_per_s raw_calls_per_s ratio)
set(allocs allocs_per_call new_per_call bytes_per_call)
set(tcp_common mode server_executor pin connections payload_bytes)
set(sequential p50_us p99_us raw_p50_us raw_p99_us)
set(redis_keys workers p50_us p99_us raw_p50_us raw_p99_us latency_ratio)
set(strings case mode server_executor pin counted)
if(NOT DEFINED EXPECT_REDIS)
  set(EXPECT_REDIS ON)
endif()
# One row per case, mode and window of a full run.
set(expected
  "memory_async" "memory_thread_pool" "process_pool"
  "tcp/sequential/1" "tcp/pipelined/64" "tcp/pipelined/1024"
  "tcp_tls/sequential/1" "tcp_tls/pipelined/64"
  "tcp_conns/pipelined/64"
  "tcp_bytes/sequential/1" "tcp_bytes/pipelined/64")
if(EXPECT_REDIS)
  # Per worker count: bursts to 4 and to 1 worker, and one at a time to 1.
  list(APPEND expected "redis/4" "redis/1" "redis_sequential/1")
endif()

set(seen "")
set(n 0)
set(counted 0)
foreach(line IN LISTS lines)
  math(EXPR n "${n} + 1")
  string(JSON type ERROR_VARIABLE err TYPE "${line}")
  if(err OR NOT type STREQUAL "OBJECT")
    message(FATAL_ERROR "line ${n} is not a JSON object: ${line}")
  endif()
  string(JSON name GET "${line}" case)
  set(keys ${common})
  if(name MATCHES "^tcp")
    list(APPEND keys ${tcp_common})
    string(JSON mode GET "${line}" mode)
    string(JSON inflight GET "${line}" inflight)
    if(mode STREQUAL "sequential")
      list(APPEND keys ${sequential})
    elseif(mode STREQUAL "pipelined")
      list(APPEND keys ${allocs} counted)
    else()
      message(FATAL_ERROR "line ${n}: unknown mode '${mode}'")
    endif()
    set(row "${name}/${mode}/${inflight}")
  elseif(name MATCHES "^redis")
    list(APPEND keys ${redis_keys})
    string(JSON workers GET "${line}" workers)
    set(row "${name}/${workers}")
  else()
    if(name MATCHES "^memory_")
      list(APPEND keys ${allocs})
    endif()
    set(row "${name}")
  endif()
  foreach(key IN LISTS keys)
    string(JSON t ERROR_VARIABLE err TYPE "${line}" ${key})
    if(err)
      message(FATAL_ERROR "line ${n} (${row}) lacks \"${key}\": ${line}")
    endif()
    if(key IN_LIST strings)
      set(want STRING)
    else()
      set(want NUMBER)
    endif()
    if(NOT t STREQUAL want)
      message(FATAL_ERROR "line ${n} (${row}): \"${key}\" is ${t}, not ${want}: ${line}")
    endif()
  endforeach()
  list(APPEND seen "${row}")
  # Redis lines a run printed anyway do not count against EXPECT_REDIS=OFF.
  if(EXPECT_REDIS OR NOT name MATCHES "^redis")
    math(EXPR counted "${counted} + 1")
  endif()
endforeach()

foreach(row IN LISTS expected)
  if(NOT row IN_LIST seen)
    message(FATAL_ERROR "no line for ${row} in ${INPUT}")
  endif()
endforeach()
list(LENGTH expected want_n)
if(NOT counted EQUAL want_n)
  message(FATAL_ERROR "${counted} lines in ${INPUT}, expected ${want_n}")
endif()
message(STATUS "patio-bench output: ${n} well-formed lines")
