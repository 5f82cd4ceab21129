#include "layout/classify_layout.h"

#include <sys/stat.h>
#include <unistd.h>

#include "util/error.h"

namespace memcensus {

void classify_layout(std::deque<SmapsRegion>& raw, const LayoutSources& src, Layout& layout) {
  layout.regions.clear();
  layout.regions.reserve(raw.size());
  for (auto& r : raw) layout.regions.push_back(Region{std::move(r)});

  uint64_t page = static_cast<uint64_t>(::sysconf(_SC_PAGESIZE));
  classify_basic(layout.regions, layout.pid);
  std::vector<ElfInfo> infos;
  classify_objects(layout.regions, src.load_elf, page, layout.objects, infos, layout.warnings);
  bool has_runtime = false;
  for (const auto& o : layout.objects) {
    size_t slash = o.path.rfind('/');
    has_runtime |=
        o.path.compare(slash == std::string::npos ? 0 : slash + 1, 15, "libmemcensus_rt") == 0;
  }
  for (ThreadInfo& t : layout.threads) t.runtime = has_runtime && t.name == "memcensus";
  PagemapReader pagemap =
      src.pagemap && src.symbol_pages
          ? src.pagemap
          : PagemapReader([](uint64_t, size_t) { return std::vector<uint64_t>(); });
  assign_thread_stacks(layout.regions, layout.threads, layout.pid, src.pagemap, layout.warnings);
  find_arenas(layout.regions, layout.threads, src.pagemap,
              src.read_memory ? src.read_memory
                              : MemoryReader([](uint64_t, void*, size_t) { return false; }),
              page);
  layout.symbols = largest_static_symbols(layout.objects, infos, src.symbols, page, pagemap);
  for (const auto& o : layout.objects)
    if (o.readable && o.stripped && !o.path.empty() && o.path == layout.exe)
      layout.warnings.push_back(o.path + ": stripped; symbols from .dynsym only");
}

Layout layout_from_smaps(std::string_view smaps_text, pid_t pid,
                         const std::vector<ThreadInfo>& threads, size_t symbols,
                         const MemoryReader& read_memory, const PagemapReader& pagemap) {
  SmapsStreamParser parser;
  parser.feed(smaps_text);
  std::deque<SmapsRegion> raw = parser.finish();
  Layout layout;
  layout.pid = pid;
  layout.threads = threads;
  LayoutSources src;
  src.symbols = symbols;
  src.read_memory = read_memory;
  src.pagemap = pagemap;
  src.symbol_pages = false;
  src.load_elf = [](const SmapsRegion& r, std::string& why) -> std::optional<ElfInfo> {
    struct stat st;
    if (r.deleted || ::stat(r.path.c_str(), &st) != 0) {
      why = "no longer on disk";
      return std::nullopt;
    }
    if (st.st_ino != r.inode) {
      why = "replaced on disk since it was mapped";
      return std::nullopt;
    }
    char magic[4] = {};
    FILE* f = std::fopen(r.path.c_str(), "rb");
    bool elf = f && std::fread(magic, 1, 4, f) == 4 && magic[0] == 0x7f && magic[1] == 'E' &&
               magic[2] == 'L' && magic[3] == 'F';
    if (f) std::fclose(f);
    if (!elf) return std::nullopt;
    try {
      return load_elf_file(r.path);
    } catch (const Error& e) {
      why = e.what();
      return std::nullopt;
    }
  };
  classify_layout(raw, src, layout);
  if (!layout.symbols.empty())
    layout.warnings.push_back("recorded snapshot: symbol rss not recorded, shown as 0");
  return layout;
}

}  // namespace memcensus
