// test_launcher.cpp — scripts/moxrun, the mpirun front end, run as a child process.
//
// The script is found from the test binary (<repo>/build/bin/mox-tests, or build-san/bin/), and
// the launched programs are `sh -c '...'` snippets, so these tests check the launcher alone, not
// mox's distributed code. Checked: --help exits 0 and lists the flags; usage errors (unknown
// flag, a bad number, no program, a missing --hostfile) exit 2 naming the flag or file; two
// ranks print their OMPI_COMM_WORLD_RANK and receive OMP_NUM_THREADS / MOX_DIST_TIMEOUT /
// MASTER_ADDR / MASTER_PORT; four ranks start on a machine with fewer cores (oversubscribed
// automatically); a DeepSpeed hostfile naming localhost runs its slots; a rank that exits 3,
// and one that SIGKILLs itself while the other sleeps, make moxrun fail promptly with a line
// naming the rank and leave no rank process behind; SIGTERM sent to moxrun ends every rank; and
// a real 2-rank mox-cifar10 run (needs MOX_DATA) whose rank 1 is SIGKILLed mid-training fails
// promptly naming rank 1. Tests that start mpirun skip when it is not on PATH.
#include <gtest/gtest.h>
#include <fcntl.h>
#include <sched.h>
#include <signal.h>
#include <spawn.h>
#include <sys/wait.h>
#include <unistd.h>

#include <algorithm>
#include <cerrno>
#include <chrono>
#include <cstdlib>
#include <cstring>
#include <filesystem>
#include <fstream>
#include <sstream>
#include <string>
#include <thread>
#include <vector>

#include "tests/child_process.h"
#include "tests/expect_error.h"
#include "tests/moxrun.h"
#include "tests/temp_dir.h"

extern char** environ;

namespace {

namespace fs = std::filesystem;
using mox::testing::ProgramResult;
using mox::testing::sh_quote;
using Clock = std::chrono::steady_clock;
using mox::testing::moxrun_script;
using mox::testing::on_path;

// CPUs this process may run on (what nproc prints).
int usable_cpus() {
  cpu_set_t set;
  return sched_getaffinity(0, sizeof(set), &set) == 0 ? CPU_COUNT(&set) : 1;
}

// A process counts as gone when kill(pid, 0) fails with ESRCH, or when it is a zombie: it
// died after its parent, and PID 1 has not reaped it yet (some container inits never do).
bool process_running(pid_t pid) {
  if (kill(pid, 0) != 0) return errno != ESRCH;
  std::ifstream stat("/proc/" + std::to_string(pid) + "/stat");
  std::string text((std::istreambuf_iterator<char>(stat)), std::istreambuf_iterator<char>());
  const size_t paren = text.rfind(')');
  return paren == std::string::npos || paren + 2 >= text.size() || text[paren + 2] != 'Z';
}

pid_t read_pid(const std::string& file) {
  std::ifstream in(file);
  long pid = 0;
  in >> pid;
  return static_cast<pid_t>(pid);
}

std::string read_text(const std::string& file) {
  std::ifstream in(file);
  return std::string((std::istreambuf_iterator<char>(in)), std::istreambuf_iterator<char>());
}

// Waits (polling) until the file exists and is non-empty; false after the timeout.
bool wait_for_file(const std::string& file, std::chrono::seconds timeout) {
  const auto deadline = Clock::now() + timeout;
  while (Clock::now() < deadline) {
    std::error_code ec;
    if (fs::file_size(file, ec) > 0 && !ec) return true;
    std::this_thread::sleep_for(std::chrono::milliseconds(20));
  }
  return false;
}

// What follows moxrun's first line (the mpirun command, which quotes the rank wrapper's text).
std::string after_command(const std::string& output) {
  const size_t eol = output.find('\n');
  return eol == std::string::npos ? std::string() : output.substr(eol + 1);
}

class Launcher : public ::testing::Test {
 protected:
  void SetUp() override {
    script_ = moxrun_script();
    if (script_.empty()) GTEST_SKIP() << "scripts/moxrun not found three levels above the test binary";
  }
  // Tests that start ranks call this first.
  bool need_mpirun() const { return on_path("mpirun"); }
  ProgramResult run(const std::string& args) const { return mox::testing::run_program(script_, args); }
  // A rank script: `sh -c '<snippet>'`, quoted for the shell run_program uses.
  static std::string sh(const std::string& snippet) { return "sh -c " + sh_quote(snippet); }

