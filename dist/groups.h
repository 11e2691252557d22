// groups.h — DeepSpeed's process-group layout for data and expert parallelism.
//
// With W ranks and an expert-parallel size p (W divisible by p):
//   expert-parallel groups      : p consecutive ranks   {0..p-1}, {p..2p-1}, ...   (all-to-all of tokens)
//   expert-data-parallel groups : ranks with the same position in their expert-parallel group,
//                                 strided by p  {0, p, 2p, ...}, {1, p+1, ...}     (expert gradients)
//   data-parallel group         : the world                                        (dense gradients)
// as DeepSpeed's groups._create_expert_and_data_parallel (without model parallelism). A model
// may use several p (PR-MoE layers with different expert counts); each p's groups are built
// once, on first use, and shared under DeepSpeed's name "ep_size_<p>" — which is also the
// group name moe::Experts gives its parameters.
//
// Creating groups is collective over the world: every rank must ask for the same p in the
// same order (building the model on every rank does that).
#pragma once
#include <memory>
#include <string>

#include "dist/process_group.h"

namespace mox::dist {

struct ExpertGroups {
  int ep_size = 1;
  std::string name;                                     // "ep_size_<p>"
  std::shared_ptr<ProcessGroup> expert_parallel;        // this rank's p consecutive ranks
  std::shared_ptr<ProcessGroup> expert_data_parallel;   // this rank's W/p strided ranks
};

// The groups for expert-parallel size p (built on first call). Throws when the world size is
// not divisible by p or the runtime is not started.
const ExpertGroups& expert_groups(int ep_size);
// The same by DeepSpeed's name "ep_size_<p>" (as carried by expert parameters).
const ExpertGroups& expert_groups(const std::string& name);

}  // namespace mox::dist
