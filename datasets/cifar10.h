// cifar10.h — CIFAR-10 in the official binary layout, held in memory as one u8 buffer.
//
// Each record is 3,073 bytes: one label byte (0–9), then the 1,024 red, 1,024 green and
// 1,024 blue bytes of a 32×32 image, each plane row-major. The training set is
// data_batch_1.bin … data_batch_5.bin, the test set test_batch.bin, 10,000 records a file;
// batches.meta.txt, when present, names the classes one a line. Cifar10 reads all of a
// split into images (N, 3, 32, 32) u8 + labels; get(i) returns a view, no copy.
// The byte parser (parse_cifar10) is separate so it can be fuzzed without files.
// Not here: the Python-pickle layout, CIFAR-100, any float conversion (see DataLoader).
#pragma once
#include <cstddef>
#include <cstdint>
#include <string>
#include <vector>

#include "datasets/dataset.h"

namespace mox::data {

constexpr int64_t kCifarImageBytes = 3 * 32 * 32;               // 3,072
constexpr int64_t kCifarRecordBytes = 1 + kCifarImageBytes;     // 3,073
constexpr int64_t kCifarRecordsPerFile = 10000;                 // official files

struct CifarRecords {
  Tensor images;                 // (N, 3, 32, 32) u8
  std::vector<int64_t> labels;   // (N), each 0..9
};

// Parse CIFAR-10 binary records from memory; `source` names the bytes in errors.
// expected_records = 0 accepts any whole number of records (at least one); otherwise the
// size must be exactly expected_records * 3,073 bytes. Throws mox::Error on a bad size or a
// label above 9 (naming the record index).
CifarRecords parse_cifar10(const uint8_t* bytes, size_t nbytes, const std::string& source,
                           int64_t expected_records = 0);
// Read and parse one file; errors name the path.
CifarRecords read_cifar10_file(const std::string& path,
                               int64_t expected_records = kCifarRecordsPerFile);

class Cifar10 final : public Dataset {
 public:
  // Reads dir/data_batch_{1..5}.bin (train) or dir/test_batch.bin (test), 10,000 records
  // each, and dir/batches.meta.txt when present (else the standard 10 names).
  Cifar10(const std::string& dir, bool train);

  int64_t size() const override { return int64_t(labels_.size()); }
  Example get(int64_t i) const override;   // image: a read-only view (3, 32, 32) u8
  std::vector<std::string> class_names() const override { return class_names_; }

  const Tensor& images() const { return images_; }              // (N, 3, 32, 32) u8
  const std::vector<int64_t>& labels() const { return labels_; }  // (N)

 private:
  Tensor images_;
  std::vector<int64_t> labels_;
  std::vector<std::string> class_names_;
};

}  // namespace mox::data
