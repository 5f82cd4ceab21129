#include "elf/elf_reader.h"

#include <elf.h>
#include <fcntl.h>
#include <gelf.h>
#include <libelf.h>
#include <sys/stat.h>
#include <unistd.h>

#include <cerrno>
#include <cstring>
#include <iterator>
#include <mutex>

#include "util/error.h"

namespace memcensus {
namespace {

void init_libelf() {
  static std::once_flag once;
  std::call_once(once, [] { elf_version(EV_CURRENT); });
}

struct ElfCloser {
  void operator()(Elf* e) const { elf_end(e); }
};

[[noreturn]] void fail(const std::string& name, const std::string& what) {
  throw Error(name + ": " + what);
}

std::string hex(const unsigned char* p, size_t n) {
  static const char digits[] = "0123456789abcdef";
  std::string s;
  s.reserve(n * 2);
  for (size_t i = 0; i < n; ++i) {
    s.push_back(digits[p[i] >> 4]);
    s.push_back(digits[p[i] & 15]);
  }
  return s;
}

void read_build_id(Elf_Scn* scn, std::string& out) {
  Elf_Data* data = elf_getdata(scn, nullptr);
  if (!data || !data->d_buf) return;
  size_t off = 0;
  GElf_Nhdr nhdr;
  size_t name_off = 0;
  size_t desc_off = 0;
  while (off < data->d_size && (off = gelf_getnote(data, off, &nhdr, &name_off, &desc_off)) > 0) {
    if (nhdr.n_type == NT_GNU_BUILD_ID && nhdr.n_namesz == 4 &&
        std::memcmp(static_cast<const char*>(data->d_buf) + name_off, "GNU", 4) == 0 &&
        desc_off + nhdr.n_descsz <= data->d_size) {
      out = hex(static_cast<const unsigned char*>(data->d_buf) + desc_off, nhdr.n_descsz);
      return;
    }
  }
}

// DT_SONAME and the DT_NEEDED entries of the dynamic section `scn`.
void read_links(Elf* elf, Elf_Scn* scn, const GElf_Shdr& shdr, ElfInfo& info) {
  Elf_Data* data = elf_getdata(scn, nullptr);
  if (!data || shdr.sh_entsize == 0) return;
  size_t count = data->d_size / shdr.sh_entsize;
  for (size_t i = 0; i < count; ++i) {
    GElf_Dyn dyn;
    if (!gelf_getdyn(data, static_cast<int>(i), &dyn) || dyn.d_tag == DT_NULL) break;
    if (dyn.d_tag != DT_NEEDED && dyn.d_tag != DT_SONAME) continue;
    const char* s = elf_strptr(elf, shdr.sh_link, dyn.d_un.d_val);
    if (!s) continue;
    if (dyn.d_tag == DT_NEEDED)
      info.needed.push_back(s);
    else
      info.soname = s;
  }
}

// The allocator functions that .dynsym defines (ElfInfo::exported_allocator), in the order
// malloc, free, calloc, realloc.
void read_exported_allocator(Elf* elf, Elf_Scn* scn, const GElf_Shdr& shdr,
                             std::vector<std::string>& out) {
  Elf_Data* data = elf_getdata(scn, nullptr);
  if (!data || shdr.sh_entsize == 0) return;
  static const char* const kNames[] = {"malloc", "free", "calloc", "realloc"};
  bool found[std::size(kNames)] = {};
  size_t count = data->d_size / shdr.sh_entsize;
  for (size_t i = 0; i < count; ++i) {
    GElf_Sym sym;
    if (!gelf_getsym(data, static_cast<int>(i), &sym)) break;
    int type = GELF_ST_TYPE(sym.st_info);
    if ((type != STT_FUNC && type != STT_GNU_IFUNC) || sym.st_shndx == SHN_UNDEF) continue;
    const char* name = elf_strptr(elf, shdr.sh_link, sym.st_name);
    if (!name) continue;
    for (size_t k = 0; k < std::size(kNames); ++k) found[k] |= std::strcmp(name, kNames[k]) == 0;
  }
  for (size_t k = 0; k < std::size(kNames); ++k)
    if (found[k]) out.push_back(kNames[k]);
}

void read_symbols(Elf* elf, Elf_Scn* scn, const GElf_Shdr& shdr, size_t nsections,
                  std::vector<ElfSymbol>& out) {
  Elf_Data* data = elf_getdata(scn, nullptr);
  if (!data || shdr.sh_entsize == 0) return;
  size_t count = data->d_size / shdr.sh_entsize;
  for (size_t i = 0; i < count; ++i) {
    GElf_Sym sym;
    if (!gelf_getsym(data, static_cast<int>(i), &sym)) break;
    int type = GELF_ST_TYPE(sym.st_info);
    if ((type != STT_OBJECT && type != STT_TLS) || sym.st_size == 0) continue;
    if (sym.st_shndx == SHN_UNDEF || sym.st_shndx >= SHN_LORESERVE || sym.st_shndx >= nsections)
      continue;
    const char* name = elf_strptr(elf, shdr.sh_link, sym.st_name);
    if (!name || !*name) continue;
    ElfSymbol& s = out.emplace_back();
    s.name = name;
    s.value = sym.st_value;
    s.size = sym.st_size;
    s.section = static_cast<uint16_t>(sym.st_shndx);
    s.tls = type == STT_TLS;
  }
}

}  // namespace

bool ElfSection::allocated() const {
  return (flags & SHF_ALLOC) != 0;
}

const ElfSegment* ElfInfo::find_segment(uint32_t t) const {
  for (const auto& s : segments)
    if (s.type == t) return &s;
  return nullptr;
}

std::vector<const ElfSegment*> ElfInfo::loads() const {
  std::vector<const ElfSegment*> out;
  for (const auto& s : segments)
    if (s.type == PT_LOAD) out.push_back(&s);
  return out;
}

bool looks_like_elf(std::span<const std::byte> bytes) {
  return bytes.size() >= SELFMAG && std::memcmp(bytes.data(), ELFMAG, SELFMAG) == 0;
}

namespace {

ElfInfo parse_handle(Elf* elf_handle, const std::string& name, bool symbols = true);

}  // namespace

ElfInfo parse_elf(std::span<const std::byte> bytes, const std::string& name) {
  init_libelf();
  if (!looks_like_elf(bytes)) fail(name, "not an ELF file");
  // libelf does not write through the image for native-endian files opened this way; the
  // const_cast is confined to this call.
  std::unique_ptr<Elf, ElfCloser> elf(
      elf_memory(const_cast<char*>(reinterpret_cast<const char*>(bytes.data())), bytes.size()));
  if (!elf || elf_kind(elf.get()) != ELF_K_ELF) fail(name, "not a readable ELF file");
  return parse_handle(elf.get(), name);
}

namespace {

ElfInfo parse_handle(Elf* elf_handle, const std::string& name, bool symbols) {
  struct {
    Elf* p;
    Elf* get() const { return p; }
  } elf{elf_handle};
  ElfInfo info;
  GElf_Ehdr ehdr;
  if (!gelf_getehdr(elf.get(), &ehdr)) fail(name, std::string("bad ELF header: ") + elf_errmsg(-1));
  info.type = ehdr.e_type;
  info.machine = ehdr.e_machine;

  size_t nphdr = 0;
  if (elf_getphdrnum(elf.get(), &nphdr) != 0) fail(name, "bad program header count");
  for (size_t i = 0; i < nphdr; ++i) {
    GElf_Phdr ph;
    if (!gelf_getphdr(elf.get(), static_cast<int>(i), &ph)) fail(name, "bad program header");
    if (ph.p_memsz < ph.p_filesz || ph.p_vaddr + ph.p_memsz < ph.p_vaddr)
      fail(name, "inconsistent program header " + std::to_string(i));
    info.segments.push_back(
        {ph.p_type, ph.p_flags, ph.p_offset, ph.p_vaddr, ph.p_filesz, ph.p_memsz, ph.p_align});
  }

  size_t nsections = 0;
  size_t shstrndx = 0;
  if (elf_getshdrnum(elf.get(), &nsections) != 0) fail(name, "bad section count");
  if (nsections > 0 && elf_getshdrstrndx(elf.get(), &shstrndx) != 0)
    fail(name, "bad section name table index");
  info.sections.resize(nsections);
  Elf_Scn* symtab = nullptr;
  Elf_Scn* dynsym = nullptr;
  GElf_Shdr symtab_hdr{};
  GElf_Shdr dynsym_hdr{};
  for (Elf_Scn* scn = elf_nextscn(elf.get(), nullptr); scn; scn = elf_nextscn(elf.get(), scn)) {
    size_t idx = elf_ndxscn(scn);
    GElf_Shdr sh;
    if (idx >= nsections || !gelf_getshdr(scn, &sh)) fail(name, "bad section header");
    ElfSection& s = info.sections[idx];
    const char* sname = elf_strptr(elf.get(), shstrndx, sh.sh_name);
    s.name = sname ? sname : "";
    s.type = sh.sh_type;
    s.flags = sh.sh_flags;
    s.addr = sh.sh_addr;
    s.offset = sh.sh_offset;
    s.size = sh.sh_size;
    if (sh.sh_type == SHT_NOTE && info.build_id.empty()) read_build_id(scn, info.build_id);
    if (sh.sh_type == SHT_SYMTAB) symtab = scn, symtab_hdr = sh;
    if (sh.sh_type == SHT_DYNSYM) dynsym = scn, dynsym_hdr = sh;
    if (sh.sh_type == SHT_DYNAMIC) read_links(elf.get(), scn, sh, info);
  }
  if (!symbols) return info;
  if (dynsym) read_exported_allocator(elf.get(), dynsym, dynsym_hdr, info.exported_allocator);
  if (symtab) {
    read_symbols(elf.get(), symtab, symtab_hdr, nsections, info.data_symbols);
    info.symbols_from_symtab = true;
  } else if (dynsym) {
    read_symbols(elf.get(), dynsym, dynsym_hdr, nsections, info.data_symbols);
  }
  return info;
}

}  // namespace

namespace {

ElfInfo load(const std::string& path, bool symbols) {
  init_libelf();
  // libelf reads what it needs with pread (ELF_C_READ), so a file truncated while we look
  // at it gives an error, not SIGBUS, and a large binary is not read whole.
  int fd = ::open(path.c_str(), O_RDONLY | O_CLOEXEC);
  if (fd < 0) fail(path, std::strerror(errno));
  struct Closer {
    int fd;
    ~Closer() { ::close(fd); }
  } closer{fd};
  struct stat st;
  if (::fstat(fd, &st) != 0 || !S_ISREG(st.st_mode)) fail(path, "not a regular file");
  char magic[SELFMAG];
  if (::pread(fd, magic, SELFMAG, 0) != SELFMAG || std::memcmp(magic, ELFMAG, SELFMAG) != 0)
    fail(path, "not an ELF file");
  std::unique_ptr<Elf, ElfCloser> elf(elf_begin(fd, ELF_C_READ, nullptr));
  if (!elf || elf_kind(elf.get()) != ELF_K_ELF) fail(path, "not a readable ELF file");
  return parse_handle(elf.get(), path, symbols);
}

}  // namespace

ElfInfo load_elf_file(const std::string& path) {
  return load(path, true);
}

ElfInfo load_elf_headers(const std::string& path) {
  return load(path, false);
}

}  // namespace memcensus
