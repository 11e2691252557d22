// metrics.h — a JSON-lines metrics file for the examples: one object per line, flushed
// as written so a crashed run keeps everything logged up to the crash.
#pragma once
#include <cstdio>
#include <fstream>
#include <nlohmann/json.hpp>
#include <string>

#include "tensor/error.h"

namespace mox::examples {

class MetricsWriter {
 public:
  MetricsWriter() = default;   // disabled: write() does nothing
  // append=true continues a file (a resumed run); otherwise the file is truncated.
  MetricsWriter(const std::string& path, bool append) : path_(path) {
    if (path.empty()) return;
    out_.open(path, append ? std::ios::app : std::ios::trunc);
    MOX_CHECK(out_.good(), "cannot open metrics file '", path, "' for writing");
  }
  void write(const nlohmann::json& record) {
    if (!out_.is_open()) return;
    out_ << record.dump() << '\n';
    out_.flush();
    MOX_CHECK(out_.good(), "writing metrics file '", path_, "' failed (disk full?)");
  }

 private:
  std::string path_;
  std::ofstream out_;
};

}  // namespace mox::examples
