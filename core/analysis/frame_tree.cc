#include "analysis/frame_tree.h"

#include <algorithm>

namespace memcensus {

FrameTree::FrameTree() : nodes_(1) {
  nodes_[0].name = "all";
}

void FrameTree::add(const std::vector<std::string>& path, uint64_t value) {
  size_t at = 0;
  nodes_[0].value += value;
  for (const std::string& name : path) {
    size_t next = 0;
    for (size_t c : nodes_[at].children)
      if (nodes_[c].name == name) next = c;
    if (!next) {
      next = nodes_.size();
      nodes_.push_back(Node{name, 0, {}});
      nodes_[at].children.push_back(next);
    }
    nodes_[next].value += value;
    at = next;
  }
}

std::vector<size_t> FrameTree::children(size_t i, uint64_t min_value, size_t max) const {
  std::vector<size_t> out;
  for (size_t c : nodes_[i].children)
    if (nodes_[c].value >= min_value && nodes_[c].value) out.push_back(c);
  std::sort(out.begin(), out.end(), [&](size_t a, size_t b) {
    return nodes_[a].value != nodes_[b].value ? nodes_[a].value > nodes_[b].value
                                              : nodes_[a].name < nodes_[b].name;
  });
  if (out.size() > max) out.resize(max);
  return out;
}

}  // namespace memcensus
