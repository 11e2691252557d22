// file_bytes.h — read a whole file into memory, with an error that names it.
//
// Shared by the dataset readers, which all parse from memory (so their parsers can be fed
// bytes directly by tests and fuzzers). Not here: streaming or memory-mapped reads.
#pragma once
#include <cstdint>
#include <string>
#include <vector>

namespace mox::data {

// All bytes of `path`; throws mox::Error naming `what` (e.g. "CIFAR-10 file"), the path
// and the system's reason when it cannot be opened or read.
std::vector<uint8_t> read_file_bytes(const std::string& path, const char* what);

}  // namespace mox::data
