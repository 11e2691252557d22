// test_cuda_library.cpp — the CUDA backend as a library loaded on first use
// (tensor/cuda_library.h): it loads with every symbol resolved (so CI, which has no GPU,
// still proves the library and the programs fit together), the reason for an unusable CUDA
// device names its cause, and a run that finds no GPU never maps cuBLAS or the library.
#include <gtest/gtest.h>

#include <cstdlib>
#include <fstream>
#include <sstream>

#include "child_process.h"
#include "expect_error.h"
#include "tensor/backend.h"
#include "tensor/cuda_library.h"
#include "tensor/ops.h"

namespace {

using mox::DeviceType;
namespace cuda_library = mox::cuda_library;

std::string mapped_files() {
  std::ifstream maps("/proc/self/maps");
  std::stringstream text;
  text << maps.rdbuf();
  return text.str();
}

TEST(CudaLibrary, LoadsWithEverySymbolResolved) {
  if (!mox::cuda_built()) GTEST_SKIP() << "mox was built without the CUDA backend (no " << cuda_library::path() << ")";
  ASSERT_EQ(cuda_library::load_error(), "") << cuda_library::path();
  EXPECT_NE(cuda_library::symbol("mox_cuda_backend"), nullptr);
  EXPECT_NE(cuda_library::symbol("mox_cuda_unavailable_reason"), nullptr);
  // The NCCL transport's two entry points come together or not at all (nccl.h found or not).
  EXPECT_EQ(cuda_library::symbol("mox_nccl_transport_create") != nullptr,
            cuda_library::symbol("mox_nccl_device_identity") != nullptr);
  EXPECT_CONTAINS(mapped_files(), cuda_library::path());
}

TEST(CudaLibrary, UnavailableReasonNamesTheCause) {
  const std::string why = mox::cuda_unavailable_reason();
  if (mox::backend_available(DeviceType::CUDA)) {
    EXPECT_EQ(why, "");
    return;
  }
  if (!mox::cuda_built()) {
    EXPECT_CONTAINS(why, "built without the CUDA backend");
    EXPECT_CONTAINS(why, cuda_library::path());
  } else if (!cuda_library::device_probe().empty()) {
    EXPECT_CONTAINS(why, "no CUDA device is visible to this process (" + cuda_library::device_probe());
  } else {
    EXPECT_CONTAINS(why, "cannot");   // the library or the CUDA runtime cannot start
  }
  mox::testing::expect_error([] { mox::backend(mox::Device::cuda()); }, {"device cuda:0 requested, but " + why});
}

// The child phase of the next test, run in a fresh process: CPU work and the device question
// every program asks at start-up (--device auto).
TEST(CudaLibraryChildPhase, CpuWorkThenDeviceProbe) {
  if (!std::getenv("MOX_CUDA_LIBRARY_CHILD"))
    GTEST_SKIP() << "run by CudaLibrary.CpuOnlyRunMapsNoCudaLibrary in a fresh process";
  const mox::Tensor a = mox::ones({64, 64}), b = mox::raw::matmul(a, a);
  EXPECT_EQ(b.to_vector<float>()[0], 64.0f);
  const bool gpu = mox::backend_available(DeviceType::CUDA);
  const std::string maps = mapped_files();
  if (gpu) {
    std::printf("child: GPU present, library loaded\n");
    EXPECT_CONTAINS(maps, "libmox_cuda.so");
  } else {
    std::printf("child: no GPU, nothing CUDA mapped\n");
    EXPECT_EQ(maps.find("libmox_cuda.so"), std::string::npos) << maps;
    EXPECT_EQ(maps.find("libcublas"), std::string::npos) << maps;
    EXPECT_EQ(maps.find("libcudnn"), std::string::npos) << maps;
  }
}

TEST(CudaLibrary, CpuOnlyRunMapsNoCudaLibrary) {
  const std::string self = std::filesystem::read_symlink("/proc/self/exe").string();
  const mox::testing::ProgramResult child = mox::testing::run_program(
      "/usr/bin/env", "MOX_CUDA_LIBRARY_CHILD=1 " + mox::testing::sh_quote(self) +
                          " --gtest_filter=CudaLibraryChildPhase.* --gtest_color=no");
  EXPECT_EQ(child.code, 0) << child.output;
  EXPECT_CONTAINS(child.output, "1 test from 1 test suite ran");
  EXPECT_CONTAINS(child.output, "child: ");
  EXPECT_EQ(child.output.find("SKIPPED"), std::string::npos) << child.output;
}

}  // namespace
