// fuzz_cifar10.cpp — libFuzzer target for data::parse_cifar10 (CIFAR-10 binary records),
// with expected_records = 0 (any whole number of records). Accepted input: N records,
// images (N, 3, 32, 32) u8 holding the input's pixel bytes, labels 0..9.
#include <cstring>

#include "datasets/cifar10.h"
#include "fuzz/fuzz_common.h"

extern "C" int LLVMFuzzerTestOneInput(const uint8_t* data, size_t size) {
  return mox::fuzz::run_one([&] {
    mox::data::CifarRecords r = mox::data::parse_cifar10(data, size, "fuzz.bin", 0);
    const int64_t n = int64_t(r.labels.size());
    MOX_FUZZ_ASSERT(n >= 1 && size_t(n) * size_t(mox::data::kCifarRecordBytes) == size);
    MOX_FUZZ_ASSERT(r.images.shape() == mox::Shape({n, 3, 32, 32}) && r.images.dtype() == mox::DType::u8);
    const uint8_t* px = r.images.data<uint8_t>();
    for (int64_t i = 0; i < n; ++i) {
      MOX_FUZZ_ASSERT(r.labels[size_t(i)] >= 0 && r.labels[size_t(i)] <= 9);
      MOX_FUZZ_ASSERT(std::memcmp(px + i * mox::data::kCifarImageBytes, data + i * mox::data::kCifarRecordBytes + 1,
                                  size_t(mox::data::kCifarImageBytes)) == 0);
    }
  });
}
