// test_reliability_checkpoint.cpp — checkpoints survive SIGKILL at any point of a save.
//
// The test binary plays two roles. As the parent (a normal test run) it runs N trials
// (default 100; MOX_KILL_TRIALS overrides, MOX_KILL_SEED picks the delays): each forks and
// execs this same binary as a child (fresh process: no OpenMP pool inherited across fork)
// that saves checkpoints to one path in a loop, with contents that are a pure function of
// a step number s (params, Adam state after one step, metadata "step"), reporting through
// a pipe before each save_checkpoint call and after it returns. The parent SIGKILLs the
// child after a random delay spread over a few save durations, then checks:
//   - the committed file (the target path) loads, and its contents are bitwise those of
//     step s for some s the child may have committed: the one saved by an earlier trial,
//     the last reported step, or the step after it (killed between rename and report);
//   - a temp file left behind ("<path>.tmp.<pid>", a save cut short) either fails to load
//     with mox::Error or — killed after the last byte and before the rename — is complete
//     and bitwise equal to its step: a half-written file is never taken for a complete one.
// The next trial's child overwrites the committed file again, so every trial after the
// first tests "old or new, never torn". Where the kills landed (inside a save: torn temp
// file, complete temp file, none; outside a save) is printed, and at least one kill must
// have left a temp file, so a run shows that the kills do land inside saves. Plus: every
// prefix of a checkpoint is refused (EveryTruncationIsRefused).
#include <fcntl.h>
#include <gtest/gtest.h>
#include <omp.h>
#include <poll.h>
#include <signal.h>
#include <sys/prctl.h>
#include <sys/wait.h>
#include <unistd.h>

#include <cerrno>
#include <chrono>
#include <cstdlib>
#include <cstring>
#include <filesystem>
#include <memory>
#include <random>
#include <string>
#include <thread>
#include <vector>

#include "nn/checkpoint.h"
#include "nn/container.h"
#include "nn/linear.h"
#include "nn/optim/adam.h"
#include "tests/temp_dir.h"

