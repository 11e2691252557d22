// fuzz_llm_config.cpp — libFuzzer target for mox-llm's model config reader,
// llm::ModelConfig::from_json (examples/llm/config.cpp, linked into this target by the
// Makefile), the JSON stored in every mox-llm checkpoint. Accepted: the config validates,
// its experts_per_layer() has n_layer entries, and to_json() reads back to the same JSON.
#include <string>

#include "examples/llm/config.h"
#include "fuzz/fuzz_common.h"

extern "C" int LLVMFuzzerTestOneInput(const uint8_t* data, size_t size) {
  const std::string text(reinterpret_cast<const char*>(data), size);
  return mox::fuzz::run_one([&] {
    const mox::llm::ModelConfig c = mox::llm::ModelConfig::from_json(text);
    c.validate();
    MOX_FUZZ_ASSERT(int64_t(c.experts_per_layer().size()) == c.n_layer);
    const std::string j = c.to_json();
    MOX_FUZZ_ASSERT(mox::llm::ModelConfig::from_json(j).to_json() == j);
  });
}
