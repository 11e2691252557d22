// test_ds_config.cpp — dist::parse_ds_config (DeepSpeed JSON, strict) and resolve_batch_sizes:
// unknown keys at every level name the dotted key and the nearest valid one, duplicate keys
// are errors, every field's range is checked, and DeepSpeed's batch identity
// train = micro × accumulation × data-parallel size is completed or refused naming all four.
#include <gtest/gtest.h>

#include "dist/ds_config.h"
#include "tests/expect_error.h"

namespace mox::dist {
namespace {

using mox::testing::expect_error;

TEST(DsConfig, ReadsEverySupportedKey) {
  const DsConfig c = parse_ds_config(R"({
    "train_batch_size": 32, "train_micro_batch_size_per_gpu": 4, "gradient_accumulation_steps": 4,
    "steps_per_print": 50, "gradient_clipping": 1.0, "wall_clock_breakdown": true,
    "optimizer": {"type": "Adam", "params": {"lr": 0.002, "betas": [0.8, 0.999], "eps": 1e-8, "weight_decay": 3e-7}},
    "scheduler": {"type": "WarmupLR", "params": {"warmup_min_lr": 0, "warmup_max_lr": 0.002, "warmup_num_steps": 100}},
    "fp16": {"enabled": true, "loss_scale": 0, "initial_scale_power": 12, "loss_scale_window": 500, "hysteresis": 3,
             "consecutive_hysteresis": true, "min_loss_scale": 0.5},
    "zero_optimization": {"stage": 1}})", "ds.json");
  EXPECT_EQ(*c.train_batch_size, 32);
  EXPECT_EQ(*c.train_micro_batch_size_per_gpu, 4);
  EXPECT_EQ(*c.gradient_accumulation_steps, 4);
  EXPECT_EQ(*c.steps_per_print, 50);
  EXPECT_EQ(*c.gradient_clipping, 1.0);
  EXPECT_TRUE(c.wall_clock_breakdown);
  EXPECT_EQ(c.optimizer->type, "adamw");   // DeepSpeed's Adam is AdamW unless adam_w_mode is false
  EXPECT_EQ(*c.optimizer->beta1, 0.8);
  EXPECT_EQ(*c.scheduler->warmup_num_steps, 100);
  EXPECT_TRUE(c.fp16);
  EXPECT_EQ(c.loss_scaler.initial_scale_power, 12);
  EXPECT_EQ(c.loss_scaler.loss_scale_window, 500);
  EXPECT_EQ(c.loss_scaler.hysteresis, 3);
  EXPECT_TRUE(c.loss_scaler.consecutive_hysteresis);
  EXPECT_EQ(c.loss_scaler.min_loss_scale, 0.5);
  EXPECT_EQ(c.zero_stage, 1);
  EXPECT_EQ(parse_ds_config(R"({"optimizer": {"type": "adam", "params": {"adam_w_mode": false}}})", "x").optimizer->type,
            "adam");
}

TEST(DsConfig, UnknownKeysAtAnyLevelNameTheKeyAndTheNearestOne) {
  expect_error([] { parse_ds_config(R"({"train_batch_szie": 4})", "ds.json"); },
               {"config 'ds.json'", "unknown key 'train_batch_szie'", "did you mean 'train_batch_size'"});
  expect_error([] { parse_ds_config(R"({"fp16": {"enabled": true, "initial_scale_pwer": 8}})", "ds.json"); },
               {"unknown key 'fp16.initial_scale_pwer'", "did you mean 'initial_scale_power'"});
  expect_error([] { parse_ds_config(R"({"optimizer": {"type": "SGD", "params": {"betas": [0.9, 0.99]}}})", "ds.json"); },
               {"unknown key 'optimizer.params.betas'"});
  expect_error([] { parse_ds_config(R"({"zero_optimization": {"stage": 1, "offload_optimizer": {}}})", "ds.json"); },
               {"unknown key 'zero_optimization.offload_optimizer'"});
}

TEST(DsConfig, DuplicateKeysAreErrors) {
  expect_error([] { parse_ds_config(R"({"steps_per_print": 10, "steps_per_print": 20})", "ds.json"); },
               {"key 'steps_per_print' appears twice"});
  expect_error([] { parse_ds_config(R"({"optimizer": {"type": "SGD", "params": {"lr": 0.1, "lr": 0.2}}})", "ds.json"); },
               {"key 'optimizer.params.lr' appears twice"});
}

TEST(DsConfig, ValuesAreTypeAndRangeChecked) {
  expect_error([] { parse_ds_config("{", "ds.json"); }, {"not valid JSON"});
  expect_error([] { parse_ds_config(R"({"train_batch_size": 0})", "ds.json"); }, {"'train_batch_size' must be an integer >= 1, got 0"});
  expect_error([] { parse_ds_config(R"({"gradient_clipping": "1"})", "ds.json"); }, {"'gradient_clipping' must be a number"});
  expect_error([] { parse_ds_config(R"({"zero_optimization": {"stage": 2}})", "ds.json"); },
               {"zero_optimization.stage 2 is not supported"});
  expect_error([] { parse_ds_config(R"({"fp16": {"enabled": true}, "bf16": {"enabled": true}})", "ds.json"); },
               {"both true"});
  expect_error([] { parse_ds_config(R"({"optimizer": {"type": "Lamb"}})", "ds.json"); }, {"'Lamb' is not one of SGD, Adam, AdamW"});
  expect_error([] { parse_ds_config(R"({"scheduler": {"type": "OneCycle"}})", "ds.json"); }, {"'OneCycle' is not supported"});
  expect_error([] { parse_ds_config(R"({"fp16": {"hysteresis": 0}})", "ds.json"); }, {"'fp16.hysteresis' must be an integer in [1"});
}

TEST(DsConfig, BatchIdentityIsCompletedOrRefusedNamingAllFour) {
  auto resolve = [](const std::string& json, int64_t dp) { return resolve_batch_sizes(parse_ds_config(json, "b.json"), dp); };
  BatchSizes b = resolve(R"({"train_batch_size": 32})", 4);
  EXPECT_EQ(b.micro, 8);
  EXPECT_EQ(b.accum, 1);
  b = resolve(R"({"train_batch_size": 32, "train_micro_batch_size_per_gpu": 2})", 4);
  EXPECT_EQ(b.accum, 4);
  b = resolve(R"({"train_micro_batch_size_per_gpu": 2, "gradient_accumulation_steps": 3})", 2);
  EXPECT_EQ(b.train, 12);
  b = resolve(R"({"train_batch_size": 24, "gradient_accumulation_steps": 3})", 2);
  EXPECT_EQ(b.micro, 4);
  expect_error([&] { resolve(R"({"train_batch_size": 32, "train_micro_batch_size_per_gpu": 4, "gradient_accumulation_steps": 3})", 2); },
               {"train_batch_size 32", "train_micro_batch_size_per_gpu 4", "gradient_accumulation_steps 3",
                "data-parallel size 2"});
  expect_error([&] { resolve(R"({"train_batch_size": 10})", 4); }, {"train_batch_size 10", "data-parallel size 4"});
  expect_error([&] { resolve(R"({"steps_per_print": 5})", 1); }, {"set train_batch_size or train_micro_batch_size_per_gpu"});
}

}  // namespace
}  // namespace mox::dist