namespace {

namespace fs = std::filesystem;
using namespace mox;
using Clock = std::chrono::steady_clock;

// ~200k params (0.8 MB); with Adam's two buffers a checkpoint is ~2.4 MB, so a save takes
// long enough (write + fsync) for random kills to land inside it.
struct KillModel : nn::Sequential {
  KillModel() {
    Generator gen(7);
    push_back(std::make_shared<nn::Linear>(128, 512, true, &gen));
    push_back(std::make_shared<nn::Linear>(512, 256, true, &gen));
  }
};

// Deterministic, step-dependent values: every element differs between steps.
void fill_pattern(const Tensor& t, int64_t s, uint32_t salt) {
  float* p = t.data<float>();
  for (int64_t i = 0; i < t.numel(); ++i) {
    const uint32_t h = (uint32_t(s) * 2654435761u) ^ (uint32_t(i) * 40503u + salt);
    p[i] = float(h % 65536u) / 256.0f - 128.0f;
  }
}

// The state of step s: params and grads set from s, then one Adam step from a fresh
// optimizer (so it has exp_avg, exp_avg_sq and a step count to save). set() reuses the
// model, so a saving loop spends its time saving rather than initialising layers.
struct StepState {
  KillModel model;
  std::unique_ptr<optim::Adam> adam;
  explicit StepState(int64_t s) { set(s); }
  void set(int64_t s) {
    adam = std::make_unique<optim::Adam>(model.named_parameters());
    uint32_t salt = 0;
    for (auto& [name, p] : model.named_parameters()) {
      fill_pattern(p, s, ++salt);
      Tensor g = empty(p.shape());
      fill_pattern(g, s + 1000003, ++salt);
      p.set_grad(g);
    }
    adam->step();
  }
  void save(const std::string& path, int64_t s) const {
    nn::save_checkpoint(path, model, adam.get(), {{"step", std::to_string(s)}});
  }
};

void save_step(const std::string& path, int64_t s) { StepState(s).save(path, s); }

bool same_tensors(const nn::NamedTensors& a, const nn::NamedTensors& b, std::string& why) {
  if (a.size() != b.size()) {
    why = "different tensor counts";
    return false;
  }
  for (size_t i = 0; i < a.size(); ++i) {
    const Tensor &x = a[i].second, &y = b[i].second;
    if (a[i].first != b[i].first || !(x.shape() == y.shape()) || x.dtype() != y.dtype() ||
        std::memcmp(x.raw_data(), y.raw_data(), x.nbytes()) != 0) {
      why = "tensor '" + a[i].first + "' differs";
      return false;
    }
  }
  return true;
}

// Loads `path` into a fresh model + Adam and compares with StepState(step from metadata).
// Returns the step; throws mox::Error when the file does not load; fails the test (and
// returns -1) when it loads but holds anything other than exactly that step's state.
int64_t load_and_verify(const std::string& path) {
  KillModel model;
  optim::Adam adam(model.named_parameters());
  nn::Metadata meta = nn::load_checkpoint(path, model, &adam);
  const int64_t s = std::stoll(nn::require_meta(meta, "step", path));
  StepState expected(s);
  std::string why;
  EXPECT_TRUE(same_tensors(model.state_dict(), expected.model.state_dict(), why)) << path << ": " << why;
  optim::OptimizerState got = adam.state_dict(), want = expected.adam->state_dict();
  EXPECT_TRUE(same_tensors(got.tensors, want.tensors, why)) << path << ": optimizer " << why;
  EXPECT_EQ(got.meta, want.meta) << path;
  return ::testing::Test::HasFailure() ? -1 : s;
}

// ------------------------------------------------------------------------- child role

constexpr const char* kChildDir = "MOX_KILLTEST_DIR";
constexpr const char* kChildFirst = "MOX_KILLTEST_FIRST";
constexpr const char* kChildFd = "MOX_KILLTEST_FD";

void write_i64(int fd, int64_t v) {
  ssize_t w;
  do w = ::write(fd, &v, sizeof v);
  while (w < 0 && errno == EINTR);
}

// Messages from child to parent: -1 ready; kSaving(s) about to call save_checkpoint for
// step s; s once that call has returned.
int64_t kSaving(int64_t s) { return -2 - s; }

// Save step first, first+1, ... to dir/ckpt.safetensors, reporting each around the call.
// Ends only by SIGKILL (or after 60 s, orphaned).
[[noreturn]] void child_main(const std::string& dir, int64_t first, int fd) {
  const std::string path = dir + "/ckpt.safetensors";
  StepState st(first);   // touch the code paths once before reporting ready
  write_i64(fd, -1);
  const auto start = Clock::now();
  for (int64_t s = first; Clock::now() - start < std::chrono::seconds(60); ++s) {
    st.set(s);
    write_i64(fd, kSaving(s));
    st.save(path, s);
    write_i64(fd, s);
  }
  std::_Exit(3);
}

// ------------------------------------------------------------------------- parent role

std::string self_exe() {
  std::error_code ec;
  fs::path p = fs::read_symlink("/proc/self/exe", ec);
  return ec ? std::string() : p.string();
}

struct Child {
  pid_t pid = -1;
  int read_fd = -1;
};

// fork + exec this binary, filtered to this test, in the child role. Everything the child
// needs is built before fork (the parent may have threads; only exec-safe calls after).
Child spawn_child(const std::string& dir, int64_t first) {
  int fds[2];
  EXPECT_EQ(::pipe(fds), 0) << std::strerror(errno);
  ::fcntl(fds[0], F_SETFD, FD_CLOEXEC);
  const std::string exe = self_exe();
  std::vector<std::string> args = {exe, "--gtest_filter=ReliabilityCheckpoint.SigkillDuringSave"};
  std::vector<std::string> env;
  for (char** e = environ; *e; ++e)
    if (std::strncmp(*e, "MOX_KILLTEST_", 13) != 0 && std::strncmp(*e, "GTEST_", 6) != 0) env.emplace_back(*e);
  env.push_back(std::string(kChildDir) + "=" + dir);
  env.push_back(std::string(kChildFirst) + "=" + std::to_string(first));
  env.push_back(std::string(kChildFd) + "=" + std::to_string(fds[1]));
  env.push_back("OMP_NUM_THREADS=1");
  std::vector<char*> argv, envp;
  for (auto& a : args) argv.push_back(a.data());
  argv.push_back(nullptr);
  for (auto& e : env) envp.push_back(e.data());
  envp.push_back(nullptr);
  const pid_t parent = ::getpid();

  Child c;
  c.pid = ::fork();
  if (c.pid == 0) {
    ::prctl(PR_SET_PDEATHSIG, SIGKILL);   // never outlive the test
    if (::getppid() != parent) ::_exit(4);
    // keep stdout/stderr quiet: the child's gtest banner is noise in the parent's log
    int devnull = ::open("/dev/null", O_WRONLY);
    if (devnull >= 0) ::dup2(devnull, 1);
    ::execve(argv[0], argv.data(), envp.data());
    ::_exit(5);
  }
  ::close(fds[1]);
  c.read_fd = fds[0];
  return c;
}

// Reads one i64 with a timeout; false on EOF/timeout.
bool read_i64(int fd, int64_t& v, int timeout_ms) {
  size_t got = 0;
  char* p = reinterpret_cast<char*>(&v);
  while (got < sizeof v) {
    pollfd pfd{fd, POLLIN, 0};
    int r = ::poll(&pfd, 1, timeout_ms);
    if (r < 0 && errno == EINTR) continue;
    if (r <= 0) return false;
    ssize_t n = ::read(fd, p + got, sizeof v - got);
    if (n < 0 && errno == EINTR) continue;
    if (n <= 0) return false;
    got += size_t(n);
  }
  return true;
}

int64_t env_int(const char* name, int64_t fallback) {
  const char* v = std::getenv(name);
  return v && *v ? std::atoll(v) : fallback;
}

// A file cut anywhere short of its end — what a killed non-atomic writer or an interrupted
// copy leaves — is refused (the format's tensors must tile the data exactly), never loaded
// as a smaller or zero-filled checkpoint: every prefix of a small checkpoint, and prefixes
// around the header/data boundary and at random points of the kill test's 2.4 MB one.
TEST(ReliabilityCheckpoint, EveryTruncationIsRefused) {
  const mox::testing::TempDir temp("mox-truncate");
  const std::string& dir = temp.path();

  auto read_all = [](const std::string& path) {
    std::vector<char> b(fs::file_size(path));
    FILE* f = std::fopen(path.c_str(), "rb");
    EXPECT_EQ(std::fread(b.data(), 1, b.size(), f), b.size());
    std::fclose(f);
    return b;
  };
  auto write_prefix = [](const std::string& path, const std::vector<char>& b, size_t n) {
    FILE* f = std::fopen(path.c_str(), "wb");
    std::fwrite(b.data(), 1, n, f);
    std::fclose(f);
  };

  // Small: Linear(4, 3) + Adam after one step, every prefix.
  {
    Generator gen(3);
    nn::Linear model(4, 3, true, &gen);
    optim::Adam adam(model.named_parameters());
    for (auto& [name, p] : model.named_parameters()) p.set_grad(full(p.shape(), 0.5));
    adam.step();
    const std::string full_path = dir + "/small.safetensors", cut = dir + "/cut.safetensors";
    nn::save_checkpoint(full_path, model, &adam, {{"step", "1"}});
    const std::vector<char> bytes = read_all(full_path);
    for (size_t n = 0; n < bytes.size(); ++n) {
      write_prefix(cut, bytes, n);
      nn::Linear other(4, 3, true, &gen);
      optim::Adam other_adam(other.named_parameters());
      EXPECT_THROW(nn::load_checkpoint(cut, other, &other_adam), Error) << "prefix of " << n << " / " << bytes.size();
    }
  }
  // Large: the kill test's checkpoint, around the header end and at random points.
  {
    const std::string full_path = dir + "/large.safetensors", cut = dir + "/cut.safetensors";
    save_step(full_path, 42);
    const std::vector<char> bytes = read_all(full_path);
    uint64_t header = 0;
    std::memcpy(&header, bytes.data(), 8);
    std::vector<size_t> cuts;
    for (size_t d = 0; d < 16; ++d) cuts.push_back(size_t(8 + header) - 8 + d);
    std::mt19937_64 rng(11);
    for (int i = 0; i < 48; ++i) cuts.push_back(size_t(rng() % bytes.size()));
    cuts.push_back(bytes.size() - 1);
    for (size_t n : cuts) {
      write_prefix(cut, bytes, n);
      KillModel model;
      optim::Adam adam(model.named_parameters());
      EXPECT_THROW(nn::load_checkpoint(cut, model, &adam), Error) << "prefix of " << n << " / " << bytes.size();
    }
    EXPECT_EQ(load_and_verify(full_path), 42);
  }
}

TEST(ReliabilityCheckpoint, SigkillDuringSave) {
  if (const char* dir = std::getenv(kChildDir)) child_main(dir, env_int(kChildFirst, 0), int(env_int(kChildFd, -1)));

  const std::string exe = self_exe();
  ASSERT_FALSE(exe.empty()) << "cannot read /proc/self/exe";
  // One thread, as the child has: the work is small, and spinning OpenMP threads on a
  // loaded 2-core machine make it many times slower.
  struct OneThread {
    int saved = omp_get_max_threads();
    OneThread() { omp_set_num_threads(1); }
    ~OneThread() { omp_set_num_threads(saved); }
  } one_thread;
  const mox::testing::TempDir temp("mox-killtest");
  const std::string& dir = temp.path();
  const std::string path = temp.path("ckpt.safetensors");

  // Calibrate: how long one save takes here, state building included (the fastest of
  // three after a warm-up); the kill delays are spread over ~4 of them.
  double save_s = 1e9;
  for (int64_t s = 0; s < 4; ++s) {
    const auto t0 = Clock::now();
    save_step(dir + "/calibrate.safetensors", s);
    if (s > 0) save_s = std::min(save_s, std::chrono::duration<double>(Clock::now() - t0).count());
  }
  fs::remove(dir + "/calibrate.safetensors");

  const int64_t trials = env_int("MOX_KILL_TRIALS", 100);
  const uint64_t seed = uint64_t(env_int("MOX_KILL_SEED", 20240601));
  std::mt19937_64 rng(seed);
  std::uniform_real_distribution<double> delay_dist(0.0, 4.0 * save_s);

  int64_t committed = -1;   // step of the committed file after the previous trial; -1 none
  int64_t next_first = 0;
  double startup_s = 0;   // spawn → child ready, summed
  // Where the kills landed: inside save_checkpoint (leaving a torn temp file, a complete
  // one not yet renamed, or none: before the temp file or after the rename), or outside.
  int in_save_torn = 0, in_save_complete = 0, in_save_no_temp = 0, outside_save = 0, saves_total = 0;
  const auto start = Clock::now();
  for (int64_t trial = 0; trial < trials; ++trial) {
    SCOPED_TRACE("trial " + std::to_string(trial) + " (MOX_KILL_SEED=" + std::to_string(seed) + ")");
    Child c = spawn_child(dir, next_first);
    ASSERT_GT(c.pid, 0) << "fork: " << std::strerror(errno);
    int64_t msg = 0;
    const auto spawned = Clock::now();
    const bool ready = read_i64(c.read_fd, msg, 30000) && msg == -1;
    startup_s += std::chrono::duration<double>(Clock::now() - spawned).count();
    if (ready) std::this_thread::sleep_for(std::chrono::duration<double>(delay_dist(rng)));
    ::kill(c.pid, SIGKILL);
    int status = 0;
    ::waitpid(c.pid, &status, 0);
    ASSERT_TRUE(ready) << "the child did not start (exit status " << status << ")";
    ASSERT_TRUE(WIFSIGNALED(status) && WTERMSIG(status) == SIGKILL) << "child ended on its own: " << status;
    int64_t last_reported = -1;   // the last step whose save returned
    bool in_save = false;
    while (read_i64(c.read_fd, msg, 0)) {
      in_save = msg <= -2;
      if (msg >= 0) last_reported = msg, ++saves_total;
    }
    ::close(c.read_fd);

    // The committed file: old, last reported, or the one after it — and exactly its contents.
    std::vector<int64_t> allowed;
    if (last_reported >= 0) allowed = {last_reported, last_reported + 1};
    else allowed = {committed, next_first};   // committed may be -1: no file yet
    if (fs::exists(path)) {
      int64_t s = -1;
      try {
        s = load_and_verify(path);
      } catch (const Error& e) {
        FAIL() << "the committed checkpoint does not load: " << e.what();
      }
      ASSERT_GE(s, 0) << "the committed checkpoint holds wrong contents";
      ASSERT_TRUE(s == allowed[0] || s == allowed[1])
          << "committed step " << s << ", expected " << allowed[0] << " or " << allowed[1];
      committed = s;
    } else {
      ASSERT_EQ(committed, -1) << "the committed checkpoint (step " << committed << ") vanished";
      ASSERT_EQ(last_reported, -1) << "save of step " << last_reported << " returned but no file exists";
    }

    // Leftover temp files: a save cut short. Never loadable unless complete and exact.
    bool tmp_seen = false;
    for (const auto& e : fs::directory_iterator(dir)) {
      const std::string name = e.path().filename().string();
      if (name == "ckpt.safetensors") continue;
      ASSERT_EQ(name.rfind("ckpt.safetensors.tmp.", 0), 0u) << "unexpected file " << name;
      tmp_seen = true;
      try {
        const int64_t s = load_and_verify(e.path().string());
        ASSERT_GE(s, 0) << "a temp file loads but holds wrong contents";
        ASSERT_EQ(s, std::max(committed, last_reported) + 1) << "a complete temp file of an unexpected step";
        ++in_save_complete;
      } catch (const Error&) {
        ++in_save_torn;   // torn: refused, as it must be
      }
      fs::remove(e.path());
    }
    ASSERT_TRUE(in_save || !tmp_seen) << "a temp file outside a save";
    if (in_save && !tmp_seen) ++in_save_no_temp;
    if (!in_save) ++outside_save;
    next_first = std::max(committed, last_reported) + 1;
  }
  const double secs = std::chrono::duration<double>(Clock::now() - start).count();
  std::printf("[ killtest ] %lld trials in %.1f s (one save %.1f ms, child start %.0f ms, seed %llu): %d kills "
              "inside a save — %d left a torn temp file (refused), %d a complete one not yet renamed, %d none "
              "(before the temp file or after the rename) — and %d outside; %d saves completed; 0 corrupt "
              "committed checkpoints\n",
              (long long)trials, secs, save_s * 1e3, startup_s * 1e3 / double(trials), (unsigned long long)seed,
              in_save_torn + in_save_complete + in_save_no_temp, in_save_torn, in_save_complete, in_save_no_temp,
              outside_save, saves_total);
  EXPECT_GT(in_save_torn + in_save_complete, 0) << "no kill left a temp file: the delays do not cover the saves";
}

}  // namespace
