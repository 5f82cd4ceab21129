// FrameTree: call paths weighted by a value (bytes, blocks), merged by frame name, for the
// top-down (outermost caller first) and bottom-up (allocating function first) views.
// Memory: one node per distinct path prefix. Not thread-safe.
#pragma once

#include <cstdint>
#include <string>
#include <vector>

namespace memcensus {

class FrameTree {
 public:
  struct Node {
    std::string name;
    uint64_t value = 0;
    std::vector<size_t> children;  // node indexes
  };
  FrameTree();
  // Adds `value` along `path` (path[0] hangs under the root).
  void add(const std::vector<std::string>& path, uint64_t value);
  const Node& node(size_t i) const { return nodes_[i]; }
  const Node& root() const { return nodes_[0]; }
  // Children of node i with value >= min_value, largest first (at most `max`).
  std::vector<size_t> children(size_t i, uint64_t min_value, size_t max) const;

 private:
  std::vector<Node> nodes_;
};

}  // namespace memcensus
