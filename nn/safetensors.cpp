// safetensors.cpp — the safetensors reader (a validating parser) and atomic writer.
//
// Reading: load_safetensors maps the file read-only and hands the bytes to
// parse_safetensors, which trusts nothing: the header length is capped and bounded by the
// file, the JSON is checked for syntax, nesting depth and duplicate keys before it is
// turned into a DOM, every entry is type-checked, byte sizes are computed with overflow
// checks, and the tensors must tile the data buffer exactly. Only then is anything copied,
// into fresh CPU tensors. Writing: the header is built and checked first (nothing touches
// the disk for a bad name), then the bytes stream tensor by tensor into a temp file that is
// fsynced and renamed over the target. Not here: dtype conversion on load (a file's F16
// stays f16) and partial/lazy loading.
#include "nn/safetensors.h"

#include <fcntl.h>
#include <sys/mman.h>
#include <sys/stat.h>
#include <unistd.h>

#include <algorithm>
#include <cerrno>
#include <cstring>
#include <limits>
#include <nlohmann/json.hpp>
#include <set>
#include <vector>

#include "tensor/ops.h"

static_assert(__BYTE_ORDER__ == __ORDER_LITTLE_ENDIAN__,
              "safetensors data is little-endian; a big-endian host would need byte swaps here");

namespace mox::nn {
namespace {

using json = nlohmann::json;

// The reference implementation (huggingface/safetensors) refuses larger headers too.
constexpr uint64_t kMaxHeaderBytes = 100'000'000;
constexpr const char* kMetadataKey = "__metadata__";

const std::pair<const char*, DType> kDTypes[] = {
    {"F32", DType::f32}, {"F64", DType::f64}, {"F16", DType::f16}, {"BF16", DType::bf16},
    {"I32", DType::i32}, {"I64", DType::i64}, {"U8", DType::u8},   {"BOOL", DType::boolean},
};

// ============================================================================ reading

// One header entry after validation. [begin, end) is relative to the data buffer.
struct Entry {
  std::string name;
  DType dtype;
  Shape shape;
  uint64_t begin, end;
};

// What a JSON value is, for error messages: numbers print themselves, the rest their type
// (never the full text — a hostile header may hold a 100 MB string).
std::string brief(const json& v) { return v.is_number() ? v.dump() : std::string(v.type_name()); }

// First pass over the header text, without building anything: JSON syntax, nesting depth
// and duplicate keys. A valid header nests at most three deep (root object → entry or
// metadata object → shape/offsets array), so the DOM built afterwards stays small whatever
// the input, and no key can silently shadow an earlier one (nlohmann keeps the last).
class HeaderChecker : public nlohmann::json_sax<json> {
 public:
  explicit HeaderChecker(const std::string& file) : file_(file) {}

  bool null() override { return true; }
  bool boolean(bool) override { return true; }
  bool number_integer(number_integer_t) override { return true; }
  bool number_unsigned(number_unsigned_t) override { return true; }
  bool number_float(number_float_t, const string_t&) override { return true; }
  bool string(string_t&) override { return true; }
  bool binary(binary_t&) override { return true; }
  bool start_object(std::size_t) override { return open(); }
  bool start_array(std::size_t) override { return open(); }
  bool end_object() override { return close(); }
  bool end_array() override { return close(); }
  bool key(string_t& k) override {
    MOX_CHECK(open_.back().insert(k).second, file_, ": duplicate key \"", k,
              "\" in the JSON header (at nesting depth ", open_.size(), ")");
    return true;
  }
  bool parse_error(std::size_t, const std::string&, const nlohmann::json::exception& e) override {
    std::string why = e.what();
    if (why.size() > 300) why = why.substr(0, 300) + "...";
    MOX_FAIL(file_, ": the header is not valid JSON: ", why);
  }

