# Fails unless the first ```cpp block of README.md is, from its #include on,
# exactly examples/memory/thread_pool.cpp from its #include on: the README's
# quickstart is the example, verbatim.
file(READ ${SOURCE_DIR}/README.md readme)
string(FIND "${readme}" "```cpp\n" start)
if(start EQUAL -1)
  message(FATAL_ERROR "README.md has no ```cpp block")
endif()
math(EXPR start "${start} + 7")
string(SUBSTRING "${readme}" ${start} -1 rest)
string(FIND "${rest}" "```" end)
string(SUBSTRING "${rest}" 0 ${end} block)
string(FIND "${block}" "#include" at)
string(SUBSTRING "${block}" ${at} -1 block)

file(READ ${SOURCE_DIR}/examples/memory/thread_pool.cpp example)
string(FIND "${example}" "#include" at)
string(SUBSTRING "${example}" ${at} -1 example)

if(NOT block STREQUAL example)
  message(FATAL_ERROR "README.md's quickstart differs from examples/memory/thread_pool.cpp")
endif()
message(STATUS "README quickstart matches examples/memory/thread_pool.cpp")
