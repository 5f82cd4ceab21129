// RuntimeObjects: which of a process's loaded ELF files are there only for memcensus's
// runtime: libmemcensus_rt.so (preloaded by `memcensus run`) and the libraries it needs,
// directly or not (DT_NEEDED), that no other loaded file needs (libunwind, libzstd, liblzma
// for a program that uses none of them). Libraries are matched to DT_NEEDED names by their
// DT_SONAME, else by file name. A file that cannot be read counts as the program's.
// Cost: one read of each file's ELF and section headers and dynamic section. Pure function
// of the files; thread-compatible.
#pragma once

#include <functional>
#include <string>
#include <vector>

#include "elf/elf_reader.h"

namespace memcensus {

// `objects`: the paths of the loaded files (the executable included), in any order; `load`
// reads one file's headers (load_elf_headers; tests give their own). Returns the paths that
// are the runtime's, in the order of `objects`.
std::vector<std::string> runtime_only_objects(
    const std::vector<std::string>& objects,
    const std::function<ElfInfo(const std::string&)>& load = load_elf_headers);

}  // namespace memcensus
