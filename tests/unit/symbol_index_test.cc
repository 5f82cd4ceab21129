// SymbolIndex against its oracle, libdwfl's own (linear) dwfl_module_addrname, on real
// modules with large symbol tables: wherever the index decides, it names what libdwfl names,
// and it decides for nearly every address inside a function.
#include "symbolize/symbol_index.h"

#include <gtest/gtest.h>
#include <unistd.h>

#include <cstdlib>
#include <cstring>
#include <fstream>
#include <random>
#include <string>
#include <vector>

namespace memcensus {
namespace {

class Offline {
 public:
  Offline() {
    callbacks_.find_elf = dwfl_build_id_find_elf;
    callbacks_.find_debuginfo = dwfl_standard_find_debuginfo;
    callbacks_.section_address = dwfl_offline_section_address;
    dwfl_ = dwfl_begin(&callbacks_);
  }
  ~Offline() { dwfl_end(dwfl_); }
  Dwfl_Module* load(const std::string& path) {
    return dwfl_report_offline(dwfl_, path.c_str(), path.c_str(), -1);
  }

 private:
  Dwfl_Callbacks callbacks_{};
  Dwfl* dwfl_ = nullptr;
};

struct Tally {
  size_t asked = 0, decided = 0, in_functions = 0, decided_in_functions = 0, unnamed = 0;
};

// Addresses around every sampled symbol (start, +1, middle, last byte, end) and at random
// in the module; each decided answer must equal libdwfl's.
Tally check_module(Dwfl_Module* mod, size_t max_symbols) {
  SymbolIndex index(mod);
  std::vector<std::pair<uint64_t, uint64_t>> funcs;
  const int n = dwfl_module_getsymtab(mod);
  for (int i = 1; i < n; ++i) {
    GElf_Sym sym;
    GElf_Addr addr = 0;
    const char* name = dwfl_module_getsym_info(mod, i, &sym, &addr, nullptr, nullptr, nullptr);
    const int type = GELF_ST_TYPE(sym.st_info);
    if (name && (type == STT_FUNC || type == STT_OBJECT || type == STT_GNU_IFUNC) &&
        sym.st_size > 0 && sym.st_size < (1u << 30) && sym.st_shndx != SHN_UNDEF)
      funcs.emplace_back(addr, addr + sym.st_size);
  }
  Dwarf_Addr low = 0, high = 0;
  dwfl_module_info(mod, nullptr, &low, &high, nullptr, nullptr, nullptr, nullptr);
  std::mt19937_64 rng(42);
  std::vector<std::pair<uint64_t, bool>> addresses;  // (address, inside a function)
  const size_t stride = std::max<size_t>(1, funcs.size() / max_symbols);
  for (size_t i = 0; i < funcs.size(); i += stride) {
    auto [s, e] = funcs[i];
    for (uint64_t a : {s, s + 1, s + (e - s) / 2, e - 1}) addresses.emplace_back(a, true);
    addresses.emplace_back(e, false);
  }
  for (size_t i = 0; i < max_symbols && high > low; ++i)
    addresses.emplace_back(low + rng() % (high - low), false);
  Tally t;
  for (auto [a, in_function] : addresses) {
    bool decided = false;
    const char* fast = index.find(a, &decided);
    const char* slow = dwfl_module_addrname(mod, a);
    ++t.asked;
    t.in_functions += in_function;
    if (!decided) continue;
    ++t.decided;
    t.decided_in_functions += in_function;
    t.unnamed += fast == nullptr;
    EXPECT_EQ(std::string(fast ? fast : "(none)"), std::string(slow ? slow : "(none)"))
        << "at 0x" << std::hex << a;
  }
  return t;
}

// Every byte of a library built from assembly with the cases the rules single out: aliases
// of each binding (a GNU unique symbol with a local alias: the global part wins), a sizeless
// label inside and after sized symbols, nested ranges, and a size past the address space.
TEST(SymbolIndex, HandmadeSymbolsNamedAsLibdwflNamesThem) {
  const char* dir = std::getenv("TMPDIR");
  const std::string base =
      std::string(dir ? dir : "/tmp") + "/symbol_index_test_" + std::to_string(::getpid());
  {
    std::ofstream s(base + ".s");
    s << R"(  .text
  .globl pad_fn
  .type pad_fn, @function
pad_fn:
  ret
  .size pad_fn, 1
  .p2align 4
  .globl uobj
  .type uobj, @gnu_unique_object
uobj:
  .type lalias, @function
lalias:
  .fill 32, 1, 0x90
  .size uobj, 32
  .size lalias, 32
  .weak wfn
  .type wfn, @function
  .globl gfn
  .type gfn, @function
  .type lfn, @function
lfn:
wfn:
gfn:
  .fill 16, 1, 0x90
  .size lfn, 16
  .size wfn, 16
  .size gfn, 16
  .globl outer
  .type outer, @function
outer:
  .fill 8, 1, 0x90
  .globl inner
  .type inner, @function
inner:
  .fill 8, 1, 0x90
  .size inner, 8
  .fill 8, 1, 0x90
  .size outer, 24
label_after:
  .fill 8, 1, 0x90
  .globl sized
  .type sized, @function
sized:
  .fill 8, 1, 0x90
label_inside:
  .fill 8, 1, 0x90
  .size sized, 16
  .globl huge
  .type huge, @object
huge:
  .fill 16, 1, 0x90
  .size huge, 0xfffffffffffffff0
)";
  }
  const std::string so = base + ".so";
  const std::string cmd = "cc -shared -nostdlib -o " + so + " " + base + ".s 2>&1";
  ASSERT_EQ(std::system(cmd.c_str()), 0) << cmd;  // the compiler that built the project
  Offline dwfl;
  Dwfl_Module* mod = dwfl.load(so);
  ASSERT_NE(mod, nullptr);
  SymbolIndex index(mod);
  Dwarf_Addr low = 0, high = 0;
  dwfl_module_info(mod, nullptr, &low, &high, nullptr, nullptr, nullptr, nullptr);
  size_t decided_count = 0;
  for (uint64_t a = low; a < high; ++a) {
    bool decided = false;
    const char* fast = index.find(a, &decided);
    if (!decided) continue;
    ++decided_count;
    const char* slow = dwfl_module_addrname(mod, a);
    EXPECT_EQ(std::string(fast ? fast : "(none)"), std::string(slow ? slow : "(none)"))
        << "at 0x" << std::hex << a;
  }
  EXPECT_GT(decided_count, 32u);
  std::remove((base + ".s").c_str());
  std::remove(so.c_str());
}

TEST(SymbolIndex, NamesWhatLibdwflNames) {
  std::vector<std::string> paths;
  for (const char* p : {"/lib/x86_64-linux-gnu/libc.so.6", "/lib/x86_64-linux-gnu/libstdc++.so.6",
                        "/usr/lib/gcc/x86_64-linux-gnu/12/cc1plus", "/proc/self/exe"})
    if (::access(p, R_OK) == 0) paths.push_back(p);
  ASSERT_GE(paths.size(), 2u);
  for (const std::string& path : paths) {
    SCOPED_TRACE(path);
    Offline dwfl;
    Dwfl_Module* mod = dwfl.load(path);
    ASSERT_NE(mod, nullptr);
    ASSERT_GT(dwfl_module_getsymtab(mod), 100);
    Tally t = check_module(mod, 600);
    // Inside functions the index almost always decides (aliases resolved, no nesting).
    EXPECT_GT(t.in_functions, 1000u);  // 4 addresses in each of 600 functions
    EXPECT_GE(t.decided_in_functions * 100, t.in_functions * 95)
        << t.decided_in_functions << " of " << t.in_functions;
    std::printf("%s: %zu addresses, %zu decided (%zu of %zu inside functions, %zu unnamed)\n",
                path.c_str(), t.asked, t.decided, t.decided_in_functions, t.in_functions,
                t.unnamed);
  }
}

}  // namespace
}  // namespace memcensus
