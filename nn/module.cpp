// module.cpp — named registration and everything driven by the names.
#include "nn/module.h"

#include <set>
#include <sstream>

namespace mox::nn {

Tensor Module::forward(const Tensor&) {
  MOX_FAIL(repr(), " does not implement forward(Tensor)");
}

namespace {
void check_name(const std::string& name, const char* what) {
  MOX_CHECK(!name.empty() && name.find('.') == std::string::npos, "register_", what, ": name '",
            name, "' must be non-empty and contain no '.'");
}
template <typename List> bool has_name(const List& list, const std::string& name) {
  for (const auto& kv : list) if (kv.first == name) return true;
  return false;
}
}  // namespace

// Parameters, buffers and children share one namespace (as attributes do in PyTorch): a
// buffer named like a parameter would give state_dict() the same key twice.
bool Module::has_member(const std::string& name) const {
  return has_name(params_, name) || has_name(buffers_, name) || has_name(modules_, name);
}

Tensor Module::register_parameter(const std::string& name, Tensor value) {
  check_name(name, "parameter");
  MOX_CHECK(!has_member(name), "register_parameter: '", name, "' is already registered");
  if (!value.requires_grad()) value.set_requires_grad(true);
  params_.emplace_back(name, value);
  return value;
}

Tensor Module::register_buffer(const std::string& name, Tensor value) {
  check_name(name, "buffer");
  MOX_CHECK(!has_member(name), "register_buffer: '", name, "' is already registered");
  buffers_.emplace_back(name, value);
  return value;
}

void Module::add_module(const std::string& name, std::shared_ptr<Module> module) {
  check_name(name, "module");
  MOX_CHECK(module != nullptr, "register_module: '", name, "' is null");
  MOX_CHECK(!has_member(name), "register_module: '", name, "' is already registered");
  modules_.emplace_back(name, std::move(module));
}

std::shared_ptr<Module> Module::replace_module(const std::string& name, std::shared_ptr<Module> module) {
  MOX_CHECK(module != nullptr, "replace_module: the new module for '", name, "' is null");
  for (auto& [n, m] : modules_) {
    if (n != name) continue;
    std::swap(m, module);
    return module;
  }
  std::string names;
  for (const auto& [n, m] : modules_) names += (names.empty() ? "" : ", ") + n;
  MOX_FAIL("replace_module: ", repr(), " has no child module '", name, "' (its children: ",
           names.empty() ? "none" : names, ")");
}

void Module::collect(const std::string& prefix, NamedTensors& out, bool params) const {
  for (const auto& [name, t] : params ? params_ : buffers_) out.emplace_back(prefix + name, t);
  for (const auto& [name, m] : modules_) m->collect(prefix + name + ".", out, params);
}

NamedTensors Module::named_parameters() const {
  NamedTensors out;
  collect("", out, true);
  return out;
}

std::vector<Tensor> Module::parameters() const {
  std::vector<Tensor> out;
  for (auto& [name, t] : named_parameters()) out.push_back(t);
  return out;
}

NamedTensors Module::named_buffers() const {
  NamedTensors out;
  collect("", out, false);
  return out;
}

std::vector<std::pair<std::string, Module*>> Module::named_modules() const {
  std::vector<std::pair<std::string, Module*>> out{{"", const_cast<Module*>(this)}};
  for (const auto& [name, m] : modules_)
    for (auto& [sub, ptr] : m->named_modules()) out.emplace_back(sub.empty() ? name : name + "." + sub, ptr);
  return out;
}

int64_t Module::num_parameters() const {
  int64_t n = 0;
  for (auto& [name, t] : named_parameters()) n += t.numel();
  return n;
}

NamedTensors Module::state_dict() const {
  NamedTensors out = named_parameters();
  NamedTensors bufs = named_buffers();
  out.insert(out.end(), bufs.begin(), bufs.end());
  return out;
}

void Module::load_state_dict(const NamedTensors& state) { load_named_tensors(state_dict(), state); }

void load_named_tensors(const NamedTensors& mine, const NamedTensors& state) {
  std::set<std::string> expected;
  for (auto& [name, t] : mine) expected.insert(name);
  std::set<std::string> given;
  for (auto& [name, t] : state) {
    MOX_CHECK(given.insert(name).second, "load_state_dict: key '", name, "' appears twice");
    MOX_CHECK(expected.count(name), "load_state_dict: unexpected key '", name,
              "' (not a parameter or buffer of this model)");
  }
  for (auto& [name, t] : mine)
    MOX_CHECK(given.count(name), "load_state_dict: missing key '", name, "'");
  // Validate everything before copying anything: a failed load leaves the model as it was.
  std::vector<std::pair<const Tensor*, const Tensor*>> copies;   // (dst, src)
  for (auto& [name, src] : state) {
    for (auto& [mname, dst] : mine) {
      if (mname != name) continue;
      MOX_CHECK(src.shape() == dst.shape(), "load_state_dict: key '", name, "' has shape ", src.shape(),
                " in the checkpoint but ", dst.shape(), " in the model");
      MOX_CHECK(src.dtype() == dst.dtype(), "load_state_dict: key '", name, "' has dtype ", src.dtype(),
                " in the checkpoint but ", dst.dtype(), " in the model");
      copies.emplace_back(&dst, &src);
    }
  }
  autograd::NoGradGuard no_grad;
  for (auto& [dst, src] : copies) raw::copy_(*dst, raw::to_device(*src, dst->device()));
}

void Module::train(bool on) {
  training_ = on;
  for (auto& [name, m] : modules_) m->train(on);
}

void Module::to(Device device) {
  auto move = [&](Tensor& t) {
    if (t.device() == device) return;
    Tensor moved = raw::to_device(t, device);
    t.impl()->storage = moved.storage();   // swap storage inside the shared impl
    t.impl()->strides = moved.strides();
    t.impl()->offset = 0;
    if (t.impl()->grad) t.impl()->grad = raw::to_device(Tensor(t.impl()->grad), device).impl_ptr();
  };
  for (auto& [name, t] : params_) move(t);
  for (auto& [name, t] : buffers_) move(t);
  for (auto& [name, m] : modules_) m->to(device);
}

void Module::to(DType dtype, const std::function<bool(const Tensor&)>& keep) {
  MOX_CHECK(is_floating(dtype), "Module::to: ", dtype, " is not a floating-point dtype");
  auto convert = [&](Tensor& t) {
    if (t.dtype() == dtype || !is_floating(t.dtype()) || (keep && keep(t))) return;
    Tensor converted = raw::contiguous(raw::to_dtype(t, dtype));
    t.impl()->storage = converted.storage();   // swap inside the shared impl, as to(device)
    t.impl()->strides = converted.strides();
    t.impl()->offset = converted.offset();
    t.impl()->dtype = dtype;
    if (t.impl()->grad) t.impl()->grad = raw::contiguous(raw::to_dtype(Tensor(t.impl()->grad), dtype)).impl_ptr();
  };
  for (auto& [name, t] : params_) convert(t);
  for (auto& [name, t] : buffers_) convert(t);
  for (auto& [name, m] : modules_) m->to(dtype, keep);
}

void Module::zero_grad() {
  for (auto& [name, t] : named_parameters())
    if (t.grad().defined()) raw::fill_(t.grad(), 0.0);
}

std::string Module::to_string() const {
  std::ostringstream os;
  os << repr();
  if (!modules_.empty()) {
    os << " {\n";
    for (const auto& [name, m] : modules_) {
      std::string child = m->to_string();
      std::string indented;
      for (char c : child) { indented += c; if (c == '\n') indented += "  "; }
      os << "  (" << name << "): " << indented << "\n";
    }
    os << "}";
  }
  return os.str();
}

}  // namespace mox::nn
