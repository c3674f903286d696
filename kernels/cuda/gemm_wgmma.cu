// cuda::GemmBf16Wgmma: an sm_90a (Hopper) tensor-core GEMM on bf16 operands
// with wgmma.mma_async reading both operands from shared memory through
// matrix descriptors: c (m, n) f32 = a (m, k) bf16 . b (n, k)^T bf16.
//
// EXPERIMENTAL: written without access to a Hopper GPU. cuda::GemmBf16 (the
// mma.sync kernel) stays the default; gemm_wgmma_test compares this kernel
// with the CPU twin on sm_90 devices and kernel_bench times both, so the
// first GPU run decides whether it becomes the default.
//
// One warpgroup (128 threads) per 64 x 128 output tile; kWgStages-deep
// cp.async pipeline of 64-wide k tiles stored K-major in the 128-byte swizzle
// layout wgmma expects (16-byte chunk c of row r at chunk c ^ (r % 8), 8-row
// atoms of 1024 bytes); per k tile, four m64n128k16 wgmmas advance the
// descriptors by 32 bytes each. cp.async writes go through the generic proxy,
// so a fence.proxy.async orders them before wgmma's async-proxy reads.
#include <cuda_runtime.h>

#include <cstdint>

#include "kernels/cuda/cuda_ops.h"
#include "kernels/cuda/cuda_status.h"
#include "kernels/cuda/mma_sm80.cuh"
#include "kernels/cuda/shared_memory.cuh"

