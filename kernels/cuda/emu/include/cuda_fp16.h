// IEEE binary16 for emulator builds: storage and exact conversions.
#ifndef TPSERVE_KERNELS_CUDA_EMU_INCLUDE_CUDA_FP16_H_
#define TPSERVE_KERNELS_CUDA_EMU_INCLUDE_CUDA_FP16_H_

#include <cstdint>
#include <cstring>

struct __half {
  uint16_t __x;
};

inline __half __ushort_as_half(unsigned short bits) { return __half{bits}; }
inline unsigned short __half_as_ushort(__half h) { return h.__x; }

inline float __half2float(__half h) {
  const uint32_t sign = static_cast<uint32_t>(h.__x & 0x8000u) << 16;
  const uint32_t exp = (h.__x >> 10) & 0x1fu;
  uint32_t mant = h.__x & 0x3ffu;
  uint32_t bits;
  if (exp == 0x1f) {
    bits = sign | 0x7f800000u | (mant << 13);
  } else if (exp != 0) {
    bits = sign | ((exp + 112u) << 23) | (mant << 13);
  } else if (mant == 0) {
    bits = sign;
  } else {  // subnormal: normalise
    int e = -1;
    do {
      ++e;
      mant <<= 1;
    } while ((mant & 0x400u) == 0);
    bits = sign | ((112u - e) << 23) | ((mant & 0x3ffu) << 13);
  }
  float f;
  std::memcpy(&f, &bits, sizeof(f));
  return f;
}

// Round to nearest even, overflow to infinity, NaN kept.
inline __half __float2half_rn(float f) {
  uint32_t x;
  std::memcpy(&x, &f, sizeof(x));
  const uint16_t sign = static_cast<uint16_t>((x >> 16) & 0x8000u);
  const uint32_t abs = x & 0x7fffffffu;
  if (abs > 0x7f800000u) return __half{static_cast<uint16_t>(sign | 0x7e00u)};
  if (abs >= 0x477ff000u) return __half{static_cast<uint16_t>(sign | 0x7c00u)};  // >= 65520
  if (abs < 0x38800000u) {  // below the smallest normal half: subnormal or zero
    float a;
    std::memcpy(&a, &abs, sizeof(a));
    // Scale so one half-subnormal ulp (2^-24) is 1, then round to nearest even.
    const float scaled = a * 16777216.0f;
    const uint32_t q = static_cast<uint32_t>(__builtin_rintf(scaled));
    return __half{static_cast<uint16_t>(sign | q)};
  }
  const uint32_t rounded = abs + 0xfffu + ((abs >> 13) & 1u);
  return __half{static_cast<uint16_t>(sign | ((rounded - 0x38000000u) >> 13))};
}

#endif  // TPSERVE_KERNELS_CUDA_EMU_INCLUDE_CUDA_FP16_H_
