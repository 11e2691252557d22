// fuzz_safetensors.cpp — libFuzzer target for nn::parse_safetensors (the checkpoint and
// weights reader). Accepted files must hold contiguous CPU tensors whose bytes add up to
// the data buffer (the format's exact tiling), and BOOL tensors only 0/1 bytes.
#include <cstring>

#include "fuzz/fuzz_common.h"
#include "nn/safetensors.h"

extern "C" int LLVMFuzzerTestOneInput(const uint8_t* data, size_t size) {
  return mox::fuzz::run_one([&] {
    mox::nn::SafetensorsFile f = mox::nn::parse_safetensors(data, size, "fuzz.safetensors");
    uint64_t header_len = 0;
    std::memcpy(&header_len, data, 8);   // accepted ⇒ at least 8 bytes
    uint64_t total = 0;
    for (const auto& [name, t] : f.tensors) {
      MOX_FUZZ_ASSERT(t.defined() && t.is_contiguous() && t.device().is_cpu());
      MOX_FUZZ_ASSERT(name != "__metadata__");
      total += uint64_t(t.nbytes());
      if (t.dtype() == mox::DType::boolean) {
        const uint8_t* b = static_cast<const uint8_t*>(t.raw_data());
        for (int64_t i = 0; i < t.numel(); ++i) MOX_FUZZ_ASSERT(b[i] <= 1);
      }
    }
    MOX_FUZZ_ASSERT(total == size - 8 - header_len);
  });
}
