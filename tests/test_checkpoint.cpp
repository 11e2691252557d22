// test_checkpoint.cpp — nn::save_checkpoint / load_checkpoint (model + optimizer +
// metadata in one safetensors file).
//
// Determinism: train a small MLP k=3 steps, save, train 3 more (record losses and params);
// a fresh model and optimizer (different init, different lr) load the file and train the
// same 3 steps: losses and params bitwise identical — for SGD with momentum, AdamW and Adam.
// Errors: another architecture (shape mismatch, missing key), a model-only file loaded with
// an optimizer, another optimizer kind, a truncated file — each names the file (and the
// key), and a failed load leaves model and optimizer untouched. Metadata round-trips;
// user metadata under the reserved "optimizer." prefix is rejected before anything is
// written. The file's keys are "model.*" and "optimizer.*" (readable from Python).
// Each test works in its own temp directory (tests/temp_dir.h).
#include <gtest/gtest.h>

#include <cstring>
#include <filesystem>
#include <functional>
#include <memory>
#include <string>
#include <vector>

#include "nn/basic.h"
#include "nn/checkpoint.h"
#include "nn/container.h"
#include "nn/linear.h"
#include "nn/loss.h"
#include "nn/optim/adam.h"
#include "nn/optim/sgd.h"
#include "nn/safetensors.h"
#include "tests/expect_error.h"
#include "tests/temp_dir.h"

namespace {

namespace fs = std::filesystem;
using namespace mox;
using namespace mox::nn;

using mox::testing::expect_error;

// 6 → hidden → classes MLP; keys "0.weight", "0.bias", "2.weight", "2.bias".
std::shared_ptr<Sequential> make_mlp(uint64_t seed, int64_t hidden = 8, int64_t classes = 3) {
  Generator gen(seed);
  return std::make_shared<Sequential>(std::initializer_list<std::shared_ptr<Module>>{
      std::make_shared<Linear>(6, hidden, true, &gen), std::make_shared<ReLU>(),
      std::make_shared<Linear>(hidden, classes, true, &gen)});
}

// One training step on batch `step` (a pure function of the step index). Returns the loss.
double train_step(Module& model, optim::Optimizer& opt, int64_t step) {
  Generator data(1000 + uint64_t(step));
  Tensor x = raw::normal({16, 6}, 0.0, 1.0, DType::f32, Device::cpu(), &data);   // (16, 6)
  std::vector<int64_t> labels(16);
  for (size_t i = 0; i < labels.size(); ++i) labels[i] = int64_t((i * 7 + size_t(step)) % 3);
  opt.zero_grad();
  Tensor loss = cross_entropy(model.forward(x), from_vector<int64_t>(labels, {16}));
  loss.backward();
  opt.step();
  return loss.item<double>();
}

// Every parameter's values, concatenated (float → double is exact, so == is bitwise).
std::vector<double> flat_params(const Module& m) {
  std::vector<double> out;
  for (auto& [n, p] : m.named_parameters()) {
    std::vector<double> v = p.to_vector<double>();
    out.insert(out.end(), v.begin(), v.end());
  }
  return out;
}

using MakeOpt = std::function<std::unique_ptr<optim::Optimizer>(const Module&, double lr)>;

class CheckpointTest : public ::testing::Test {
 protected:
  std::string path(const std::string& name) const { return dir_.path(name); }

  // Train k steps, save, train n more; fresh model+optimizer load and train n: bitwise equal.
  void check_resume_is_bitwise(const MakeOpt& make_opt) {
    const int64_t k = 3, n = 3;
    auto model = make_mlp(1);
    auto opt = make_opt(*model, 0.05);
    for (int64_t s = 0; s < k; ++s) train_step(*model, *opt, s);
    opt->set_lr(0, 0.04);   // as a schedule would: the saved lr must be restored
    const std::string file = path("ckpt.safetensors");
    save_checkpoint(file, *model, opt.get(), {{"step", std::to_string(k)}});
    std::vector<double> losses, params;
    for (int64_t s = k; s < k + n; ++s) losses.push_back(train_step(*model, *opt, s));
    params = flat_params(*model);

    auto fresh = make_mlp(2);   // different init
    auto fresh_opt = make_opt(*fresh, 0.05);
    ASSERT_NE(flat_params(*fresh), flat_params(*make_mlp(1)));
    Metadata meta = load_checkpoint(file, *fresh, fresh_opt.get());
    EXPECT_EQ(require_meta(meta, "step", file), std::to_string(k));
    EXPECT_EQ(fresh_opt->lr(0), 0.04);
    std::vector<double> resumed_losses;
    for (int64_t s = k; s < k + n; ++s) resumed_losses.push_back(train_step(*fresh, *fresh_opt, s));
    ASSERT_EQ(resumed_losses.size(), losses.size());
    for (size_t i = 0; i < losses.size(); ++i)
      EXPECT_EQ(std::memcmp(&resumed_losses[i], &losses[i], sizeof(double)), 0)
          << "step " << k + int64_t(i) << ": " << resumed_losses[i] << " vs " << losses[i];
    EXPECT_EQ(flat_params(*fresh), params);
  }

