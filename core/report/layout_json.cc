#include <charconv>
#include <map>
#include <thread>

#include "report/json_writer.h"
#include "report/layout_report.h"

namespace memcensus {
namespace {

void write_main_figures(JsonWriter& w, const SmapsFigures& f) {
  w.field("size", f.get(SmapsField::kSize));
  w.field("rss", f.get(SmapsField::kRss));
  w.field("pss", f.get(SmapsField::kPss));
  w.field("uss", f.uss());
  w.field("swap", f.get(SmapsField::kSwap));
}

// The summary figures, then every other figure the kernel printed.
void write_all_figures(JsonWriter& w, const SmapsFigures& f) {
  write_main_figures(w, f);
  for (size_t i = 0; i < kSmapsFieldCount; ++i) {
    auto field = static_cast<SmapsField>(i);
    if (field == SmapsField::kSize || field == SmapsField::kRss || field == SmapsField::kPss ||
        field == SmapsField::kSwap || !f.has(field))
      continue;
    w.field(smaps_field_json_name(field), f.get(field));
  }
  for (const auto& [name, bytes] : f.extra) {
    w.key(name);  // a name from the kernel's text: escaped
    w.value(bytes);
  }
}

void write_region_figures(JsonWriter& w, const SmapsRegion& s) {
  write_all_figures(w, s.fig);
  if (s.thp_eligible >= 0) w.field("thp_eligible", s.thp_eligible);
  if (s.protection_key >= 0) w.field("protection_key", s.protection_key);
  w.field("vm_flags", s.vm_flags);
}

void write_region(JsonWriter& w, const Region& r) {
  const SmapsRegion& s = r.raw;
  w.begin_object();
  w.field("start", s.start);
  w.field("end", s.end);
  w.field("perms", std::string_view(s.perms, 4));
  w.field("offset", s.offset);
  char dev[24];
  auto end = std::to_chars(dev, dev + 10, s.dev_major, 16).ptr;
  *end++ = ':';
  end = std::to_chars(end, dev + sizeof dev, s.dev_minor, 16).ptr;
  w.field("dev", std::string_view(dev, static_cast<size_t>(end - dev)));
  w.field("inode", s.inode);
  if (s.path.empty())
    w.null_field("path");
  else
    w.field("path", s.path);
  w.field("deleted", s.deleted);
  w.field("kind", kind_name(r.kind));
  if (r.object.empty())
    w.null_field("object");
  else
    w.field("object", r.object);
  w.plain_key("sections");
  w.begin_array();
  for (const auto& sec : r.sections) w.value(sec);
  w.end_array();
  if (r.tid)
    w.field("tid", static_cast<int64_t>(*r.tid));
  else
    w.null_field("tid");
  if (r.detail.empty())
    w.null_field("detail");
  else
    w.field("detail", r.detail);
  if (r.arena_end > r.arena_start) {
    w.field("arena_start", r.arena_start);
    w.field("arena_end", r.arena_end);
  } else {
    w.null_field("arena_start");
    w.null_field("arena_end");
  }
  if (!r.figures_json.empty())
    w.raw_members(r.figures_json);
  else
    write_region_figures(w, s);
  w.end_object();
}

void write_groups(JsonWriter& w, const std::map<std::string, RegionGroup>& groups) {
  w.begin_object();
  for (const auto& [name, g] : groups) {
    w.key(name);
    w.begin_object();
    write_main_figures(w, g.fig);
    w.field("regions", g.regions);
    w.end_object();
  }
  w.end_object();
}

// Writes the regions array's elements. Long arrays are formatted in two halves at once:
// the second half by a helper thread into its own buffer, appended after the first.
void write_regions(JsonWriter& w, const std::vector<Region>& regions, std::string& out,
                   const std::function<void(std::string&)>& flush) {
  auto maybe_flush = [&] {
    if (flush && out.size() >= (1u << 20)) flush(out);
  };
  constexpr size_t kParallelFrom = 4096;
  size_t half = regions.size() >= kParallelFrom ? regions.size() / 2 : regions.size();
  std::string second;
  std::thread helper;
  if (half < regions.size()) {
    helper = std::thread([&] {
      second.reserve((regions.size() - half) * 640);
      JsonWriter w2 = JsonWriter::continuing_array(second);
      for (size_t i = half; i < regions.size(); ++i) write_region(w2, regions[i]);
    });
  }
  for (size_t i = 0; i < half; ++i) {
    write_region(w, regions[i]);
    maybe_flush();
  }
  if (helper.joinable()) {  // half > 0 here, so the leading comma of `second` is right
    helper.join();
    if (flush) {
      flush(out);
      flush(second);
    } else {
      out += second;
    }
  }
}

}  // namespace

std::string render_region_figures_json(const SmapsRegion& r) {
  std::string out;
  out.reserve(512);
  JsonWriter w = JsonWriter::continuing_object(out);
  write_region_figures(w, r);
  return out;
}

void write_layout_json(const Layout& layout, std::string& out,
                       const std::function<void(std::string&)>& flush) {
  JsonWriter w(out);
  w.begin_object();
  w.field("pid", static_cast<int64_t>(layout.pid));
  w.field("command", layout.command);
  w.field("exe", layout.exe);

  SmapsFigures totals = layout.totals();
  w.key("totals");
  w.begin_object();
  write_all_figures(w, totals);
  w.end_object();
  w.key("rollup");
  if (layout.rollup) {
    w.begin_object();
    write_all_figures(w, *layout.rollup);
    w.end_object();
  } else {
    w.null();
  }

  RegionGroups groups = group_regions(layout);
  const auto& by_kind = groups.by_kind;
  const auto& by_object = groups.by_object;
  w.key("by_kind");
  write_groups(w, by_kind);
  w.key("by_object");
  write_groups(w, by_object);

  w.key("regions");
  w.begin_array();
  write_regions(w, layout.regions, out, flush);
  w.end_array();

  w.key("threads");
  w.begin_array();
  for (const ThreadInfo& t : layout.threads) {
    w.begin_object();
    w.field("tid", static_cast<int64_t>(t.tid));
    w.field("name", t.name);
    w.field("runtime", t.runtime);
    if (t.sp)
      w.field("sp", *t.sp);
    else
      w.null_field("sp");
    if (t.stack_found) {
      w.field("stack_start", t.stack_start);
      w.field("stack_end", t.stack_end);
      w.field("stack_size", t.stack_end - t.stack_start);
      w.field("stack_rss", t.stack_rss);
    } else {
      for (auto k : {"stack_start", "stack_end", "stack_size", "stack_rss"}) w.null_field(k);
    }
    if (t.guard_start) {
      w.field("guard_start", *t.guard_start);
      w.field("guard_end", *t.guard_end);
    } else {
      w.null_field("guard_start");
      w.null_field("guard_end");
    }
    w.end_object();
  }
  w.end_array();

  w.key("symbols");
  w.begin_array();
  for (const StaticSymbol& s : layout.symbols) {
    w.begin_object();
    w.field("object", s.object);
    w.field("name", s.name);
    w.field("mangled", s.mangled);
    w.field("section", s.section);
    w.field("address", s.address);
    w.field("size", s.size);
    w.field("rss", s.rss);
    w.field("tls", s.tls);
    w.end_object();
  }
  w.end_array();

  w.key("objects");
  w.begin_array();
  for (const LoadedObject& o : layout.objects) {
    w.begin_object();
    w.field("path", o.path);
    w.field("build_id", o.build_id);
    w.field("start", o.start);
    w.field("end", o.end);
    w.field("bias", o.bias);
    w.field("readable", o.readable);
    w.field("stripped", o.stripped);
    w.field("deleted", o.deleted);
    w.end_object();
  }
  w.end_array();

  w.key("warnings");
  w.begin_array();
  for (const auto& warning : layout.warnings) w.value(warning);
  w.end_array();
  w.end_object();
  out += '\n';
  if (flush) flush(out);
}

}  // namespace memcensus
