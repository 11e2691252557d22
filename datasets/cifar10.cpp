// cifar10.cpp — CIFAR-10 binary parsing and the in-memory Cifar10 dataset (see cifar10.h).
#include "datasets/cifar10.h"

#include <cstring>
#include <filesystem>
#include <fstream>

#include "datasets/file_bytes.h"
#include "tensor/ops.h"

namespace mox::data {
namespace {

const char* const kDataHint = "run `make data` or pass --data DIR / set MOX_DATA";

// Checks the size of a record buffer and returns its number of records.
int64_t count_records(size_t nbytes, const std::string& source, int64_t expected_records) {
  if (expected_records > 0) {
    size_t expected = size_t(expected_records) * size_t(kCifarRecordBytes);
    if (nbytes != expected)
      MOX_FAIL(source, ": ", nbytes, " bytes, expected ", expected, " bytes (", expected_records,
               " CIFAR-10 records of ", kCifarRecordBytes,
               " bytes); the file is truncated or not CIFAR-10 binary — ", kDataHint);
  } else if (nbytes == 0 || nbytes % size_t(kCifarRecordBytes) != 0) {
    MOX_FAIL(source, ": ", nbytes, " bytes is not a whole, non-zero number of ",
             kCifarRecordBytes, "-byte CIFAR-10 records (expected a multiple of ",
             kCifarRecordBytes, " bytes)");
  }
  return int64_t(nbytes / size_t(kCifarRecordBytes));
}

// Splits n records into images (n, 3, 32, 32) and labels (n); the size was checked.
void parse_records(const uint8_t* bytes, int64_t n, const std::string& source, uint8_t* images,
                   int64_t* labels) {
  for (int64_t r = 0; r < n; ++r) {
    const uint8_t* rec = bytes + r * kCifarRecordBytes;
    if (rec[0] > 9)
      MOX_FAIL(source, ": record ", r, " has label ", int(rec[0]),
               "; CIFAR-10 labels are 0..9 (is this CIFAR-100 or a corrupt file?)");
    labels[r] = rec[0];
    std::memcpy(images + r * kCifarImageBytes, rec + 1, size_t(kCifarImageBytes));
  }
}

std::vector<std::string> read_class_names(const std::string& path) {
  std::ifstream in(path);
  MOX_CHECK(in.good(), "cannot open CIFAR-10 class-name file '", path, "'");
  std::vector<std::string> names;
  std::string line;
  while (std::getline(in, line)) {
    size_t end = line.find_last_not_of(" \t\r");
    if (end == std::string::npos) continue;   // blank line
    names.push_back(line.substr(0, end + 1));
  }
  MOX_CHECK(names.size() == 10, path, ": expected 10 class names, one a line; found ",
            names.size());
  return names;
}

}  // namespace

CifarRecords parse_cifar10(const uint8_t* bytes, size_t nbytes, const std::string& source,
                           int64_t expected_records) {
  int64_t n = count_records(nbytes, source, expected_records);
  CifarRecords out;
  out.images = empty({n, 3, 32, 32}, DType::u8);
  out.labels.resize(size_t(n));
  parse_records(bytes, n, source, out.images.data<uint8_t>(), out.labels.data());
  return out;
}

CifarRecords read_cifar10_file(const std::string& path, int64_t expected_records) {
  std::vector<uint8_t> bytes = read_file_bytes(path, "CIFAR-10 file");
  return parse_cifar10(bytes.data(), bytes.size(), path, expected_records);
}

Cifar10::Cifar10(const std::string& dir, bool train) {
  namespace fs = std::filesystem;
  std::vector<std::string> files;
  if (train) {
    for (int i = 1; i <= 5; ++i) files.push_back("data_batch_" + std::to_string(i) + ".bin");
  } else {
    files.push_back("test_batch.bin");
  }
  MOX_CHECK(fs::is_directory(dir), "CIFAR-10 directory '", dir, "' not found (looked for ",
            (fs::path(dir) / files[0]).string(), "); ", kDataHint);
  for (const std::string& f : files) {
    fs::path p = fs::path(dir) / f;
    MOX_CHECK(fs::is_regular_file(p), "CIFAR-10 file '", p.string(), "' is missing (the ",
              train ? "training" : "test", " split needs ",
              train ? "data_batch_1.bin … data_batch_5.bin" : "test_batch.bin", "); ", kDataHint);
  }

  const int64_t n = int64_t(files.size()) * kCifarRecordsPerFile;
  images_ = empty({n, 3, 32, 32}, DType::u8);   // (N, 3, 32, 32)
  labels_.resize(size_t(n));
  for (size_t f = 0; f < files.size(); ++f) {
    std::string path = (fs::path(dir) / files[f]).string();
    std::vector<uint8_t> bytes = read_file_bytes(path, "CIFAR-10 file");
    int64_t first = int64_t(f) * kCifarRecordsPerFile;
    int64_t count = count_records(bytes.size(), path, kCifarRecordsPerFile);
    parse_records(bytes.data(), count, path, images_.data<uint8_t>() + first * kCifarImageBytes,
                  labels_.data() + first);
  }

  fs::path meta = fs::path(dir) / "batches.meta.txt";
  class_names_ = fs::exists(meta)
                     ? read_class_names(meta.string())
                     : std::vector<std::string>{"airplane", "automobile", "bird", "cat", "deer",
                                                "dog",      "frog",       "horse", "ship", "truck"};
}

Example Cifar10::get(int64_t i) const {
  MOX_CHECK(i >= 0 && i < size(), "Cifar10::get: index ", i, " out of range [0, ", size(), ")");
  return {raw::select(images_, 0, i), labels_[size_t(i)]};   // (3, 32, 32) view
}

}  // namespace mox::data
