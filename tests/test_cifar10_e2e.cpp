// test_cifar10_e2e.cpp — end to end: the tutorial Net (examples/cifar10/net.h) learns on
// real CIFAR-10.
//
// Trains from a fixed seed for 800 steps (batch 32, SGD lr 0.01 momentum 0.9, the
// tutorial's 0.5/0.5 normalisation, shuffled by the DataLoader), then asserts that the mean
// loss of the last 50 steps is well below chance (ln 10 = 2.303) and that accuracy on the
// first 1,000 test images beats chance (0.10) by a wide margin. Seeds 1–4 gave last-50
// losses 1.51–1.65 and accuracies 0.43–0.46, so the bounds (< 1.85, > 0.35) leave room.
// Needs the official binary files under $MOX_DATA/cifar10 (`make data`; `make test` points
// MOX_DATA at ../shared/data when it exists) and skips with a message otherwise.
// It runs on ONE thread (about 6 s): this is a learning test, not a speed test, and with
// OpenMP's default spin-waiting two threads on a 2-core machine that is busy with anything
// else run 5–10× slower. Not here: the CLI (test_cli.cpp), bitwise resume
// (test_checkpoint.cpp).
#include <gtest/gtest.h>
#include <omp.h>

#include <chrono>
#include <cmath>
#include <cstdio>
#include <cstdlib>
#include <filesystem>
#include <memory>
#include <string>
#include <vector>

#include "datasets/cifar10.h"
#include "datasets/dataloader.h"
#include "examples/cifar10/net.h"
#include "nn/loss.h"
#include "nn/optim/sgd.h"

namespace {

using namespace mox;

std::string cifar_dir() {
  const char* root = std::getenv("MOX_DATA");
  if (!root || !*root) return "";
  std::string dir = std::string(root) + "/cifar10";
  return std::filesystem::is_regular_file(dir + "/test_batch.bin") ? dir : "";
}

// Sets the OpenMP (and so OpenBLAS) thread count for a scope, restoring it afterwards.
struct ThreadScope {
  explicit ThreadScope(int n) : saved(omp_get_max_threads()) { omp_set_num_threads(n); }
  ~ThreadScope() { omp_set_num_threads(saved); }
  int saved;
};

TEST(Cifar10EndToEnd, NetLearnsWellAboveChanceIn800Steps) {
  const std::string dir = cifar_dir();
  if (dir.empty())
    GTEST_SKIP() << "CIFAR-10 not found: set MOX_DATA to a folder holding cifar10/ (official binary "
                    "files; `make data` downloads them) to run the end-to-end training test";
  ThreadScope one_thread(1);
  const auto t0 = std::chrono::steady_clock::now();
  auto train_set = std::make_shared<data::Cifar10>(dir, true);
  auto test_set = std::make_shared<data::Cifar10>(dir, false);
  ASSERT_EQ(train_set->size(), 50000);
  ASSERT_EQ(test_set->size(), 10000);

  const int64_t steps = 800, batch = 32, window = 50;
  data::LoaderOptions lo;
  lo.batch_size = batch;
  lo.shuffle = true;
  lo.seed = 1;
  lo.normalize = {{0.5, 0.5, 0.5}, {0.5, 0.5, 0.5}};   // the tutorial's transform
  data::DataLoader train_loader(train_set, lo);

  manual_seed(1);
  cifar10::Net net;
  optim::SgdOptions so;
  so.lr = 0.01;
  so.momentum = 0.9;
  optim::Sgd opt(net.named_parameters(), so);

  std::vector<double> losses;
  train_loader.start_epoch(0);
  data::Batch b;
  for (int64_t step = 0; step < steps; ++step) {
    ASSERT_TRUE(train_loader.next(b)) << "an epoch has 1,563 batches";
    opt.zero_grad();
    Tensor loss = nn::cross_entropy(net.forward(b.images), b.labels);   // (B, 10) logits
    loss.backward();
    opt.step();
    losses.push_back(loss.item<double>());
    ASSERT_TRUE(std::isfinite(losses.back())) << "step " << step;
  }
  double first = 0, last = 0;
  for (int64_t i = 0; i < window; ++i) {
    first += losses[size_t(i)] / double(window);
    last += losses[size_t(steps - window + i)] / double(window);
  }

  data::LoaderOptions to = lo;
  to.batch_size = 1000;
  to.shuffle = false;
  data::DataLoader test_loader(test_set, to);
  test_loader.start_epoch(0);
  ASSERT_TRUE(test_loader.next(b));   // the first 1,000 test images
  int64_t correct = 0;
  {
    autograd::NoGradGuard no_grad;
    net.eval();
    std::vector<int64_t> pred = argmax(net.forward(b.images), 1).to_vector<int64_t>();
    std::vector<int64_t> label = b.labels.to_vector<int64_t>();
    ASSERT_EQ(pred.size(), 1000u);
    for (size_t i = 0; i < pred.size(); ++i) correct += pred[i] == label[i];
  }
  const double accuracy = double(correct) / 1000.0;
  const double secs = std::chrono::duration<double>(std::chrono::steady_clock::now() - t0).count();
  std::printf("[ e2e      ] loss first %lld steps %.3f, last %lld steps %.3f; test accuracy (1,000 images) "
              "%.3f; %.1f s\n",
              (long long)window, first, (long long)window, last, accuracy, secs);

  EXPECT_GT(first, 2.2) << "an untrained net starts near ln(10) = 2.303";
  EXPECT_LT(last, 1.85) << "mean loss of the last " << window << " steps";
  EXPECT_GT(accuracy, 0.35) << "chance is 0.10";
}

}  // namespace
