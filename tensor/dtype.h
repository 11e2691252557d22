// dtype.h — element types of a Tensor and the 16-bit float formats.
//
// f16 and bf16 are storage formats on the CPU: kernels convert them to float, compute in
// float and round back (round-to-nearest-even). The conversions are MOX_HD (host and
// device) so the CUDA backend shares them. Not here: type promotion — mox never promotes
// implicitly; binary ops require equal dtypes and say so (see docs/DECISIONS.md).
#pragma once
#include <cstdint>
#include <cstring>
#include <ostream>

#if defined(__CUDACC__)
#define MOX_HD __host__ __device__
#else
#define MOX_HD
#endif

namespace mox {

enum class DType : uint8_t { f32, f64, f16, bf16, i32, i64, u8, boolean };

inline size_t dtype_size(DType t) {
  switch (t) {
    case DType::f64: case DType::i64: return 8;
    case DType::f32: case DType::i32: return 4;
    case DType::f16: case DType::bf16: return 2;
    case DType::u8: case DType::boolean: return 1;
  }
  return 0;
}
const char* dtype_name(DType t);                // "f32", "bf16", ...
inline bool is_floating(DType t) {
  return t == DType::f32 || t == DType::f64 || t == DType::f16 || t == DType::bf16;
}
inline std::ostream& operator<<(std::ostream& os, DType t) { return os << dtype_name(t); }

MOX_HD inline uint32_t float_bits(float f) { uint32_t u; memcpy(&u, &f, 4); return u; }
MOX_HD inline float bits_float(uint32_t u) { float f; memcpy(&f, &u, 4); return f; }

// IEEE 754 binary16.
struct half {
  uint16_t bits = 0;
  half() = default;
  MOX_HD half(float f) : bits(from_float(f)) {}
  MOX_HD operator float() const { return to_float(bits); }

  MOX_HD static uint16_t from_float(float f) {
    uint32_t x = float_bits(f);
    uint32_t sign = (x >> 16) & 0x8000u;
    uint32_t abs = x & 0x7fffffffu;
    if (abs >= 0x7f800000u) return uint16_t(sign | (abs > 0x7f800000u ? 0x7e00u : 0x7c00u));
    if (abs >= 0x477ff000u) return uint16_t(sign | 0x7c00u);  // rounds to inf
    if (abs < 0x38800000u) {                                  // subnormal or zero in half
      float a = bits_float(abs);
      // scale so that the half subnormal ulp (2^-24) becomes 1, round to nearest even
      float scaled = a * 16777216.0f;
      uint32_t m = uint32_t(scaled);
      float rem = scaled - float(m);
      if (rem > 0.5f || (rem == 0.5f && (m & 1u))) ++m;
      return uint16_t(sign | m);
    }
    uint32_t mant_round = abs + 0xfffu + ((abs >> 13) & 1u);  // round to nearest even
    return uint16_t(sign | ((mant_round - 0x38000000u) >> 13));
  }
  MOX_HD static float to_float(uint16_t h) {
    uint32_t sign = uint32_t(h & 0x8000u) << 16;
    uint32_t exp = (h >> 10) & 0x1fu, mant = h & 0x3ffu;
    if (exp == 0) {
      float v = float(mant) * (1.0f / 16777216.0f);
      return sign ? -v : v;
    }
    if (exp == 31) return bits_float(sign | 0x7f800000u | (mant << 13));
    return bits_float(sign | ((exp + 112u) << 23) | (mant << 13));
  }
};

// bfloat16: the top half of a float32, rounded to nearest even.
struct bfloat16 {
  uint16_t bits = 0;
  bfloat16() = default;
  MOX_HD bfloat16(float f) : bits(from_float(f)) {}
  MOX_HD operator float() const { return bits_float(uint32_t(bits) << 16); }
  MOX_HD static uint16_t from_float(float f) {
    uint32_t x = float_bits(f);
    if ((x & 0x7fffffffu) > 0x7f800000u) return uint16_t((x >> 16) | 0x40u);  // quiet NaN
    return uint16_t((x + 0x7fffu + ((x >> 16) & 1u)) >> 16);
  }
};

// C++ type → DType.
template <typename T> struct dtype_of;
template <> struct dtype_of<float> { static constexpr DType value = DType::f32; };
template <> struct dtype_of<double> { static constexpr DType value = DType::f64; };
template <> struct dtype_of<half> { static constexpr DType value = DType::f16; };
template <> struct dtype_of<bfloat16> { static constexpr DType value = DType::bf16; };
template <> struct dtype_of<int32_t> { static constexpr DType value = DType::i32; };
template <> struct dtype_of<int64_t> { static constexpr DType value = DType::i64; };
template <> struct dtype_of<uint8_t> { static constexpr DType value = DType::u8; };
template <> struct dtype_of<bool> { static constexpr DType value = DType::boolean; };

}  // namespace mox
