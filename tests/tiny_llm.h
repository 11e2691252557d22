// tiny_llm.h — the tests' tiny language model configuration (tests/test_llm.cpp,
// tests/test_cuda_modules.cpp).
#pragma once
#include <string>

#include "examples/llm/config.h"

namespace mox::testing {

// 2 layers of width 16, 2 heads, block 16; experts > 1 makes layer 2 an MoE layer (top-2).
// Dropless routing: with capacity dropping, a token dropped in a long forward would not be
// dropped when it is routed alone, and the KV-cache test compares exactly those two.
inline llm::ModelConfig tiny_llm_config(const std::string& arch, int64_t experts, int64_t vocab) {
  llm::ModelConfig c;
  c.arch = arch;
  c.vocab_size = vocab;
  c.n_layer = 2;
  c.n_head = 2;
  c.n_embd = 16;
  c.block_size = 16;
  c.num_experts = {experts};
  c.expert_interval = 2;
  c.gate.k = 2;
  c.gate.drop_tokens = false;
  return c;
}

}  // namespace mox::testing
