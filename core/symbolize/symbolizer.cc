#include "symbolize/symbolizer.h"

#include <dwarf.h>
#include <elfutils/libdw.h>
#include <elfutils/libdwelf.h>
#include <elfutils/libdwfl.h>
#include <fcntl.h>
#include <libelf.h>
#include <unistd.h>

#include <climits>
#include <cstdlib>
#include <cstring>
#include <unordered_map>

#include "symbolize/demangle.h"
#include "symbolize/dwarf_scopes.h"
#include "symbolize/symbol_index.h"

namespace memcensus {
namespace {

const char* die_string(Dwarf_Die* die, int name) {
  Dwarf_Attribute attr;
  if (!dwarf_attr_integrate(die, name, &attr)) return nullptr;
  return dwarf_formstring(&attr);
}

// The best name of a subprogram or inlined subroutine DIE, demangled.
std::optional<std::string> die_function_name(Dwarf_Die* die) {
  const char* n = die_string(die, DW_AT_linkage_name);
  if (!n) n = die_string(die, DW_AT_MIPS_linkage_name);
  if (n) return demangle(n);
  n = die_string(die, DW_AT_name);
  if (n) return std::string(n);
  return std::nullopt;
}

}  // namespace

struct Symbolizer::Impl {
  Dwfl* dwfl = nullptr;
  Dwfl_Callbacks callbacks{};
  std::string debuginfo_path;  // libdwfl's search path: its defaults, then the debug dirs
  char* debuginfo_path_ptr = nullptr;
  std::vector<std::string> debug_dirs;
  std::unordered_map<uint64_t, std::vector<SourceFrame>> cache;
  std::unordered_map<Dwfl_Module*, std::string> stale;   // module -> reason
  std::unordered_map<const void*, UnitFunctions> units;  // by the CU DIE's address in memory
  std::unordered_map<Dwfl_Module*, std::unique_ptr<SymbolIndex>> symbols;  // made when first used

