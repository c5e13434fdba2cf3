# Runs the example server (for a few seconds) and client side by side, with a
# shared key, and checks the client printed its 100 results.
set(port 15399)
execute_process(
  COMMAND ${SERVER} --address 127.0.0.1 --port ${port} --key example-key --serve-for 3
  COMMAND ${CLIENT} --host 127.0.0.1 --port ${port} --key example-key
  OUTPUT_VARIABLE out
  RESULTS_VARIABLE results
  TIMEOUT 50)
message(STATUS "client printed: ${out}")
message(STATUS "exit codes: ${results}")
if(NOT results STREQUAL "0;0")
  message(FATAL_ERROR "server and client did not both succeed: ${results}")
endif()
if(NOT out MATCHES "^\\[6(, 6)+\\]")
  message(FATAL_ERROR "the client did not print the 100 results")
endif()
string(REGEX MATCHALL "6" sixes "${out}")
list(LENGTH sixes n)
if(NOT n EQUAL 100)
  message(FATAL_ERROR "expected 100 results, got ${n}")
endif()
