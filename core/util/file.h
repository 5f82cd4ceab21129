// Reading whole files, procfs files included (whose stat size is 0).
#pragma once

#include <cstdint>
#include <functional>
#include <optional>
#include <string>
#include <string_view>

namespace memcensus {

// Reads the whole file at `path`. Throws Error naming the path on failure, with the
// errno text (for procfs: "No such file or directory" means the process is gone).
std::string read_file(const std::string& path);

// As read_file, but returns nullopt when the file does not exist (ENOENT), e.g. a procfs
// file that an older kernel does not provide. Other failures still throw.
std::optional<std::string> read_file_if_exists(const std::string& path);

// Reads the file at `path` in pieces of about `piece` bytes, passing each to `sink`.
// Throws Error naming the path on failure (see last_read_errno()).
void read_file_pieces(const std::string& path, size_t piece,
                      const std::function<void(std::string_view)>& sink);

// The errno of the last failed read_file* call on this thread, for callers that must tell
// "gone" from "forbidden".
int last_read_errno();

}  // namespace memcensus
