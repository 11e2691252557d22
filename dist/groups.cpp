// groups.cpp — building and caching the expert-parallel / expert-data-parallel groups.
#include "dist/groups.h"

#include <cstdlib>
#include <map>

#include "dist/world.h"

namespace mox::dist {

const ExpertGroups& expert_groups(int ep_size) {
  static std::map<int, ExpertGroups> cache;
  auto it = cache.find(ep_size);
  if (it != cache.end()) return it->second;
  ProcessGroup& w = world();
  MOX_CHECK(ep_size >= 1 && w.size() % ep_size == 0, "expert groups: ep_size=", ep_size,
            " must divide the world size ", w.size(), " (each expert-parallel group is ep_size consecutive ranks)");
  ExpertGroups g;
  g.ep_size = ep_size;
  g.name = str("ep_size_", ep_size);
  const int r = w.rank();
  g.expert_parallel = w.split(r / ep_size, r, str(g.name, "/expert_parallel_", r / ep_size));
  g.expert_data_parallel = w.split(r % ep_size, r, str(g.name, "/expert_data_parallel_", r % ep_size));
  return cache.emplace(ep_size, std::move(g)).first->second;
}

const ExpertGroups& expert_groups(const std::string& name) {
  const std::string prefix = "ep_size_";
  const bool ok = name.size() > prefix.size() && name.compare(0, prefix.size(), prefix) == 0 &&
                  name.find_first_not_of("0123456789", prefix.size()) == std::string::npos && name.size() < 16;
  MOX_CHECK(ok, "expert groups: '", name, "' is not an expert group name (expected ep_size_<n>)");
  return expert_groups(std::atoi(name.c_str() + prefix.size()));
}

}  // namespace mox::dist