 private:
  bool open() {
    MOX_CHECK(open_.size() < 3, file_, ": the JSON header nests deeper than a safetensors "
              "header can (expected {name: {\"shape\": [...], ...}})");
    open_.emplace_back();
    return true;
  }
  bool close() {
    open_.pop_back();
    return true;
  }
  const std::string& file_;
  std::vector<std::set<std::string>> open_;   // keys seen so far in each open object/array
};

// A JSON integer in [0, INT64_MAX] (a shape extent or a data offset).
int64_t non_negative_int(const json& v, const std::string& what) {
  MOX_CHECK(v.is_number_integer(), what, " must be an integer, got ", brief(v));
  if (v.is_number_unsigned()) {
    uint64_t u = v.get<uint64_t>();
    MOX_CHECK(u <= uint64_t(std::numeric_limits<int64_t>::max()), what, " is too large: ", u);
    return int64_t(u);
  }
  int64_t i = v.get<int64_t>();
  MOX_CHECK(i >= 0, what, " must not be negative, got ", i);
  return i;
}

// Validate one "name": {"dtype", "shape", "data_offsets"} entry against a data buffer of
// data_size bytes.
Entry parse_entry(const std::string& file, const std::string& name, const json& v,
                  uint64_t data_size) {
  const std::string what = file + ": tensor '" + name + "'";
  MOX_CHECK(v.is_object(), what, ": expected an object with \"dtype\", \"shape\" and "
            "\"data_offsets\", got ", brief(v));
  for (const char* field : {"dtype", "shape", "data_offsets"})
    MOX_CHECK(v.contains(field), what, ": missing \"", field, "\"");

  Entry e;
  e.name = name;
  const json& dtype = v["dtype"];
  MOX_CHECK(dtype.is_string(), what, ": \"dtype\" must be a string, got ", brief(dtype));
  e.dtype = dtype_from_safetensors(dtype.get<std::string>(), what);

  const json& shape = v["shape"];
  MOX_CHECK(shape.is_array(), what, ": \"shape\" must be an array of integers, got ", brief(shape));
  MOX_CHECK(shape.size() <= size_t(Shape::kMaxRank), what, ": shape has ", shape.size(),
            " dimensions; mox tensors have at most ", Shape::kMaxRank);
  // bytes = prod(shape) * dtype_size, in int64 with overflow checks
  int64_t bytes = int64_t(dtype_size(e.dtype));
  for (size_t i = 0; i < shape.size(); ++i) {
    int64_t extent = non_negative_int(shape[i], what + ": shape[" + std::to_string(i) + "]");
    e.shape.push_back(extent);
    MOX_CHECK(!__builtin_mul_overflow(bytes, extent, &bytes), what, ": shape ", shape.dump(),
              " of ", dtype.get<std::string>(), " is too large (byte size overflows int64)");
  }

  const json& offsets = v["data_offsets"];
  MOX_CHECK(offsets.is_array() && offsets.size() == 2, what,
            ": \"data_offsets\" must be [begin, end], got ", offsets.is_array() ? offsets.dump() : brief(offsets));
  e.begin = uint64_t(non_negative_int(offsets[0], what + ": data_offsets[0]"));
  e.end = uint64_t(non_negative_int(offsets[1], what + ": data_offsets[1]"));
  MOX_CHECK(e.begin <= e.end, what, ": data_offsets ", offsets.dump(), " has begin > end");
  MOX_CHECK(e.end <= data_size, what, ": data_offsets ", offsets.dump(),
            " reach past the end of the data buffer, which has ", data_size, " bytes (file truncated?)");
  MOX_CHECK(e.end - e.begin == uint64_t(bytes), what, ": data_offsets ", offsets.dump(), " hold ",
            e.end - e.begin, " bytes but shape ", e.shape, " of ", dtype.get<std::string>(),
            " needs ", bytes, " bytes");
  return e;
}

std::map<std::string, std::string> parse_metadata(const std::string& file, const json& v) {
  MOX_CHECK(v.is_object(), file, ": \"", kMetadataKey, "\" must be an object of strings, got ", brief(v));
  std::map<std::string, std::string> out;
  for (const auto& [key, value] : v.items()) {
    MOX_CHECK(value.is_string(), file, ": \"", kMetadataKey, "\" key '", key,
              "' must map to a string, got ", brief(value));
    out[key] = value.get<std::string>();
  }
  return out;
}

// Sort entries by offset and check they tile [0, data_size) exactly: no overlap, no hole,
// no trailing bytes. Zero-size tensors ([x, x]) may sit at any boundary.
void check_tiling(const std::string& file, std::vector<Entry>& entries, uint64_t data_size) {
  std::stable_sort(entries.begin(), entries.end(), [](const Entry& a, const Entry& b) {
    return a.begin != b.begin ? a.begin < b.begin : a.end < b.end;
  });
  uint64_t covered = 0;   // bytes [0, covered) belong to the tensors seen so far
  const Entry* prev = nullptr;
  for (const Entry& e : entries) {
    // (an overlap needs covered > 0, so prev is set whenever this message is built)
    MOX_CHECK(e.begin >= covered, file, ": tensor '", e.name, "' (data_offsets [", e.begin, ", ",
              e.end, "]) overlaps tensor '", prev->name, "' (data_offsets [", prev->begin, ", ",
              prev->end, "])");
    MOX_CHECK(e.begin == covered, file, ": bytes [", covered, ", ", e.begin,
              ") of the data buffer belong to no tensor (a hole before tensor '", e.name, "')");
    covered = e.end;
    prev = &e;
  }
  MOX_CHECK(covered == data_size, file, ": the data buffer has ", data_size,
            " bytes but the tensors cover only ", covered, " (", data_size - covered,
            " trailing bytes after ", prev ? "tensor '" + prev->name + "'" : std::string("the header"), ")");
}

// Closes a file descriptor / unmaps a mapping when the scope ends.
struct FdCloser {
  int fd;
  ~FdCloser() { ::close(fd); }
};
struct Unmapper {
  void* addr;
  size_t size;
  ~Unmapper() { ::munmap(addr, size); }
};

// ============================================================================ writing

// The temp file of an atomic save; removed unless the save got as far as the rename.
struct TempFile {
  std::string path;
  int fd = -1;
  bool renamed = false;
  ~TempFile() {
    if (fd >= 0) ::close(fd);
    if (!renamed) ::unlink(path.c_str());
  }
};

void write_all(TempFile& tmp, const std::string& target, const void* data, size_t n) {
  const char* p = static_cast<const char*>(data);
  while (n > 0) {
    ssize_t w = ::write(tmp.fd, p, n);
    if (w < 0 && errno == EINTR) continue;
    MOX_CHECK(w > 0, "save_safetensors('", target, "'): cannot write '", tmp.path, "': ",
              w < 0 ? std::strerror(errno) : "write returned 0");
    p += w;
    n -= size_t(w);
  }
}

// fsync the directory holding `path`, so that the rename itself survives a crash.
void sync_parent_directory(const std::string& path) {
  size_t slash = path.find_last_of('/');
  std::string dir = slash == std::string::npos ? "." : slash == 0 ? "/" : path.substr(0, slash);
  int fd = ::open(dir.c_str(), O_RDONLY | O_DIRECTORY | O_CLOEXEC);
  MOX_CHECK(fd >= 0, "save_safetensors('", path, "'): cannot open directory '", dir,
            "' to fsync it: ", std::strerror(errno));
  FdCloser closer{fd};
  // Some filesystems cannot fsync a directory and say EINVAL; the rename is then as
  // durable as that filesystem makes it (PostgreSQL's fsync_fname makes the same call).
  MOX_CHECK(::fsync(fd) == 0 || errno == EINVAL, "save_safetensors('", path,
            "'): cannot fsync directory '", dir, "': ", std::strerror(errno));
}

}  // namespace

// ============================================================================ dtypes

std::string dtype_to_safetensors(DType dtype) {
  for (const auto& [name, d] : kDTypes)
    if (d == dtype) return name;
  MOX_FAIL("dtype ", dtype, " has no safetensors name");
}

DType dtype_from_safetensors(const std::string& name, const std::string& context) {
  for (const auto& [n, d] : kDTypes)
    if (name == n) return d;
  MOX_FAIL(context, ": unknown dtype '", name, "'; mox supports F32, F64, F16, BF16, I32, I64, U8, BOOL");
}

// ============================================================================ load

SafetensorsFile parse_safetensors(const uint8_t* bytes, size_t size, const std::string& source_name) {
  const std::string file = "safetensors file '" + source_name + "'";
  // [ u64 N ][ N header bytes ][ data buffer ]
  MOX_CHECK(size >= 8, file, " is ", size, " bytes long; a safetensors file starts with an "
            "8-byte header length (truncated or not a safetensors file?)");
  uint64_t header_len = 0;
  for (int i = 0; i < 8; ++i) header_len |= uint64_t(bytes[i]) << (8 * i);
  MOX_CHECK(header_len <= kMaxHeaderBytes, file, ": header length ", header_len,
            " exceeds the ", kMaxHeaderBytes, "-byte limit (corrupt, or not a safetensors file?)");
  MOX_CHECK(header_len <= size - 8, file, ": header length ", header_len, " runs past the end of "
            "the file (", size, " bytes; truncated?)");
  const char* header_text = reinterpret_cast<const char*>(bytes + 8);
  const uint8_t* data = bytes + 8 + header_len;
  const uint64_t data_size = size - 8 - header_len;

  HeaderChecker checker(file);
  json::sax_parse(header_text, header_text + header_len, &checker);
  const json header = json::parse(header_text, header_text + header_len);
  MOX_CHECK(header.is_object(), file, ": the header must be a JSON object, got ", brief(header));

  SafetensorsFile out;
  std::vector<Entry> entries;
  for (const auto& [key, value] : header.items()) {
    if (key == kMetadataKey)
      out.metadata = parse_metadata(file, value);
    else
      entries.push_back(parse_entry(file, key, value, data_size));
  }
  check_tiling(file, entries, data_size);

  out.tensors.reserve(entries.size());
  for (const Entry& e : entries) {
    Tensor t = empty(e.shape, e.dtype, Device::cpu());
    const uint8_t* src = data + e.begin;
    const size_t n = size_t(e.end - e.begin);
    if (e.dtype == DType::boolean) {   // any other byte would be undefined behaviour as a bool
      for (size_t i = 0; i < n; ++i)
        MOX_CHECK(src[i] <= 1, file, ": tensor '", e.name, "' (BOOL) has byte ", int(src[i]),
                  " at element ", i, "; BOOL elements must be 0 or 1");
    }
    if (n > 0) std::memcpy(t.raw_data(), src, n);
    out.tensors.emplace_back(e.name, t);
  }
  return out;
}

// The file is mapped rather than read so that a large checkpoint is not held twice in
// memory. (A file truncated by another process while mapped would fault; mox's own saves
// never truncate in place — they rename.)
SafetensorsFile load_safetensors(const std::string& path) {
  int fd = ::open(path.c_str(), O_RDONLY | O_CLOEXEC);
  MOX_CHECK(fd >= 0, "load_safetensors: cannot open '", path, "': ", std::strerror(errno));
  FdCloser closer{fd};
  struct stat st;
  MOX_CHECK(::fstat(fd, &st) == 0, "load_safetensors: cannot stat '", path, "': ", std::strerror(errno));
  MOX_CHECK(S_ISREG(st.st_mode), "load_safetensors: '", path, "' is not a regular file");
  const size_t size = size_t(st.st_size);
  if (size == 0) return parse_safetensors(nullptr, 0, path);   // mmap refuses length 0
  void* map = ::mmap(nullptr, size, PROT_READ, MAP_PRIVATE, fd, 0);
  MOX_CHECK(map != MAP_FAILED, "load_safetensors: cannot map '", path, "': ", std::strerror(errno));
  Unmapper unmap{map, size};
  return parse_safetensors(static_cast<const uint8_t*>(map), size, path);
}

// ============================================================================ save

void save_safetensors(const std::string& path, const NamedTensors& tensors,
                      const std::map<std::string, std::string>& metadata) {
  // 1. The header, in the given order, "__metadata__" first as the reference writer does.
  nlohmann::ordered_json header = nlohmann::ordered_json::object();
  if (!metadata.empty()) header[kMetadataKey] = metadata;
  std::set<std::string> seen;
  uint64_t offset = 0;
  for (const auto& [name, t] : tensors) {
    MOX_CHECK(name != kMetadataKey, "save_safetensors('", path, "'): '", kMetadataKey,
              "' is reserved for metadata and cannot name a tensor");
    MOX_CHECK(seen.insert(name).second, "save_safetensors('", path, "'): duplicate tensor name '", name, "'");
    MOX_CHECK(t.defined(), "save_safetensors('", path, "'): tensor '", name, "' is undefined");
    header[name] = {{"dtype", dtype_to_safetensors(t.dtype())},
                    {"shape", t.shape().vec()},
                    {"data_offsets", {offset, offset + t.nbytes()}}};
    offset += t.nbytes();
  }
  std::string text;
  try {
    text = header.dump();
  } catch (const nlohmann::json::exception& e) {
    MOX_FAIL("save_safetensors('", path, "'): tensor names and metadata must be valid UTF-8: ", e.what());
  }
  text.append((8 - text.size() % 8) % 8, ' ');   // data starts 8-byte aligned
  MOX_CHECK(text.size() <= kMaxHeaderBytes, "save_safetensors('", path, "'): the header would be ",
            text.size(), " bytes, over the ", kMaxHeaderBytes, "-byte limit readers enforce");

  // 2. Stream everything into the temp file.
  TempFile tmp;
  tmp.path = path + ".tmp." + std::to_string(::getpid());
  tmp.fd = ::open(tmp.path.c_str(), O_WRONLY | O_CREAT | O_TRUNC | O_CLOEXEC, 0644);
  MOX_CHECK(tmp.fd >= 0, "save_safetensors('", path, "'): cannot create '", tmp.path, "': ",
            std::strerror(errno));
  uint8_t len_bytes[8];
  for (int i = 0; i < 8; ++i) len_bytes[i] = uint8_t(uint64_t(text.size()) >> (8 * i));
  write_all(tmp, path, len_bytes, 8);
  write_all(tmp, path, text.data(), text.size());
  for (const auto& [name, t] : tensors) {
    Tensor host = raw::to_device(raw::contiguous(t), Device::cpu());   // one tensor at a time
    if (host.nbytes() > 0) write_all(tmp, path, host.raw_data(), host.nbytes());
  }

  // 3. Make it durable, then atomically visible.
  MOX_CHECK(::fsync(tmp.fd) == 0, "save_safetensors('", path, "'): cannot fsync '", tmp.path,
            "': ", std::strerror(errno));
  int fd = tmp.fd;
  tmp.fd = -1;
  MOX_CHECK(::close(fd) == 0, "save_safetensors('", path, "'): cannot close '", tmp.path, "': ",
            std::strerror(errno));
  MOX_CHECK(::rename(tmp.path.c_str(), path.c_str()) == 0, "save_safetensors('", path,
            "'): cannot rename '", tmp.path, "' over it: ", std::strerror(errno));
  tmp.renamed = true;
  sync_parent_directory(path);
}

}  // namespace mox::nn
