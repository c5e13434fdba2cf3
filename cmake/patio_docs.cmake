# The `docs` target: the API reference of include/patio/ (not detail/), built
# by Doxygen from docs/Doxyfile.in into <build>/docs/html/. Warnings are
# errors (WARN_AS_ERROR), so an undocumented public name fails the target.
# Added only when Doxygen is found (Debian: apt-get install doxygen); not part
# of `all`.
find_package(Doxygen QUIET)
if(NOT DOXYGEN_FOUND)
  message(STATUS "patio: Doxygen not found, no `docs` target (apt-get install doxygen)")
  return()
endif()

set(PATIO_DOCS_OUTPUT_DIR ${CMAKE_CURRENT_BINARY_DIR}/docs)
configure_file(${CMAKE_CURRENT_SOURCE_DIR}/docs/Doxyfile.in ${PATIO_DOCS_OUTPUT_DIR}/Doxyfile @ONLY)

file(GLOB PATIO_DOCS_HEADERS CONFIGURE_DEPENDS ${CMAKE_CURRENT_SOURCE_DIR}/include/patio/*.hpp)
add_custom_command(
  OUTPUT ${PATIO_DOCS_OUTPUT_DIR}/html/index.html
  COMMAND Doxygen::doxygen ${PATIO_DOCS_OUTPUT_DIR}/Doxyfile
  DEPENDS ${PATIO_DOCS_OUTPUT_DIR}/Doxyfile ${PATIO_DOCS_HEADERS} ${CMAKE_CURRENT_SOURCE_DIR}/docs/api.md
  WORKING_DIRECTORY ${CMAKE_CURRENT_SOURCE_DIR}
  COMMENT "Doxygen: API reference in ${PATIO_DOCS_OUTPUT_DIR}/html"
  VERBATIM)
add_custom_target(docs DEPENDS ${PATIO_DOCS_OUTPUT_DIR}/html/index.html)
