// engine_checkpoint.cpp — Engine::save / Engine::load: checkpoints that survive a crash mid-save
// and load under another world size or expert-parallel size.
//
// Layout of `dir`:
//   latest                     "step<N>": the newest committed checkpoint (replaced atomically)
//   step<N>/rank<r>.safetensors  what rank r writes (safetensors, atomic):
//       model.<global name>            fp32 values (the masters) of the parameters rank r owns:
//                                      every parameter is written exactly once — dense ones by
//                                      world rank 0 (ZeRO-1: by their owner), each expert by
//                                      rank 0 of its expert-data-parallel group under its
//                                      GLOBAL id (experts.<id>, not the local index)
//       optimizer.<global name>.<buffer>  its optimizer state (exp_avg, momentum_buffer, ...)
//       metadata: step.<global name> (updates of that parameter), rng and gate_rng.<layer>
//                 (this rank's generators); rank 0 also: engine.* counters, scaler.* (loss
//                 scaler), loader.epoch/batch, client.* (the caller's entries), world size
//   step<N>/COMMIT             written by rank 0 after every rank finished (a barrier), last
// Save writes into step<N>.partial/, then COMMIT, then renames it to step<N>/ and replaces
// `latest`: a save killed at any point leaves the previous checkpoint loadable, and load()
// refuses a directory without COMMIT.
//
// Load reads every rank file, so each rank finds any parameter by its global name whatever
// layout wrote it: experts are remapped to the ranks that hold them now, optimizer state follows
// its parameter (into whichever ZeRO-1 share owns it now). RNG states are restored per rank when
// the world size is unchanged; otherwise every rank takes rank 0's (a fresh start does the same).
#include <filesystem>
#include <fstream>
#include <map>

#include "dist/engine.h"
#include "dist/world.h"
#include "moe/gate.h"
#include "nn/checkpoint.h"
#include "nn/safetensors.h"
#include "tensor/ops.h"