  mox::testing::TempDir dir_{"mox-checkpoint"};
};

TEST_F(CheckpointTest, ResumeIsBitwiseIdenticalSgdMomentum) {
  check_resume_is_bitwise([](const Module& m, double lr) -> std::unique_ptr<optim::Optimizer> {
    optim::SgdOptions o;
    o.lr = lr;
    o.momentum = 0.9;
    o.weight_decay = 1e-3;
    return std::make_unique<optim::Sgd>(m.named_parameters(), o);
  });
}

TEST_F(CheckpointTest, ResumeIsBitwiseIdenticalAdamW) {
  check_resume_is_bitwise([](const Module& m, double lr) -> std::unique_ptr<optim::Optimizer> {
    optim::AdamWOptions o;
    o.lr = lr;
    return std::make_unique<optim::AdamW>(m.named_parameters(), o);
  });
}

TEST_F(CheckpointTest, ResumeIsBitwiseIdenticalAdam) {
  check_resume_is_bitwise([](const Module& m, double lr) -> std::unique_ptr<optim::Optimizer> {
    optim::AdamOptions o;
    o.lr = lr;
    return std::make_unique<optim::Adam>(m.named_parameters(), o);
  });
}

TEST_F(CheckpointTest, FileHoldsModelAndOptimizerKeys) {
  auto model = make_mlp(1);
  optim::SgdOptions so;
  so.momentum = 0.9;
  optim::Sgd opt(model->named_parameters(), so);
  train_step(*model, opt, 0);
  save_checkpoint(path("c.safetensors"), *model, &opt, {{"epoch", "1"}});
  SafetensorsFile f = load_safetensors(path("c.safetensors"));
  std::vector<std::string> keys;
  for (auto& [name, t] : f.tensors) keys.push_back(name);
  for (const char* k : {"model.0.weight", "model.0.bias", "model.2.weight", "model.2.bias",
                        "optimizer.default.0.weight.momentum_buffer", "optimizer.default.2.bias.momentum_buffer"})
    EXPECT_NE(std::find(keys.begin(), keys.end(), k), keys.end()) << k;
  EXPECT_EQ(f.metadata.at("epoch"), "1");
  EXPECT_EQ(f.metadata.at("optimizer.optimizer"), "sgd");
  EXPECT_EQ(f.metadata.at("optimizer.default.0.weight.step"), "1");
  // Only the finished file is left (the atomic write's temp file is gone).
  EXPECT_EQ(std::distance(fs::directory_iterator(dir_.path()), fs::directory_iterator()), 1);
}

TEST_F(CheckpointTest, MetadataRoundTripsAndReservedPrefixIsRejected) {
  auto model = make_mlp(1);
  const Metadata meta = {{"epoch", "3"}, {"step", "1234"}, {"note", "héllo, \"world\"\n"}, {"optimizer", "x"}};
  save_checkpoint(path("m.safetensors"), *model, nullptr, meta);
  auto other = make_mlp(5);
  EXPECT_EQ(load_checkpoint(path("m.safetensors"), *other, nullptr), meta);
  EXPECT_EQ(flat_params(*other), flat_params(*model));
  expect_error([&] { require_meta(meta, "seed", path("m.safetensors")); }, {"'seed'", path("m.safetensors")});

  // A reserved key is rejected before anything touches the disk: the old file survives.
  expect_error([&] { save_checkpoint(path("m.safetensors"), *other, nullptr, {{"optimizer.lr", "1"}}); },
               {"'optimizer.lr'", "reserved", "'optimizer.'"});
  expect_error([&] { save_checkpoint(path("new.safetensors"), *other, nullptr, {{"optimizer.x", "1"}}); },
               {"'optimizer.x'"});
  EXPECT_FALSE(fs::exists(path("new.safetensors")));
  EXPECT_EQ(load_checkpoint(path("m.safetensors"), *other, nullptr), meta);
}

TEST_F(CheckpointTest, DifferentArchitectureNamesTheFileAndTheKey) {
  auto model = make_mlp(1);
  optim::Sgd opt(model->named_parameters());
  const std::string file = path("arch.safetensors");
  save_checkpoint(file, *model, &opt, {});

  auto wider = make_mlp(2, 8, 4);   // 4 classes: "2.weight" is (4, 8) not (3, 8)
  const std::vector<double> before = flat_params(*wider);
  expect_error([&] { load_checkpoint(file, *wider, nullptr); }, {file, "'2.weight'", "[3, 8]", "[4, 8]"});
  EXPECT_EQ(flat_params(*wider), before) << "a failed load changes nothing";

  auto deeper = std::make_shared<Sequential>(std::initializer_list<std::shared_ptr<Module>>{
      std::make_shared<Linear>(6, 8), std::make_shared<ReLU>(), std::make_shared<Linear>(8, 3),
      std::make_shared<ReLU>(), std::make_shared<Linear>(3, 3)});
  expect_error([&] { load_checkpoint(file, *deeper, nullptr); }, {file, "missing key", "'4.weight'"});

  auto shallow = std::make_shared<Sequential>(
      std::initializer_list<std::shared_ptr<Module>>{std::make_shared<Linear>(6, 8)});
  expect_error([&] { load_checkpoint(file, *shallow, nullptr); }, {file, "unexpected key", "'2."});
}

TEST_F(CheckpointTest, ModelOnlyCheckpointWithAnOptimizerIsAClearError) {
  auto model = make_mlp(1);
  const std::string file = path("model_only.safetensors");
  save_checkpoint(file, *model, nullptr, {{"epoch", "1"}});

  auto other = make_mlp(2);
  optim::SgdOptions so;
  so.momentum = 0.9;
  optim::Sgd opt(other->named_parameters(), so);
  train_step(*other, opt, 0);
  const std::vector<double> before = flat_params(*other);
  expect_error([&] { load_checkpoint(file, *other, &opt); }, {file, "no optimizer state", "model-only"});
  EXPECT_EQ(flat_params(*other), before) << "the model must not be half-loaded";
  EXPECT_NO_THROW(load_checkpoint(file, *other, nullptr));   // model only is fine
  EXPECT_EQ(flat_params(*other), flat_params(*model));
}

TEST_F(CheckpointTest, OtherOptimizerKindIsAnErrorAndChangesNothing) {
  auto model = make_mlp(1);
  optim::Sgd sgd(model->named_parameters());
  train_step(*model, sgd, 0);
  const std::string file = path("sgd.safetensors");
  save_checkpoint(file, *model, &sgd, {});

  auto other = make_mlp(2);
  optim::AdamW adamw(other->named_parameters());
  const std::vector<double> before = flat_params(*other);
  expect_error([&] { load_checkpoint(file, *other, &adamw); }, {file, "'sgd'", "'adamw'"});
  EXPECT_EQ(flat_params(*other), before) << "the model must not be loaded when the optimizer fails";
  // The optimizer is untouched too: training continues from scratch state without error.
  EXPECT_NO_THROW(train_step(*other, adamw, 1));
}

TEST_F(CheckpointTest, TruncatedOrMissingFileNamesTheFile) {
  auto model = make_mlp(1);
  optim::AdamW opt(model->named_parameters());
  train_step(*model, opt, 0);
  const std::string file = path("trunc.safetensors");
  save_checkpoint(file, *model, &opt, {{"epoch", "1"}});
  const auto size = fs::file_size(file);
  auto other = make_mlp(2);
  optim::AdamW other_opt(other->named_parameters());
  const std::vector<double> before = flat_params(*other);
  for (uintmax_t keep : {size - 1, size / 2, uintmax_t(12), uintmax_t(3), uintmax_t(0)}) {
    SCOPED_TRACE("truncated to " + std::to_string(keep) + " of " + std::to_string(size) + " bytes");
    fs::copy_file(file, path("t.safetensors"), fs::copy_options::overwrite_existing);
    fs::resize_file(path("t.safetensors"), keep);
    expect_error([&] { load_checkpoint(path("t.safetensors"), *other, &other_opt); }, {path("t.safetensors")});
    EXPECT_EQ(flat_params(*other), before);
  }
  expect_error([&] { load_checkpoint(path("absent.safetensors"), *other, nullptr); },
               {path("absent.safetensors")});
  expect_error([&] { save_checkpoint(path("no/such/dir/c.safetensors"), *model, nullptr, {}); },
               {path("no/such/dir/c.safetensors")});
}

TEST_F(CheckpointTest, ForeignTensorKeyIsRejected) {
  auto model = make_mlp(1);
  NamedTensors tensors;
  for (auto& [n, t] : model->state_dict()) tensors.emplace_back("model." + n, t);
  tensors.emplace_back("ema.0.weight", zeros({2}));
  save_safetensors(path("foreign.safetensors"), tensors);
  expect_error([&] { load_checkpoint(path("foreign.safetensors"), *model, nullptr); },
               {path("foreign.safetensors"), "'ema.0.weight'"});
}

}  // namespace
