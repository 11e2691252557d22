// param_groups.h — split optimizer groups so that expert parameters live in groups of their own.
//
// As DeepSpeed's split_params_into_different_moe_groups_for_optimizer: every group keeps its
// dense (non-expert) parameters under its name, and its expert parameters move to one new
// group per expert-parallel group name, marked moe = true and carrying the same
// hyper-parameters. DeepSpeed names that group just "<ep group>", so two input groups
// collide; here it is "<group>_moe_<ep group>" (e.g. "default_moe_ep_size_1"). The
// expert-data-parallel gradient reduction and the optimizer checkpoints find them by that
// mark and name.
//
// What it is not: it changes no hyper-parameter and drops no parameter; a group left with no
// dense parameters is not emitted (its experts' groups are).
#pragma once
#include <vector>

#include "nn/module.h"
#include "nn/optim/optimizer.h"

namespace mox::moe {

// Parameters are matched to experts by identity (the same TensorImpl), so any naming of the
// groups' parameters works. Throws when a resulting group name collides with an existing one.
std::vector<optim::ParamGroup> split_moe_param_groups(std::vector<optim::ParamGroup> groups,
                                                      const nn::Module& model);

}  // namespace mox::moe
