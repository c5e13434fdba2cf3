# `cpack -G DEB` in the build directory: libpatio-dev_<version>_<arch>.deb,
# holding what `cmake --install` installs under /usr (headers, the static
# libraries, the CMake package), without the example programs (component
# `examples`). Its dependencies are the Debian -dev packages that
# patio-config.cmake finds again with find_dependency. Included from the
# top-level CMakeLists.txt when patio is the top-level project and installs.
set(CPACK_PACKAGE_NAME libpatio-dev)
set(CPACK_PACKAGE_VENDOR patio-cpp)
set(CPACK_PACKAGE_VERSION ${PROJECT_VERSION})
set(CPACK_PACKAGE_DESCRIPTION_SUMMARY "${PROJECT_DESCRIPTION}")
set(CPACK_PACKAGE_CONTACT "patio-cpp maintainers <patio@localhost>")
set(CPACK_RESOURCE_FILE_LICENSE ${CMAKE_CURRENT_SOURCE_DIR}/LICENSE)
set(CPACK_PACKAGING_INSTALL_PREFIX /usr)
set(CPACK_GENERATOR DEB)
# Only the library's install rules (they name no component): not bin/.
set(CPACK_INSTALL_CMAKE_PROJECTS "${CMAKE_CURRENT_BINARY_DIR};${PROJECT_NAME};Unspecified;/")

set(CPACK_DEBIAN_FILE_NAME DEB-DEFAULT) # libpatio-dev_0.1.0_amd64.deb
set(CPACK_DEBIAN_PACKAGE_SECTION libdevel)
set(CPACK_DEBIAN_PACKAGE_PRIORITY optional)
# The summary line is CPACK_PACKAGE_DESCRIPTION_SUMMARY; this is the body.
set(CPACK_DEBIAN_PACKAGE_DESCRIPTION
  "patio-cpp runs named tasks, locally or across machines, from C++20\n\
coroutines on standalone Asio: a port of Python's patio. This package holds\n\
the headers, the static libraries patio::patio and patio::redis and the\n\
CMake package: find_package(patio).")
# The static libraries were compiled against these headers: the user's build
# must find the same libraries (patio-config.cmake's find_dependency).
set(PATIO_DEB_DEPENDS
  "libasio-dev (>= 1:1.22)"
  "libfmt-dev (>= 9.1)"
  "libmsgpack-cxx-dev (>= 4.1)"
  "libssl-dev (>= 3.0)")
if(PATIO_WITH_REDIS)
  # patio::redis links hiredis, found through pkg-config.
  list(APPEND PATIO_DEB_DEPENDS "libhiredis-dev (>= 0.14)" "pkg-config")
endif()
list(JOIN PATIO_DEB_DEPENDS ", " CPACK_DEBIAN_PACKAGE_DEPENDS)

include(CPack)
