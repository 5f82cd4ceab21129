#include "layout/runtime_objects.h"

#include <unordered_map>
#include <unordered_set>

#include "util/error.h"

namespace memcensus {
namespace {

std::string file_name(const std::string& path) {
  size_t slash = path.rfind('/');
  return slash == std::string::npos ? path : path.substr(slash + 1);
}

}  // namespace

std::vector<std::string> runtime_only_objects(
    const std::vector<std::string>& objects,
    const std::function<ElfInfo(const std::string&)>& load) {
  std::vector<size_t> runtime;
  for (size_t i = 0; i < objects.size(); ++i)
    if (file_name(objects[i]).starts_with("libmemcensus_rt")) runtime.push_back(i);
  if (runtime.empty()) return {};

  std::vector<std::vector<std::string>> needed(objects.size());
  std::unordered_map<std::string, size_t> by_name;  // soname, then file name -> index
  for (size_t i = 0; i < objects.size(); ++i) {
    try {
      ElfInfo info = load(objects[i]);
      needed[i] = std::move(info.needed);
      if (!info.soname.empty()) by_name.emplace(info.soname, i);
    } catch (const Error&) {
      // Unreadable: it needs nothing we know of, and stays the program's.
    }
  }
  for (size_t i = 0; i < objects.size(); ++i) by_name.emplace(file_name(objects[i]), i);

  // Every file reachable from `from` through DT_NEEDED.
  auto closure = [&](std::vector<size_t> from) {
    std::vector<bool> seen(objects.size());
    for (size_t i : from) seen[i] = true;
    while (!from.empty()) {
      size_t i = from.back();
      from.pop_back();
      for (const std::string& n : needed[i]) {
        auto it = by_name.find(n);
        if (it == by_name.end() || seen[it->second]) continue;
        seen[it->second] = true;
        from.push_back(it->second);
      }
    }
    return seen;
  };
  std::vector<bool> of_runtime = closure(runtime);
  std::vector<size_t> others;
  for (size_t i = 0; i < objects.size(); ++i)
    if (!of_runtime[i]) others.push_back(i);
  std::vector<bool> of_program = closure(others);
  std::vector<std::string> out;
  for (size_t i = 0; i < objects.size(); ++i)
    if (of_runtime[i] && !of_program[i]) out.push_back(objects[i]);
  return out;
}

}  // namespace memcensus
