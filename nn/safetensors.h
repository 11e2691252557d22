// safetensors.h — read and write checkpoints in the Hugging Face safetensors format.
//
// Layout of a file (all integers little-endian):
//
//   [ u64 N ][ N bytes of UTF-8 JSON header, may end in spaces ][ data buffer ]
//
//   header = { "<name>": {"dtype": "F32", "shape": [2, 3], "data_offsets": [begin, end]},
//              ...,
//              "__metadata__": {"<key>": "<string value>", ...} }      // optional
//
// data_offsets are byte offsets into the data buffer; tensors are row-major and together
// cover the buffer exactly (no overlap, no hole, nothing after the last one). Files written
// here open in Python with `safetensors.torch.load_file`, and files written by Python load
// here, for the dtypes mox has (F32 F64 F16 BF16 I32 I64 U8 BOOL).
//
// What this is not: a lazy or memory-mapped tensor store (loading copies every tensor into
// a fresh CPU tensor), nor a state-dict matcher (Module::load_state_dict does that, keyed by
// the names kept here). Every malformed input is a mox::Error naming the file and the key.
#pragma once
#include <cstddef>
#include <cstdint>
#include <map>
#include <string>

#include "nn/module.h"

namespace mox::nn {

struct SafetensorsFile {
  NamedTensors tensors;                          // file order (by data offset); CPU, contiguous
  std::map<std::string, std::string> metadata;   // the "__metadata__" object, if any
};

// Write `tensors` (any device, any strides) in the given order, plus `metadata`. The write
// is atomic: the bytes go to "<path>.tmp.<pid>" in the same directory, which is fsynced and
// renamed over `path`, and then the directory is fsynced — a crash leaves the old file or
// the new one, never a torn one. Duplicate or reserved names ("__metadata__") are an error.
void save_safetensors(const std::string& path, const NamedTensors& tensors,
                      const std::map<std::string, std::string>& metadata = {});

// Read a whole file. Throws mox::Error naming `path` for I/O errors and for any violation of
// the format (see parse_safetensors).
SafetensorsFile load_safetensors(const std::string& path);

// Parse a complete safetensors image held in memory. `source_name` (usually the path) is put
// in every error message. Safe on hostile input: every length and offset is checked before
// use, nothing is read outside [bytes, bytes + size), and sizes are checked for overflow.
SafetensorsFile parse_safetensors(const uint8_t* bytes, size_t size, const std::string& source_name);

// "F32", "BF16", "BOOL", ... — the dtype strings of the format.
std::string dtype_to_safetensors(DType dtype);
// The inverse; throws naming the string, `context` (e.g. "file 'x', tensor 'w'") and the
// dtypes mox supports.
DType dtype_from_safetensors(const std::string& name, const std::string& context);

}  // namespace mox::nn
