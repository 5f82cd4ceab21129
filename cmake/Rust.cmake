# Building single-file Rust programs with plain rustc (no cargo, no crates).
# MEMCENSUS_RUSTC is rustc from PATH or ~/.cargo/bin, if it is at least 1.66 (the Rust
# programs use std::hint::black_box); empty otherwise, and the Rust examples, fixtures and
# workloads are then not built (their tests skip with a message).
if(NOT DEFINED MEMCENSUS_RUSTC)
  find_program(MEMCENSUS_RUSTC_FOUND rustc HINTS $ENV{HOME}/.cargo/bin)
  set(rustc_ok FALSE)
  if(MEMCENSUS_RUSTC_FOUND)
    execute_process(COMMAND ${MEMCENSUS_RUSTC_FOUND} --version OUTPUT_VARIABLE rustc_version
                    ERROR_QUIET OUTPUT_STRIP_TRAILING_WHITESPACE)
    string(REGEX MATCH "[0-9]+\\.[0-9]+\\.[0-9]+" rustc_version "${rustc_version}")
    if(rustc_version AND rustc_version VERSION_GREATER_EQUAL 1.66)
      set(rustc_ok TRUE)
    endif()
  endif()
  if(rustc_ok)
    set(MEMCENSUS_RUSTC ${MEMCENSUS_RUSTC_FOUND} CACHE INTERNAL "")
  else()
    set(MEMCENSUS_RUSTC "" CACHE INTERNAL "")
    message(WARNING "no rustc >= 1.66 found: Rust examples and fixtures are not built")
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
