// FrameArena: stack frames stored once, in blocks that never move, so that what reads a
// trace can keep views of them instead of copies: the decoder keeps each segment's stacks
// in one (later stacks name earlier ones as bases), and the analysis keeps the same arena
// (shared) as its own stack table. A stack never spans two blocks.
#pragma once

#include <cstddef>
#include <cstdint>
#include <memory>
#include <span>
#include <vector>

namespace memcensus {

class FrameArena {
 public:
  static constexpr size_t kBlock = size_t{1} << 17;  // frames (1 MiB: little left unused)
  size_t size() const { return size_; }              // frames stored
  const uint64_t* at(size_t offset) const {
    return blocks_[offset / kBlock].get() + offset % kBlock;
  }
  std::span<const uint64_t> view(size_t offset, size_t depth) const {
    return depth ? std::span<const uint64_t>(at(offset), depth) : std::span<const uint64_t>();
  }
  // Stores `frames` (at most kBlock) and returns their offset.
  size_t append(std::span<const uint64_t> frames);

 private:
  std::vector<std::unique_ptr<uint64_t[]>> blocks_;
  size_t used_ = kBlock;  // frames used in the last block
  size_t size_ = 0;
};

}  // namespace memcensus
