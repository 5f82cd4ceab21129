# Building single-file Rust programs with plain rustc (no cargo, no crates).
# MEMCENSUS_RUSTC is rustc from PATH or ~/.cargo/bin; empty if there is none.
if(NOT DEFINED MEMCENSUS_RUSTC)
  find_program(MEMCENSUS_RUSTC_FOUND rustc HINTS $ENV{HOME}/.cargo/bin)
  if(MEMCENSUS_RUSTC_FOUND)
    set(MEMCENSUS_RUSTC ${MEMCENSUS_RUSTC_FOUND} CACHE INTERNAL "")
  else()
    set(MEMCENSUS_RUSTC "" CACHE INTERNAL "")
    message(WARNING "rustc not found: Rust examples and fixtures are not built")
  endif()
endif()

# memcensus_add_rust_program(NAME SOURCE [FLAGS...]): builds NAME from SOURCE with -O and
# debug info, into the current binary directory; target rust_NAME.
function(memcensus_add_rust_program name source)
  if(NOT MEMCENSUS_RUSTC)
    return()
  endif()
  set(out ${CMAKE_CURRENT_BINARY_DIR}/${name})
  add_custom_command(
    OUTPUT ${out}
    COMMAND ${MEMCENSUS_RUSTC} --edition 2021 -O -g --crate-name ${name} ${ARGN} -o ${out} ${source}
    DEPENDS ${source}
    COMMENT "rustc ${name}")
  add_custom_target(rust_${name} ALL DEPENDS ${out})
endfunction()