  void report(const TraceModule& m);
  std::vector<SourceFrame> lookup(uint64_t pc);
  void expand(Dwfl_Module* mod, uint64_t pc, SourceFrame base, std::vector<SourceFrame>& out);
};

namespace {

// Whether the ELF file at `path` carries build-id `want`.
bool file_has_build_id(const std::string& path, const unsigned char* want, int n) {
  int fd = ::open(path.c_str(), O_RDONLY | O_CLOEXEC);
  if (fd < 0) return false;
  bool same = false;
  if (Elf* elf = elf_begin(fd, ELF_C_READ_MMAP, nullptr)) {
    const void* id = nullptr;
    ssize_t len = dwelf_elf_gnu_build_id(elf, &id);
    same = n > 0 && len == n && std::memcmp(id, want, static_cast<size_t>(n)) == 0;
    elf_end(elf);
  }
  ::close(fd);
  return same;
}

// libdwfl's standard search (build-id and debuglink under each directory of the path,
// debuginfod), then DIR/<path> and DIR/<path>.debug under each debug directory.
int find_debuginfo(Dwfl_Module* mod, void** userdata, const char* modname, Dwarf_Addr base,
                   const char* file_name, const char* debuglink_file, GElf_Word debuglink_crc,
                   char** debuginfo_file_name) {
  int fd = dwfl_standard_find_debuginfo(mod, userdata, modname, base, file_name, debuglink_file,
                                        debuglink_crc, debuginfo_file_name);
  auto* dirs = static_cast<const std::vector<std::string>*>(*userdata);
  if (fd >= 0 || !dirs || !file_name || file_name[0] != '/') return fd;
  const unsigned char* bits = nullptr;
  GElf_Addr vaddr = 0;
  int n = dwfl_module_build_id(mod, &bits, &vaddr);
  for (const std::string& dir : *dirs) {
    for (const char* suffix : {"", ".debug"}) {
      std::string path = dir + file_name + suffix;
      if (!file_has_build_id(path, bits, n)) continue;
      fd = ::open(path.c_str(), O_RDONLY | O_CLOEXEC);
      if (fd < 0) continue;
      *debuginfo_file_name = strdup(path.c_str());
      return fd;
    }
  }
  return -1;
}

}  // namespace

void Symbolizer::Impl::report(const TraceModule& m) {
  if (m.path.empty() || m.path[0] == '[' || ::access(m.path.c_str(), R_OK) != 0) return;
  Dwfl_Module* mod = dwfl_report_elf(dwfl, m.path.c_str(), m.path.c_str(), -1, m.bias, false);
  if (!mod) return;
  const unsigned char* bits = nullptr;
  GElf_Addr vaddr = 0;
  int n = dwfl_module_build_id(mod, &bits, &vaddr);
  if (!m.build_id.empty() &&
      (n != static_cast<int>(m.build_id.size()) || std::memcmp(bits, m.build_id.data(), n) != 0))
    stale[mod] = "build-id mismatch";
  void** userdata = nullptr;
  dwfl_module_info(mod, &userdata, nullptr, nullptr, nullptr, nullptr, nullptr, nullptr);
  if (userdata) *userdata = &debug_dirs;  // for find_debuginfo
}

void Symbolizer::Impl::expand(Dwfl_Module* mod, uint64_t pc, SourceFrame base,
                              std::vector<SourceFrame>& out) {
  Dwarf_Addr bias = 0;
  Dwarf_Die* cu = dwfl_module_addrdie(mod, pc, &bias);
  if (!cu || !unit_holds(cu, pc - bias)) {
    out.push_back(std::move(base));
    return;
  }
  if (std::optional<SourceLine> at = source_line(cu, pc - bias)) {
    base.file = std::move(at->file);
    base.line = at->line;
  }
  auto unit = units.find(cu->addr);
  if (unit == units.end()) unit = units.emplace(cu->addr, UnitFunctions(cu)).first;
  std::vector<Dwarf_Die> scopes = unit->second.scopes_at(pc - bias);
  if (scopes.empty()) {
    out.push_back(std::move(base));
    return;
  }
  // Innermost first: each inlined frame takes the position reached so far, and hands its
  // call site on to the frame it was inlined into.
  for (Dwarf_Die& die : scopes) {
    SourceFrame f = base;
    f.inlined = dwarf_tag(&die) == DW_TAG_inlined_subroutine;
    if (auto name = die_function_name(&die))
      f.function = *name;
    else if (f.inlined)
      f.function = "??";
    if (f.inlined) {
      CallSite cs = call_site(&die);
      base.file = std::move(cs.file);
      base.line = cs.line;
    }
    out.push_back(std::move(f));
  }
}

std::vector<SourceFrame> Symbolizer::Impl::lookup(uint64_t pc) {
  SourceFrame base;
  base.function = "??";
  base.object = "[unknown]";
  base.address = pc;
  std::vector<SourceFrame> out;
  Dwfl_Module* mod = dwfl ? dwfl_addrmodule(dwfl, pc) : nullptr;
  if (!mod) {
    out.push_back(std::move(base));
    return out;
  }
  const char* mainfile = nullptr;
  const char* name =
      dwfl_module_info(mod, nullptr, nullptr, nullptr, nullptr, nullptr, &mainfile, nullptr);
  base.object = mainfile ? mainfile : name ? name : "[unknown]";
  if (auto it = stale.find(mod); it != stale.end()) {
    base.function = "?? (" + it->second + ")";
    out.push_back(std::move(base));
    return out;
  }
  auto& index = symbols[mod];
  if (!index) index = std::make_unique<SymbolIndex>(mod);
  bool decided = false;
  const char* sym = index->find(pc, &decided);
  if (!decided) sym = dwfl_module_addrname(mod, pc);
  if (sym) base.function = demangle(sym);
  expand(mod, pc, std::move(base), out);
  return out;
}

Symbolizer::Symbolizer(const std::vector<TraceModule>& modules,
                       const std::vector<std::string>& debug_dirs)
    : impl_(std::make_unique<Impl>()) {
  Impl& m = *impl_;
  for (const std::string& d : debug_dirs) {
    if (d.empty()) continue;
    char* abs = ::realpath(d.c_str(), nullptr);  // libdwfl searches absolute directories only
    m.debug_dirs.push_back(abs ? abs : d);
    free(abs);
  }
  m.debuginfo_path = ":.debug:/usr/lib/debug";  // libdwfl's default
  for (const std::string& d : m.debug_dirs) m.debuginfo_path += ":" + d;
  m.debuginfo_path_ptr = m.debuginfo_path.data();
  m.callbacks.find_elf = dwfl_build_id_find_elf;
  m.callbacks.find_debuginfo = find_debuginfo;
  m.callbacks.section_address = dwfl_offline_section_address;
  m.callbacks.debuginfo_path = &m.debuginfo_path_ptr;
  impl_->dwfl = dwfl_begin(&m.callbacks);
  if (!impl_->dwfl) return;
  dwfl_report_begin(impl_->dwfl);
  for (const TraceModule& mod : modules) impl_->report(mod);
  dwfl_report_end(impl_->dwfl, nullptr, nullptr);
}

Symbolizer::~Symbolizer() {
  if (impl_->dwfl) dwfl_end(impl_->dwfl);
}

const std::vector<SourceFrame>& Symbolizer::symbolize_return_address(uint64_t address) {
  auto it = impl_->cache.find(address);
  if (it != impl_->cache.end()) return it->second;
  std::vector<SourceFrame> frames = impl_->lookup(address - 1);
  for (SourceFrame& f : frames) f.address = address;
  return impl_->cache.emplace(address, std::move(frames)).first->second;
}

std::string Symbolizer::hex(const std::string& bytes) {
  static const char* digits = "0123456789abcdef";
  std::string out;
  for (unsigned char c : bytes) {
    out += digits[c >> 4];
    out += digits[c & 15];
  }
  return out;
}

}  // namespace memcensus
