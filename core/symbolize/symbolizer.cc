#include "symbolize/symbolizer.h"

#include <dwarf.h>
#include <elfutils/libdw.h>
#include <elfutils/libdwfl.h>
#include <unistd.h>

#include <cstring>
#include <unordered_map>

#include "symbolize/demangle.h"

namespace memcensus {
namespace {

const Dwfl_Callbacks kCallbacks = {
    dwfl_build_id_find_elf,
    dwfl_standard_find_debuginfo,
    dwfl_offline_section_address,
    nullptr,
};

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

struct CallSite {
  std::optional<std::string> file;
  std::optional<int> line;
};

CallSite call_site(Dwarf_Die* inlined, Dwarf_Die* cu) {
  CallSite c;
  Dwarf_Attribute attr;
  Dwarf_Word v;
  Dwarf_Files* files = nullptr;
  size_t nfiles = 0;
  if (dwarf_attr(inlined, DW_AT_call_file, &attr) && dwarf_formudata(&attr, &v) == 0 &&
      dwarf_getsrcfiles(cu, &files, &nfiles) == 0 && v < nfiles) {
    if (const char* name = dwarf_filesrc(files, v, nullptr, nullptr)) c.file = name;
  }
  if (dwarf_attr(inlined, DW_AT_call_line, &attr) && dwarf_formudata(&attr, &v) == 0)
    c.line = static_cast<int>(v);
  return c;
}

}  // namespace

struct Symbolizer::Impl {
  Dwfl* dwfl = nullptr;
  std::unordered_map<uint64_t, std::vector<SourceFrame>> cache;
  std::unordered_map<Dwfl_Module*, std::string> stale;  // module -> reason

  void report(const TraceModule& m);
  std::vector<SourceFrame> lookup(uint64_t pc);
  void expand(Dwfl_Module* mod, uint64_t pc, SourceFrame base, std::vector<SourceFrame>& out);
};

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
}

void Symbolizer::Impl::expand(Dwfl_Module* mod, uint64_t pc, SourceFrame base,
                              std::vector<SourceFrame>& out) {
  Dwarf_Addr bias = 0;
  Dwarf_Die* cu = dwfl_module_addrdie(mod, pc, &bias);
  if (!cu) {
    out.push_back(std::move(base));
    return;
  }
  Dwarf_Die* scopes = nullptr;
  int n = dwarf_getscopes(cu, pc - bias, &scopes);
  for (int i = 0; i < n; ++i) {
    int tag = dwarf_tag(&scopes[i]);
    if (tag != DW_TAG_inlined_subroutine && tag != DW_TAG_subprogram) continue;
    SourceFrame f = base;
    if (auto name = die_function_name(&scopes[i])) f.function = *name;
    if (tag == DW_TAG_subprogram) {
      if (f.function == "??") f.function = base.function;
      out.push_back(std::move(f));
      free(scopes);
      return;
    }
    f.inlined = true;
    out.push_back(std::move(f));
    CallSite cs = call_site(&scopes[i], cu);
    base.file = cs.file;
    base.line = cs.line;
  }
  free(scopes);
  out.push_back(std::move(base));
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
  if (const char* sym = dwfl_module_addrname(mod, pc)) base.function = demangle(sym);
  if (Dwfl_Line* line = dwfl_module_getsrc(mod, pc)) {
    int lineno = 0;
    if (const char* file = dwfl_lineinfo(line, nullptr, &lineno, nullptr, nullptr, nullptr)) {
      base.file = file;
      base.line = lineno;
    }
  }
  expand(mod, pc, std::move(base), out);
  return out;
}

Symbolizer::Symbolizer(const std::vector<TraceModule>& modules) : impl_(std::make_unique<Impl>()) {
  impl_->dwfl = dwfl_begin(&kCallbacks);
  if (!impl_->dwfl) return;
  dwfl_report_begin(impl_->dwfl);
  for (const TraceModule& m : modules) impl_->report(m);
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