namespace mox::dist {
namespace {

namespace fs = std::filesystem;
using Meta = std::map<std::string, std::string>;

// Small text file written atomically (temp, fsync by close+rename; the directory entry swaps).
void write_text_atomic(const fs::path& path, const std::string& text) {
  const fs::path tmp = path.string() + ".tmp";
  {
    std::ofstream out(tmp, std::ios::trunc);
    out << text;
    out.flush();
    MOX_CHECK(out.good(), "checkpoint: cannot write '", tmp.string(), "'");
  }
  fs::rename(tmp, path);
}

std::string read_text(const fs::path& path) {
  std::ifstream in(path);
  MOX_CHECK(in.good(), "checkpoint: cannot read '", path.string(), "'");
  std::string s((std::istreambuf_iterator<char>(in)), std::istreambuf_iterator<char>());
  while (!s.empty() && (s.back() == '\n' || s.back() == ' ')) s.pop_back();
  return s;
}

// Every generator a model's routers own, by layer name.
std::vector<std::pair<std::string, moe::TopKGate*>> gates(nn::Module& model) {
  std::vector<std::pair<std::string, moe::TopKGate*>> out;
  for (auto& [name, m] : model.named_modules())
    if (auto* g = dynamic_cast<moe::TopKGate*>(m)) out.emplace_back(name, g);
  return out;
}

int64_t meta_count(const Meta& m, const std::string& key, const std::string& file) {
  return nn::require_meta_count(m, key, file);
}

}  // namespace

void Engine::save(const std::string& dir, const std::map<std::string, std::string>& client) {
  const std::string name = "step" + std::to_string(global_steps_);
  const fs::path root(dir), partial = root / (name + ".partial"), final_dir = root / name;
  if (world_->rank() == 0) {
    fs::create_directories(root);
    fs::remove_all(partial);   // a stale half-written save of the same step
    fs::create_directories(partial);
  }
  world_->barrier();

  nn::NamedTensors tensors;
  Meta meta{{"rank", std::to_string(world_->rank())}, {"world_size", std::to_string(world_->size())},
            {"rng", nn::generator_state(default_generator())}};
  for (auto& [layer, g] : gates(*model_)) meta["gate_rng." + layer] = nn::generator_state(g->generator());
  std::map<std::string, const Param*> writes;   // global name → param this rank writes
  for (const Param& p : params_)
    if (p.owner == p.group->rank()) {
      writes[p.name] = &p;
      tensors.emplace_back("model." + p.name, p.master);
    }
  const optim::OptimizerState st = optimizer_->state_dict();
  for (const optim::ParamGroup& g : optimizer_->groups())
    for (const std::string& pname : g.param_names) {
      if (!writes.count(pname)) continue;
      const std::string prefix = g.name + "." + pname + ".";
      for (const auto& [key, t] : st.tensors)
        if (key.compare(0, prefix.size(), prefix) == 0) tensors.emplace_back("optimizer." + pname + "." + key.substr(prefix.size()), t);
      if (auto it = st.meta.find(prefix + "step"); it != st.meta.end()) meta["step." + pname] = it->second;
    }
  if (world_->rank() == 0) {
    meta["engine.global_steps"] = std::to_string(global_steps_);
    meta["engine.micro_steps"] = std::to_string(micro_steps_);
    meta["engine.skipped_steps"] = std::to_string(skipped_steps_);
    meta["engine.optimizer"] = st.meta.at("optimizer");
    if (mp_->scaler())
      for (const auto& [k, v] : mp_->scaler()->state()) meta["scaler." + k] = v;
    if (loader_) {
      meta["loader.epoch"] = std::to_string(loader_->state().epoch);
      meta["loader.batch"] = std::to_string(loader_->state().batch);
    }
    for (const auto& [k, v] : client) meta["client." + k] = v;
  }
  nn::save_safetensors((partial / ("rank" + std::to_string(world_->rank()) + ".safetensors")).string(), tensors, meta);
  world_->barrier();   // every rank's file is on disk

  if (world_->rank() == 0) {
    write_text_atomic(partial / "COMMIT", str(name, " world_size ", world_->size(), "\n"));
    fs::remove_all(final_dir);
    fs::rename(partial, final_dir);
    write_text_atomic(root / "latest", name + "\n");
  }
  world_->barrier();
}

std::map<std::string, std::string> Engine::load(const std::string& dir) {
  const fs::path root(dir);
  MOX_CHECK(fs::exists(root / "latest"), "checkpoint '", dir, "': no committed checkpoint here (no 'latest' file)");
  const std::string name = read_text(root / "latest");
  const fs::path path = root / name;
  MOX_CHECK(fs::exists(path / "COMMIT"), "checkpoint '", path.string(),
            "': no COMMIT marker — the save did not finish; it cannot be loaded");
  // Every rank file, merged by global name.
  std::map<std::string, Tensor> all;
  std::map<std::string, std::string> step_of, where;
  std::vector<Meta> metas;
  for (int r = 0;; ++r) {
    const fs::path file = path / ("rank" + std::to_string(r) + ".safetensors");
    if (!fs::exists(file)) break;
    nn::SafetensorsFile f = nn::load_safetensors(file.string());
    for (auto& [k, t] : f.tensors) {
      all[k] = t;
      where[k] = file.string();
    }
    for (const auto& [k, v] : f.metadata)
      if (k.compare(0, 5, "step.") == 0) step_of[k.substr(5)] = v;
    metas.push_back(f.metadata);
  }
  const std::string file0 = (path / "rank0.safetensors").string();
  MOX_CHECK(!metas.empty(), "checkpoint '", path.string(), "': no rank files");
  const Meta& m0 = metas[0];
  const int64_t saved_world = meta_count(m0, "world_size", file0);
  MOX_CHECK(int64_t(metas.size()) == saved_world, "checkpoint '", path.string(), "': ", metas.size(),
            " rank files for a world of ", saved_world);

  // Validate everything before changing anything.
  for (const Param& p : params_) {
    auto it = all.find("model." + p.name);
    MOX_CHECK(it != all.end(), "checkpoint '", path.string(), "': no tensor 'model.", p.name,
              "' (does the model match the one saved? experts are stored under their global ids)");
    MOX_CHECK(it->second.shape() == p.master.shape(), "checkpoint '", where["model." + p.name], "': 'model.", p.name,
              "' has shape ", it->second.shape(), " but the parameter has ", p.master.shape());
  }
  optim::OptimizerState st;
  st.meta["optimizer"] = nn::require_meta(m0, "engine.optimizer", file0);
  for (size_t gi = 0; gi < optimizer_->num_groups(); ++gi) {
    const optim::ParamGroup& g = optimizer_->groups()[gi];
    st.meta[g.name + ".lr"] = str(optimizer_->lr(gi));
    for (const std::string& pname : g.param_names) {
      const std::string prefix = "optimizer." + pname + ".";
      for (auto it = all.lower_bound(prefix); it != all.end() && it->first.compare(0, prefix.size(), prefix) == 0; ++it)
        st.tensors.emplace_back(g.name + "." + pname + "." + it->first.substr(prefix.size()), it->second);
      if (auto s = step_of.find(pname); s != step_of.end()) st.meta[g.name + "." + pname + ".step"] = s->second;
    }
  }
  optimizer_->load_state_dict(st);   // validates, then changes
  for (Param& p : params_) raw::copy_(p.master, all.at("model." + p.name));
  mp_->masters_to_params();
  mp_->zero_grad();
  global_steps_ = meta_count(m0, "engine.global_steps", file0);
  micro_steps_ = meta_count(m0, "engine.micro_steps", file0);
  skipped_steps_ = meta_count(m0, "engine.skipped_steps", file0);
  if (optim::LossScaler* scaler = mp_->scaler()) {
    Meta s;
    for (const auto& [k, v] : m0)
      if (k.compare(0, 7, "scaler.") == 0) s[k.substr(7)] = v;
    MOX_CHECK(!s.empty(), "checkpoint '", file0, "': no loss-scaler state, but this run has fp16 enabled");
    scaler->load_state(s);
  }
  if (loader_ && m0.count("loader.epoch"))
    loader_->restore(meta_count(m0, "loader.epoch", file0), meta_count(m0, "loader.batch", file0));
  const int r = saved_world == world_->size() ? world_->rank() : 0;
  const std::string rank_file = (path / ("rank" + std::to_string(r) + ".safetensors")).string();
  nn::restore_generator(default_generator(), metas[size_t(r)], "rng", rank_file);
  for (auto& [layer, g] : gates(*model_))
    if (metas[size_t(r)].count("gate_rng." + layer)) nn::restore_generator(g->generator(), metas[size_t(r)], "gate_rng." + layer, rank_file);
  std::map<std::string, std::string> client;
  for (const auto& [k, v] : m0)
    if (k.compare(0, 7, "client.") == 0) client[k.substr(7)] = v;
  return client;
}

}  // namespace mox::dist