  fs::path script_;
  mox::testing::TempDir dir_{"mox-launcher"};
};

#define REQUIRE_MPIRUN() \
  if (!need_mpirun()) GTEST_SKIP() << "mpirun not on PATH (install openmpi-bin: `make deps`)"

TEST_F(Launcher, HelpExitsZeroAndNamesTheFlags) {
  for (const char* flag : {"--help", "-h"}) {
    ProgramResult r = run(flag);
    EXPECT_EQ(r.code, 0) << r.output;
    for (const char* opt : {"--num_gpus", "--num_procs", "--num_nodes", "--hostfile", "--master_addr",
                            "--master_port", "--oversubscribe", "--threads", "--timeout"})
      EXPECT_CONTAINS(r.output, opt);
  }
}

TEST_F(Launcher, UsageErrorsExitTwoNamingTheFlag) {
  struct Case { std::string args, expect; };
  const std::vector<Case> cases = {
      {"--bogus sh", "--bogus"},
      {"-x sh", "-x"},
      {"--num_gpus x sh", "--num_gpus"},
      {"--num_gpus 0 sh", "--num_gpus"},
      {"--num_gpus=-2 sh", "--num_gpus"},
      {"--num_procs 1.5 sh", "--num_procs"},
      {"--num_gpus", "--num_gpus needs a value"},
      {"--threads abc sh", "--threads"},
      {"--timeout 0 sh", "--timeout"},
      {"--master_port 70000 sh", "--master_port"},
      {"--master_addr 'a b' sh", "--master_addr"},
      {"--oversubscribe=1 sh", "--oversubscribe"},
      {"--num_nodes 2 sh", "--hostfile"},
      {"", "no program"},
      {"--num_gpus 2", "no program"},
      {"--num_gpus 2 --", "no program"},
      {"./no-such-program-here", "no-such-program-here"},
  };
  for (const Case& c : cases) {
    SCOPED_TRACE("moxrun " + c.args);
    ProgramResult r = run(c.args);
    EXPECT_EQ(r.code, 2) << r.output;
    EXPECT_CONTAINS(r.output, c.expect);
    EXPECT_EQ(r.output.find("moxrun: mpirun"), std::string::npos) << "mpirun must not start:\n" << r.output;
  }
}

TEST_F(Launcher, HostfileErrorsExitTwoNamingTheFile) {
  const std::string missing = dir_.path("no-such-hostfile");
  ProgramResult r = run("--hostfile " + sh_quote(missing) + " sh -c true");
  EXPECT_EQ(r.code, 2) << r.output;
  EXPECT_CONTAINS(r.output, missing);
  EXPECT_CONTAINS(r.output, "no such file");

  struct Case { std::string text, expect; };
  const std::vector<Case> cases = {
      {"node1 slots=x\n", "line 1"},
      {"# comment\nnode1\n", "line 2"},
      {"node1 slots=0\n", "slots must be at least 1"},
      {"node1 slots=2\nnode1 slots=2\n", "listed twice"},
      {"# only a comment\n\n", "lists no hosts"},
  };
  for (const Case& c : cases) {
    SCOPED_TRACE(c.text);
    const std::string file = dir_.path("hostfile");
    std::ofstream(file) << c.text;
    r = run("--hostfile " + sh_quote(file) + " sh -c true");
    EXPECT_EQ(r.code, 2) << r.output;
    EXPECT_CONTAINS(r.output, file);
    EXPECT_CONTAINS(r.output, c.expect);
  }
  std::ofstream(dir_.path("one")) << "localhost slots=2\n";
  r = run("--hostfile " + sh_quote(dir_.path("one")) + " --num_nodes 2 sh -c true");
  EXPECT_EQ(r.code, 2) << r.output;
  EXPECT_CONTAINS(r.output, "--num_nodes 2");
}

TEST_F(Launcher, TwoRanksPrintTheirRankAndGetTheEnvironment) {
  REQUIRE_MPIRUN();
  ProgramResult r = run("--num_gpus 2 --threads 3 --timeout 30 --master_addr 127.0.0.1 --master_port 29511 " +
                        sh("echo rank=$OMPI_COMM_WORLD_RANK of $OMPI_COMM_WORLD_SIZE "
                           "threads=$OMP_NUM_THREADS timeout=$MOX_DIST_TIMEOUT master=$MASTER_ADDR:$MASTER_PORT"));
  EXPECT_EQ(r.code, 0) << r.output;
  EXPECT_EQ(r.output.rfind("moxrun: mpirun -np 2 ", 0), 0u) << "the command line comes first:\n" << r.output;
  for (const char* line : {"rank=0 of 2 threads=3 timeout=30 master=127.0.0.1:29511",
                           "rank=1 of 2 threads=3 timeout=30 master=127.0.0.1:29511"})
    EXPECT_CONTAINS(r.output, line);
  EXPECT_EQ(after_command(r.output).find("exited with status"), std::string::npos) << r.output;
}

TEST_F(Launcher, ArgumentsReachTheProgramUnchanged) {
  REQUIRE_MPIRUN();
  ProgramResult r = run("--num_gpus 1 -- sh -c " + sh_quote("printf '[%s]\\n' \"$@\"") + " zero " +
                        sh_quote("it's two words") + " '$HOME' --num_gpus");
  EXPECT_EQ(r.code, 0) << r.output;
  for (const char* arg : {"[it's two words]", "[$HOME]", "[--num_gpus]"}) EXPECT_CONTAINS(r.output, arg);
}

TEST_F(Launcher, DefaultThreadsSplitTheCores) {
  REQUIRE_MPIRUN();
  // Without --threads and without OMP_NUM_THREADS in the environment: max(1, cpus / ranks).
  const std::string expect = "threads=" + std::to_string(std::max(1, usable_cpus() / 2));
  ProgramResult r = mox::testing::run_program(
      "/usr/bin/env", "-u OMP_NUM_THREADS " + sh_quote(script_.string()) + " --num_gpus 2 " +
                          sh("echo threads=$OMP_NUM_THREADS"));
  EXPECT_EQ(r.code, 0) << r.output;
  EXPECT_CONTAINS(r.output, expect);
}

TEST_F(Launcher, MoreRanksThanCoresAreOversubscribed) {
  REQUIRE_MPIRUN();
  const int ranks = 4;
  ProgramResult r = run("--num_gpus " + std::to_string(ranks) + " " + sh("echo rank=$OMPI_COMM_WORLD_RANK"));
  EXPECT_EQ(r.code, 0) << r.output;
  for (int i = 0; i < ranks; ++i) EXPECT_CONTAINS(r.output, "rank=" + std::to_string(i) + "\n");
  const std::string command = r.output.substr(0, r.output.find('\n'));
  if (usable_cpus() < ranks) {
    EXPECT_CONTAINS(command, "--oversubscribe");
  }
  EXPECT_EQ(r.output.find("not enough slots"), std::string::npos) << r.output;
}

TEST_F(Launcher, HostfileSlotsGiveTheRanksPerHost) {
  REQUIRE_MPIRUN();
  const std::string file = dir_.path("hostfile");
  std::ofstream(file) << "# DeepSpeed format\nlocalhost slots=3   # this machine\n";
  ProgramResult r = run("--hostfile " + sh_quote(file) + " " + sh("echo rank=$OMPI_COMM_WORLD_RANK"));
  EXPECT_EQ(r.code, 0) << r.output;
  EXPECT_CONTAINS(r.output, "--host localhost:3");
  for (int i = 0; i < 3; ++i) EXPECT_CONTAINS(r.output, "rank=" + std::to_string(i) + "\n");
  // --num_gpus overrides the slots.
  r = run("--hostfile " + sh_quote(file) + " --num_gpus 2 " + sh("echo rank=$OMPI_COMM_WORLD_RANK"));
  EXPECT_EQ(r.code, 0) << r.output;
  EXPECT_CONTAINS(r.output, "--host localhost:2");
  EXPECT_EQ(r.output.find("rank=2"), std::string::npos) << r.output;
}

TEST_F(Launcher, RankExitingThreeFailsTheRunAndIsNamed) {
  REQUIRE_MPIRUN();
  ProgramResult r = run("--num_gpus 2 " + sh("[ $OMPI_COMM_WORLD_RANK = 1 ] && exit 3; exit 0"));
  EXPECT_NE(r.code, 0) << r.output;
  EXPECT_CONTAINS(r.output, "moxrun: rank 1 exited with status 3");
  EXPECT_EQ(after_command(r.output).find("rank 0 exited"), std::string::npos) << r.output;
}

TEST_F(Launcher, RankKilledBySigkillStopsTheOthers) {
  REQUIRE_MPIRUN();
  // Rank 0 records its pid and sleeps; rank 1 waits for that (at most 5 s), then SIGKILLs itself.
  const std::string pid_file = dir_.path("rank0.pid");
  const std::string snippet =
      "if [ $OMPI_COMM_WORLD_RANK = 0 ]; then echo $$ > " + sh_quote(pid_file + ".tmp") + " && mv " +
      sh_quote(pid_file + ".tmp") + " " + sh_quote(pid_file) + " && exec sleep 60; fi; " +
      "i=0; while [ ! -s " + sh_quote(pid_file) + " ] && [ $i -lt 250 ]; do sleep 0.02; i=$((i + 1)); done; " +
      "kill -9 $$";
  const auto start = Clock::now();
  ProgramResult r = run("--num_gpus 2 " + sh(snippet));
  const double seconds = std::chrono::duration<double>(Clock::now() - start).count();
  EXPECT_NE(r.code, 0) << r.output;
  EXPECT_LT(seconds, 10.0) << r.output;
  EXPECT_CONTAINS(r.output, "moxrun: rank 1 exited with status 137 (signal 9, KILL)");
  const pid_t sleeper = read_pid(pid_file);
  ASSERT_GT(sleeper, 0) << "rank 0 wrote no pid:\n" << r.output;
  EXPECT_FALSE(process_running(sleeper)) << "rank 0 (pid " << sleeper << ") outlived moxrun";
  if (process_running(sleeper)) kill(sleeper, SIGKILL);
}

TEST_F(Launcher, SigtermToMoxrunEndsEveryRank) {
  REQUIRE_MPIRUN();
  // Started with posix_spawn (not through a shell) so the test holds moxrun's own pid.
  const std::string out = dir_.path("out.txt");
  const std::string snippet = "echo $$ > " + sh_quote(dir_.path("pid.")) + "$OMPI_COMM_WORLD_RANK.tmp && mv " +
                              sh_quote(dir_.path("pid.")) + "$OMPI_COMM_WORLD_RANK.tmp " +
                              sh_quote(dir_.path("pid.")) + "$OMPI_COMM_WORLD_RANK && exec sleep 60";
  std::vector<std::string> args = {script_.string(), "--num_gpus", "2", "sh", "-c", snippet};
  std::vector<char*> argv;
  for (std::string& a : args) argv.push_back(a.data());
  argv.push_back(nullptr);
  posix_spawn_file_actions_t actions;
  posix_spawn_file_actions_init(&actions);
  posix_spawn_file_actions_addopen(&actions, 1, out.c_str(), O_WRONLY | O_CREAT | O_TRUNC, 0644);
  posix_spawn_file_actions_adddup2(&actions, 1, 2);
  pid_t moxrun = 0;
  const int err = posix_spawn(&moxrun, argv[0], &actions, nullptr, argv.data(), environ);
  posix_spawn_file_actions_destroy(&actions);
  ASSERT_EQ(err, 0) << "posix_spawn " << argv[0] << ": " << std::strerror(err);

  const bool started = wait_for_file(dir_.path("pid.0"), std::chrono::seconds(10)) &&
                       wait_for_file(dir_.path("pid.1"), std::chrono::seconds(10));
  kill(moxrun, SIGTERM);
  const auto start = Clock::now();
  int status = 0;
  while (waitpid(moxrun, &status, WNOHANG) == 0) {
    if (Clock::now() - start > std::chrono::seconds(10)) {
      kill(moxrun, SIGKILL);
      waitpid(moxrun, &status, 0);
      ADD_FAILURE() << "moxrun still running 10 s after SIGTERM";
      break;
    }
    std::this_thread::sleep_for(std::chrono::milliseconds(20));
  }
  ASSERT_TRUE(started) << "the ranks did not start:\n" << read_text(out);
  EXPECT_FALSE(WIFEXITED(status) && WEXITSTATUS(status) == 0) << read_text(out);
  for (const char* rank : {"pid.0", "pid.1"}) {
    const pid_t pid = read_pid(dir_.path(rank));
    ASSERT_GT(pid, 0);
    EXPECT_FALSE(process_running(pid)) << rank << " (pid " << pid << ") outlived moxrun:\n" << read_text(out);
    if (process_running(pid)) kill(pid, SIGKILL);
  }
  // Ranks stopped by mpirun do not report themselves as failures.
  EXPECT_EQ(after_command(read_text(out)).find("exited with status"), std::string::npos) << read_text(out);
}

// The distributed issue's failure case with a real job: mox-cifar10 training data and expert
// parallel on 2 ranks (real CIFAR-10 from MOX_DATA), rank 1 SIGKILLed a few seconds in. The
// job must fail promptly — rank 0 is inside a collective waiting for rank 1 — naming rank 1.
TEST_F(Launcher, RankKilledMidTrainingFailsTheJobNamingTheRank) {
  REQUIRE_MPIRUN();
  const char* root = std::getenv("MOX_DATA");
  const std::string data = root && *root ? std::string(root) + "/cifar10" : "";
  if (data.empty() || !fs::is_regular_file(data + "/test_batch.bin"))
    GTEST_SKIP() << "needs real CIFAR-10 under $MOX_DATA/cifar10 (make data)";
  const fs::path cifar = mox::testing::program_beside_tests("mox-cifar10");
  if (cifar.empty()) GTEST_SKIP() << "mox-cifar10 not built beside the tests";
  // Rank 1's shell schedules its own SIGKILL, then execs the trainer (which keeps the pid).
  const std::string rank_cmd = "if [ $OMPI_COMM_WORLD_RANK = 1 ]; then (sleep 4; kill -9 $$) & fi; exec \"$0\" \"$@\"";
  const auto start = Clock::now();
  ProgramResult r = run("--num_gpus 2 --timeout 60 sh -c " + sh_quote(rank_cmd) + " " + sh_quote(cifar.string()) +
                        " --data " + sh_quote(data) + " --epochs 20 --batch-size 8 --log-interval 10 --moe" +
                        " --num-experts 2 --ep-world-size 2");
  const double seconds = std::chrono::duration<double>(Clock::now() - start).count();
  EXPECT_NE(r.code, 0) << r.output;
  EXPECT_LT(seconds, 60.0) << r.output;
  // It was training when the rank died (a loss line every 10 steps: the sanitizer build on 2
  // loaded cores did not always reach step 100 within the 4 s).
  EXPECT_CONTAINS(r.output, "loss:");
  EXPECT_CONTAINS(r.output, "moxrun: rank 1 exited with status 137 (signal 9, KILL)");
}

}  // namespace
