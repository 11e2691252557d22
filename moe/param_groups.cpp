// param_groups.cpp — split_moe_param_groups (see param_groups.h).
#include "moe/param_groups.h"

#include <algorithm>
#include <map>
#include <set>

#include "moe/experts.h"

namespace mox::moe {

std::vector<optim::ParamGroup> split_moe_param_groups(std::vector<optim::ParamGroup> groups,
                                                      const nn::Module& model) {
  std::map<const TensorImpl*, std::string> expert_group;   // parameter → its ep group name
  for (const ExpertParameter& p : expert_parameters(model)) expert_group[p.param.impl()] = p.group;

  std::vector<optim::ParamGroup> out;
  for (optim::ParamGroup& g : groups) {
    optim::ParamGroup dense = g;
    dense.params.clear();
    dense.param_names.clear();
    std::vector<optim::ParamGroup> moe_groups;   // in order of first appearance
    for (size_t i = 0; i < g.params.size(); ++i) {
      const std::string name = i < g.param_names.size() ? g.param_names[i] : std::to_string(i);
      auto it = expert_group.find(g.params[i].impl());
      optim::ParamGroup* target = &dense;
      if (it != expert_group.end()) {
        const std::string group_name = g.name + "_moe_" + it->second;
        auto m = std::find_if(moe_groups.begin(), moe_groups.end(),
                              [&](const optim::ParamGroup& mg) { return mg.name == group_name; });
        if (m == moe_groups.end()) {
          optim::ParamGroup mg = g;   // same hyper-parameters
          mg.params.clear();
          mg.param_names.clear();
          mg.name = group_name;
          mg.moe = true;
          moe_groups.push_back(std::move(mg));
          m = moe_groups.end() - 1;
        }
        target = &*m;
      }
      target->params.push_back(g.params[i]);
      target->param_names.push_back(name);
    }
    if (!dense.params.empty()) out.push_back(std::move(dense));
    for (auto& mg : moe_groups) out.push_back(std::move(mg));
  }
  std::set<std::string> seen;
  for (const auto& g : out)
    MOX_CHECK(seen.insert(g.name).second, "split_moe_param_groups: two groups are named '", g.name,
              "'; rename the input groups so that '<group>_moe_<ep group>' names are unique");
  return out;
}

}  // namespace mox::moe