namespace tpserve::kernels::cuda {
namespace {

constexpr int kWgM = 64;
constexpr int kWgN = 128;
constexpr int kWgK = 64;  // one 128-byte swizzled row of bf16
constexpr int kWgStages = 4;
constexpr int kWgThreads = 128;
constexpr int kATileBytes = kWgM * kWgK * 2;  // 8 KiB
constexpr int kBTileBytes = kWgN * kWgK * 2;  // 16 KiB
constexpr int kStageBytes = kATileBytes + kBTileBytes;
constexpr size_t kWgSharedBytes =
    static_cast<size_t>(kStageBytes) * kWgStages + 1024;  // + alignment slack
static_assert(kWgK * 2 == 128, "a k tile row is exactly one 128-byte swizzle row");
static_assert(kATileBytes % 1024 == 0 && kBTileBytes % 1024 == 0,
              "tiles keep 1024-byte swizzle-atom alignment");

#if defined(__CUDA_ARCH__) && (__CUDA_ARCH__ >= 900) && defined(__CUDA_ARCH_FEAT_SM90_ALL)
#define TPS_HAVE_WGMMA 1
#endif

#ifdef TPS_HAVE_WGMMA
// K-major operand, 128-byte swizzle: start address, stride between 8-row
// atoms (1024 bytes); the leading offset is unused in this mode (1 by convention).
__device__ __forceinline__ uint64_t Descriptor(uint32_t smem_addr) {
  uint64_t desc = 0;
  desc |= static_cast<uint64_t>((smem_addr & 0x3FFFF) >> 4);
  desc |= static_cast<uint64_t>(1) << 16;
  desc |= static_cast<uint64_t>(1024 >> 4) << 32;
  desc |= static_cast<uint64_t>(1) << 62;  // 128B swizzle
  return desc;
}

__device__ __forceinline__ void WgmmaM64N128K16(float d[64], uint64_t a_desc, uint64_t b_desc) {
  asm volatile(
      "{\n"
      "wgmma.mma_async.sync.aligned.m64n128k16.f32.bf16.bf16 "
      "{%0, %1, %2, %3, %4, %5, %6, %7, %8, %9, %10, %11, %12, %13, %14, %15, %16, %17, %18, %19, "
      "%20, %21, %22, %23, %24, %25, %26, %27, %28, %29, %30, %31, %32, %33, %34, %35, %36, %37, "
      "%38, %39, %40, %41, %42, %43, %44, %45, %46, %47, %48, %49, %50, %51, %52, %53, %54, %55, "
      "%56, %57, %58, %59, %60, %61, %62, %63}, %64, %65, 1, 1, 1, 0, 0;\n"
      "}\n"
      : "+f"(d[0]), "+f"(d[1]), "+f"(d[2]), "+f"(d[3]), "+f"(d[4]), "+f"(d[5]), "+f"(d[6]),
        "+f"(d[7]), "+f"(d[8]), "+f"(d[9]), "+f"(d[10]), "+f"(d[11]), "+f"(d[12]), "+f"(d[13]),
        "+f"(d[14]), "+f"(d[15]), "+f"(d[16]), "+f"(d[17]), "+f"(d[18]), "+f"(d[19]), "+f"(d[20]),
        "+f"(d[21]), "+f"(d[22]), "+f"(d[23]), "+f"(d[24]), "+f"(d[25]), "+f"(d[26]), "+f"(d[27]),
        "+f"(d[28]), "+f"(d[29]), "+f"(d[30]), "+f"(d[31]), "+f"(d[32]), "+f"(d[33]), "+f"(d[34]),
        "+f"(d[35]), "+f"(d[36]), "+f"(d[37]), "+f"(d[38]), "+f"(d[39]), "+f"(d[40]), "+f"(d[41]),
        "+f"(d[42]), "+f"(d[43]), "+f"(d[44]), "+f"(d[45]), "+f"(d[46]), "+f"(d[47]), "+f"(d[48]),
        "+f"(d[49]), "+f"(d[50]), "+f"(d[51]), "+f"(d[52]), "+f"(d[53]), "+f"(d[54]), "+f"(d[55]),
        "+f"(d[56]), "+f"(d[57]), "+f"(d[58]), "+f"(d[59]), "+f"(d[60]), "+f"(d[61]), "+f"(d[62]),
        "+f"(d[63])
      : "l"(a_desc), "l"(b_desc));
}

// Rows [row0, row0 + kRows) x k [k0, k0 + 64) into the swizzled tile.
template <int kRows>
__device__ __forceinline__ void LoadSwizzled(char* tile, const uint16_t* g, int rows, int k,
                                             int row0, int k0) {
#pragma unroll
  for (int c = threadIdx.x; c < kRows * 8; c += kWgThreads) {
    const int r = c / 8;
    const int chunk = c % 8;
    const int gk = k0 + chunk * 8;
    const bool valid = row0 + r < rows && gk < k;
    const uint16_t* src = valid ? g + static_cast<int64_t>(row0 + r) * k + gk : g;
    CpAsync16(tile + r * 128 + ((chunk ^ (r & 7)) << 4), src, valid);
  }
}
#endif

__global__ void __launch_bounds__(kWgThreads)
    GemmWgmmaKernel(const uint16_t* __restrict__ a, const uint16_t* __restrict__ b,
                    const float* __restrict__ bias, float* __restrict__ c, int m, int n, int k,
                    int64_t c_stride) {
#ifdef TPS_HAVE_WGMMA
  char* smem_raw = DynamicSharedMemory<char>();
  char* smem =
      reinterpret_cast<char*>((reinterpret_cast<uintptr_t>(smem_raw) + 1023) & ~uintptr_t{1023});
  const int m0 = blockIdx.y * kWgM;
  const int n0 = blockIdx.x * kWgN;
  const int ktiles = (k + kWgK - 1) / kWgK;
  auto tile_a = [&](int s) { return smem + s * kStageBytes; };
  auto tile_b = [&](int s) { return smem + s * kStageBytes + kATileBytes; };

  float d[64];
#pragma unroll
  for (int i = 0; i < 64; ++i) d[i] = 0.0f;

#pragma unroll
  for (int s = 0; s < kWgStages - 1; ++s) {
    if (s < ktiles) {
      LoadSwizzled<kWgM>(tile_a(s), a, m, k, m0, s * kWgK);
      LoadSwizzled<kWgN>(tile_b(s), b, n, k, n0, s * kWgK);
    }
    CpAsyncCommit();
  }
  for (int kt = 0; kt < ktiles; ++kt) {
    CpAsyncWait<kWgStages - 2>();
    asm volatile("fence.proxy.async.shared::cta;\n" ::: "memory");
    __syncthreads();  // every thread's copies of tile kt are visible; stage kt - 1 is free
    const int next = kt + kWgStages - 1;
    if (next < ktiles) {
      LoadSwizzled<kWgM>(tile_a(next % kWgStages), a, m, k, m0, next * kWgK);
      LoadSwizzled<kWgN>(tile_b(next % kWgStages), b, n, k, n0, next * kWgK);
    }
    CpAsyncCommit();
    const uint32_t sa = SharedAddress(tile_a(kt % kWgStages));
    const uint32_t sb = SharedAddress(tile_b(kt % kWgStages));
    asm volatile("wgmma.fence.sync.aligned;\n" ::: "memory");
#pragma unroll
    for (int kk = 0; kk < kWgK / 16; ++kk) {
      WgmmaM64N128K16(d, Descriptor(sa + kk * 32), Descriptor(sb + kk * 32));
    }
    asm volatile("wgmma.commit_group.sync.aligned;\n" ::: "memory");
    asm volatile("wgmma.wait_group.sync.aligned 0;\n" ::: "memory");
  }
  CpAsyncWait<0>();

  // Accumulators: warp w owns rows 16w .. 16w + 15; per 8-column group j,
  // (row lane/4, cols 2*(lane%4) + {0,1}) and row + 8, as mma.sync m16n8.
  const int warp = threadIdx.x >> 5;
  const int lane = threadIdx.x & 31;
#pragma unroll
  for (int j = 0; j < kWgN / 8; ++j) {
#pragma unroll
    for (int e = 0; e < 4; ++e) {
      const int row = m0 + warp * 16 + lane / 4 + (e / 2) * 8;
      const int col = n0 + j * 8 + (lane % 4) * 2 + (e % 2);
      if (row < m && col < n)
        c[row * c_stride + col] = d[j * 4 + e] + (bias != nullptr ? bias[col] : 0.0f);
    }
  }
#else
  // Built for an architecture without wgmma: the host never launches this.
  (void)a;
  (void)b;
  (void)bias;
  (void)c;
  (void)m;
  (void)n;
  (void)k;
  (void)c_stride;
#endif
}

}  // namespace

absl::Status GemmBf16Wgmma(const GemmBf16Params& p, const Stream& stream) {
  if (p.m < 0 || p.n < 0 || p.k <= 0) return absl::InvalidArgumentError("GemmBf16Wgmma: bad shape");
  if (p.k % 8 != 0) return absl::InvalidArgumentError("GemmBf16Wgmma: k must be a multiple of 8");
  if (p.m == 0 || p.n == 0) return absl::OkStatus();
  if (p.a == nullptr || p.b == nullptr || p.c == nullptr)
    return absl::InvalidArgumentError("GemmBf16Wgmma: null pointer");
  if ((reinterpret_cast<uintptr_t>(p.a) | reinterpret_cast<uintptr_t>(p.b)) % 16 != 0) {
    return absl::InvalidArgumentError("GemmBf16Wgmma: a and b must be 16-byte aligned");
  }
  int device = 0, major = 0;
  TPS_CUDA_RETURN_IF_ERROR(cudaGetDevice(&device));
  TPS_CUDA_RETURN_IF_ERROR(
      cudaDeviceGetAttribute(&major, cudaDevAttrComputeCapabilityMajor, device));
  if (major != 9)
    return absl::FailedPreconditionError("GemmBf16Wgmma needs an sm_90 (Hopper) device");
  const int64_t c_stride = p.c_stride == 0 ? p.n : p.c_stride;
  if (c_stride < p.n) return absl::InvalidArgumentError("GemmBf16Wgmma: c_stride below n");
  if ((p.m + kWgM - 1) / kWgM > 65535)
    return absl::InvalidArgumentError("GemmBf16Wgmma: m too large for one launch");
  TPS_CUDA_RETURN_IF_ERROR(cudaFuncSetAttribute(GemmWgmmaKernel,
                                                cudaFuncAttributeMaxDynamicSharedMemorySize,
                                                static_cast<int>(kWgSharedBytes)));
  const dim3 grid((p.n + kWgN - 1) / kWgN, (p.m + kWgM - 1) / kWgM);
  GemmWgmmaKernel<<<grid, kWgThreads, kWgSharedBytes,
                    static_cast<cudaStream_t>(stream.cuda_stream)>>>(p.a, p.b, p.bias, p.c, p.m,
                                                                     p.n, p.k, c_stride);
  return LaunchStatus("GemmWgmmaKernel");
}

}  // namespace tpserve::kernels::cuda
