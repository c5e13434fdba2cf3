# Warnings are per target and PRIVATE: patio never changes the flags of the
# project that includes it.
function(patio_set_warnings target)
  if(MSVC)
    target_compile_options(${target} PRIVATE /W4 $<$<BOOL:${PATIO_WERROR}>:/WX>)
  else()
    target_compile_options(${target} PRIVATE
      -Wall -Wextra -Wpedantic -Wshadow -Wnon-virtual-dtor -Wold-style-cast -Wcast-align
      -Woverloaded-virtual -Wimplicit-fallthrough
      # GCC 12 reports std::string concatenation falsely (GCC bug 105329).
      $<$<CXX_COMPILER_ID:GNU>:-Wno-restrict>
      $<$<BOOL:${PATIO_WERROR}>:-Werror>)
  endif()
endfunction()
