// experts.cpp — Experts construction (factory + copied initial values) and expert_parameters().
#include "moe/experts.h"

namespace mox::moe {

Experts::Experts(const ExpertFactory& make_expert, int64_t num_local_experts, std::string group_name)
    : group_name_(std::move(group_name)) {
  MOX_CHECK(num_local_experts >= 1, "Experts: num_local_experts=", num_local_experts, " must be at least 1");
  MOX_CHECK(bool(make_expert), "Experts: no expert factory given");
  for (int64_t i = 0; i < num_local_experts; ++i) {
    std::shared_ptr<nn::Module> m = make_expert();
    MOX_CHECK(m != nullptr, "Experts: the expert factory returned null for expert ", i);
    if (i > 0) {
      try {
        m->load_state_dict(experts_[0]->state_dict());
      } catch (const Error& err) {
        MOX_FAIL("Experts: expert ", i, " built by the factory differs from expert 0: ", err.what());
      }
    }
    add_module(std::to_string(i), m);
    experts_.push_back(std::move(m));
  }
}

nn::Module& Experts::operator[](int64_t i) const {
  MOX_CHECK(i >= 0 && i < size(), "Experts: index ", i, " out of range for ", size(), " experts");
  return *experts_[size_t(i)];
}

std::shared_ptr<nn::Module> Experts::replace_module(const std::string& name, std::shared_ptr<nn::Module> m) {
  std::shared_ptr<nn::Module> old = nn::Module::replace_module(name, m);
  experts_[std::stoul(name)] = std::move(m);   // children are named by index
  return old;
}

std::string Experts::repr() const {
  return str("Experts(n=", size(), ", group=", group_name_, ")");
}

std::vector<ExpertParameter> expert_parameters(const nn::Module& model) {
  std::vector<ExpertParameter> out;
  for (const auto& [prefix, module] : model.named_modules()) {
    const auto* experts = dynamic_cast<const Experts*>(module);
    if (!experts) continue;
    for (const auto& [name, p] : experts->named_parameters())
      out.push_back({prefix.empty() ? name : prefix + "." + name, p, experts->group_name()});
  }
  return out;
}

}  // namespace mox::moe
