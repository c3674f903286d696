// Device experiment, not part of the Bazel build: variants of the skinny
// GEMM on Q4_1 weights (device layout, weight_layout.h), timed on one GPU in
// CUDA graphs of 20 launches, each checked against today's kernel's
// arithmetic. Batch 1: the layout gemm.cu adopted (8 warps, 2048-column
// tiles, weight loads before the barriers) next to the earlier one. Batch
// 16: weight rows per warp, which did not pay (docs/benchmarks.md, "GPU").
// Results: docs/data/gpu/h100_2026-12-05/skinny_q4_sweep2.txt (this file);
// skinny_q4_sweep.txt came from an earlier revision with batch-1 variants
// only (4096-column tiles, factored d/m). On the GPU machine:
//   nvcc -O3 -std=c++17 -arch=sm_90a --expt-relaxed-constexpr -I. \
//     kernels/cuda/experiments/skinny_q4_sweep.cu -o /tmp/sweep && /tmp/sweep
#include <cuda_runtime.h>

#include <cmath>
#include <cstdint>
#include <cstdio>
#include <random>
#include <vector>

#include "kernels/cuda/block_reduce.cuh"
#include "kernels/cuda/quant.cuh"
#include "kernels/cuda/staged_x.cuh"

using namespace tpserve;
using namespace tpserve::kernels::cuda;

namespace {

template <int kTile>
__device__ __forceinline__ void Stage(float* xs, const float* x, int k0, int width) {
  for (int i = threadIdx.x; i < width / 4; i += blockDim.x) {
    const float4 v = __ldg(reinterpret_cast<const float4*>(x + k0) + i);
    *reinterpret_cast<float4*>(xs + Padded(4 * i)) = v;
  }
}

// A: today's kernel (kRows = 1): 4 warps, 1024-value tiles, load after the barrier.
template <int kWarps, int kTile>
__global__ void __launch_bounds__(kWarps * 32) VariantA(const float* x, const void* w, float* y, int n, int k) {
  extern __shared__ float xs[];
  const int lane = threadIdx.x & 31;
  const int row = blockIdx.x * kWarps + (threadIdx.x >> 5);
  const bool active = row < n;
  const PackedQuantRows pw = PackedRows<DType::kQ4_1>(w, n, k);
  float acc = 0.0f;
  for (int k0 = 0; k0 < k; k0 += kTile) {
    const int width = min(kTile, k - k0);
    __syncthreads();
    Stage<kTile>(xs, x, k0, width);
    __syncthreads();
    if (!active) continue;
    const uint4* chunks = pw.quants + (static_cast<int64_t>(row) * k + k0) / 32;
    const int64_t block0 = static_cast<int64_t>(row) * pw.blocks_per_row + k0 / 32;
    for (int c = lane; c < width / 32; c += 32) {
      float d, m, v[32];
      LoadScales<DType::kQ4_1>(pw, block0 + c, &d, &m);
      DequantChunk<DType::kQ4_1>(__ldg(chunks + c), d, m, v);
      acc += DotStaged<32>(v, xs + Padded(c * 32));
    }
  }
  if (!active) return;
  const float s = WarpSum(acc);
  if (lane == 0) y[row] = s;
}

// Sum over one chunk: d * sum(q_i x_i) + m * sum(x_i), q_i from PRMT-built
// floats (0x4B000000 | q, minus 2^23: exact, no I2F).
__device__ __forceinline__ float ChunkDot(uint4 q, uint32_t dm, const float* xs) {
  const float d = HalfBitsToFloat(static_cast<uint16_t>(dm & 0xFFFFu));
  const float m = HalfBitsToFloat(static_cast<uint16_t>(dm >> 16));
  const uint32_t words[4] = {q.x, q.y, q.z, q.w};
  const float4* xv = reinterpret_cast<const float4*>(xs);
  float sq = 0.0f, sx = 0.0f;
#pragma unroll
  for (int i = 0; i < 4; ++i) {
    const uint32_t lo = words[i] & 0x0F0F0F0Fu;
    const uint32_t hi = (words[i] >> 4) & 0x0F0F0F0Fu;
    const float4 xl = xv[i];      // values 4i .. 4i+3
    const float4 xh = xv[4 + i];  // values 16 + 4i .. (chunk values 16.. are hi nibbles)
    const float xla[4] = {xl.x, xl.y, xl.z, xl.w};
    const float xha[4] = {xh.x, xh.y, xh.z, xh.w};
#pragma unroll
    for (int b = 0; b < 4; ++b) {
      const float fl = __uint_as_float(__byte_perm(lo, 0x4B000000u, 0x7540 + b)) - 8388608.0f;
      const float fh = __uint_as_float(__byte_perm(hi, 0x4B000000u, 0x7540 + b)) - 8388608.0f;
      sq = fmaf(fl, xla[b], sq);
      sq = fmaf(fh, xha[b], sq);
      sx += xla[b] + xha[b];
    }
  }
  return fmaf(d, sq, m * sx);
}

// B/C/D: weight loads (kPer chunks per lane) issued before the tile's
// barriers; kFast: ChunkDot instead of DequantChunk + DotStaged.
template <int kWarps, int kTile, bool kFast>
__global__ void __launch_bounds__(kWarps * 32) VariantB(const float* x, const void* w, float* y, int n, int k) {
  extern __shared__ float xs[];
  constexpr int kPer = kTile / 32 / 32;
  const int lane = threadIdx.x & 31;
  const int row = blockIdx.x * kWarps + (threadIdx.x >> 5);
  const bool active = row < n;
  const PackedQuantRows pw = PackedRows<DType::kQ4_1>(w, n, k);
  const uint4* chunks = pw.quants + static_cast<int64_t>(active ? row : 0) * k / 32;
  const uint32_t* scales = reinterpret_cast<const uint32_t*>(pw.scales) +
                           static_cast<int64_t>(active ? row : 0) * pw.blocks_per_row;
  float acc = 0.0f;
  for (int k0 = 0; k0 < k; k0 += kTile) {
    const int width = min(kTile, k - k0);
    uint4 q[kPer];
    uint32_t dm[kPer];
#pragma unroll
    for (int i = 0; i < kPer; ++i) {
      const int c = lane + 32 * i;
      if (active && c < width / 32) {
        q[i] = __ldg(chunks + k0 / 32 + c);
        dm[i] = __ldg(scales + k0 / 32 + c);
      }
    }
    __syncthreads();
    Stage<kTile>(xs, x, k0, width);
    __syncthreads();
    if (!active) continue;
#pragma unroll
    for (int i = 0; i < kPer; ++i) {
      const int c = lane + 32 * i;
      if (c < width / 32) {
        if constexpr (kFast) {
          acc += ChunkDot(q[i], dm[i], xs + Padded(c * 32));
        } else {
          const float d = HalfBitsToFloat(static_cast<uint16_t>(dm[i] & 0xFFFFu));
          const float m = HalfBitsToFloat(static_cast<uint16_t>(dm[i] >> 16));
          float v[32];
          DequantChunk<DType::kQ4_1>(q[i], d, m, v);
          acc += DotStaged<32>(v, xs + Padded(c * 32));
        }
      }
    }
  }
  if (!active) return;
  const float s = WarpSum(acc);
  if (lane == 0) y[row] = s;
}

// Batch 16: kR weight rows per warp, so each staged x value read from
// shared memory feeds kR FMAs (today: kR = 1, 16 warps). kChunkSums: per-chunk
// partial sums added into the accumulators (today's order, bit-identical per
// row); otherwise FMAs straight into the accumulators.
template <int kWarps, int kR, bool kChunkSums>
__global__ void __launch_bounds__(kWarps * 32) Batch16(const float* x, const void* w, float* y, int m, int n, int k) {
  extern __shared__ float xs[];
  constexpr int kRows = 16, kTile = 1024, kPitch = kTile + kTile / 8;
  const int lane = threadIdx.x & 31;
  const int row0 = (blockIdx.x * kWarps + (threadIdx.x >> 5)) * kR;
  const int rows_here = min(kRows, m - static_cast<int>(blockIdx.y) * kRows);
  const float* xrow0 = x + static_cast<int64_t>(blockIdx.y) * kRows * k;
  const PackedQuantRows pw = PackedRows<DType::kQ4_1>(w, n, k);
  float acc[kRows][kR];
#pragma unroll
  for (int r = 0; r < kRows; ++r)
#pragma unroll
    for (int rr = 0; rr < kR; ++rr) acc[r][rr] = 0.0f;
  for (int k0 = 0; k0 < k; k0 += kTile) {
    const int width = min(kTile, k - k0);
    __syncthreads();
    for (int i = threadIdx.x; i < rows_here * (width / 4); i += blockDim.x) {
      const int r = i / (width / 4), c = (i % (width / 4)) * 4;
      *reinterpret_cast<float4*>(xs + r * kPitch + Padded(c)) =
          __ldg(reinterpret_cast<const float4*>(xrow0 + static_cast<int64_t>(r) * k + k0 + c));
    }
    __syncthreads();
    if (row0 >= n) continue;
    for (int c = lane; c < width / 32; c += 32) {
      uint4 q[kR];
      float d[kR], mn[kR];
#pragma unroll
      for (int rr = 0; rr < kR; ++rr) {
        const int row = min(row0 + rr, n - 1);
        q[rr] = __ldg(pw.quants + (static_cast<int64_t>(row) * k + k0) / 32 + c);
        LoadScales<DType::kQ4_1>(pw, static_cast<int64_t>(row) * pw.blocks_per_row + k0 / 32 + c, &d[rr], &mn[rr]);
      }
      float s[kRows][kR];
#pragma unroll
      for (int r = 0; r < kRows; ++r)
#pragma unroll
        for (int rr = 0; rr < kR; ++rr) s[r][rr] = 0.0f;
#pragma unroll
      for (int g = 0; g < 8; ++g) {
        float wv[kR][4];
#pragma unroll
        for (int rr = 0; rr < kR; ++rr) {
          const uint32_t words[4] = {q[rr].x, q[rr].y, q[rr].z, q[rr].w};
#pragma unroll
          for (int i = 0; i < 4; ++i) {
            const int v = 4 * g + i;  // chunk value: byte v % 16, low nibble below 16
            const int byte = static_cast<int>((words[(v % 16) / 4] >> (8 * (v % 4))) & 0xFFu);
            const int nib = v < 16 ? (byte & 0xF) : (byte >> 4);
            wv[rr][i] = __fadd_rn(__fmul_rn(d[rr], static_cast<float>(nib)), mn[rr]);
          }
        }
        const float* xc = xs + Padded(c * 32) + 4 * g;
#pragma unroll
        for (int r = 0; r < kRows; ++r) {
          if (r < rows_here) {
            const float4 xv = *reinterpret_cast<const float4*>(xc + r * kPitch);
#pragma unroll
            for (int rr = 0; rr < kR; ++rr) {
              float& t = kChunkSums ? s[r][rr] : acc[r][rr];
              t = fmaf(wv[rr][0], xv.x, t);
              t = fmaf(wv[rr][1], xv.y, t);
              t = fmaf(wv[rr][2], xv.z, t);
              t = fmaf(wv[rr][3], xv.w, t);
            }
          }
        }
      }
      if constexpr (kChunkSums) {
#pragma unroll
        for (int r = 0; r < kRows; ++r)
#pragma unroll
          for (int rr = 0; rr < kR; ++rr) acc[r][rr] += s[r][rr];
      }
    }
  }
  if (row0 >= n) return;
#pragma unroll
  for (int r = 0; r < kRows; ++r) {
#pragma unroll
    for (int rr = 0; rr < kR; ++rr) {
      const float t = WarpSum(acc[r][rr]);
      if (lane == 0 && r < rows_here && row0 + rr < n) y[static_cast<int64_t>(blockIdx.y * kRows + r) * n + row0 + rr] = t;
    }
  }
}

struct Shape {
  const char* name;
  int n, k;
};

template <typename Kernel, typename... Args>
float TimeUs(Kernel kernel, dim3 grid, int block_threads, int shared, Args... args) {
  cudaFuncSetAttribute(kernel, cudaFuncAttributeMaxDynamicSharedMemorySize, shared);
  // One CUDA graph of 20 launches, replayed: launch overhead as in the engine.
  cudaStream_t s;
  cudaStreamCreateWithFlags(&s, cudaStreamNonBlocking);
  cudaGraph_t g;
  cudaGraphExec_t ge;
  cudaStreamBeginCapture(s, cudaStreamCaptureModeGlobal);
  for (int i = 0; i < 20; ++i) kernel<<<grid, block_threads, shared, s>>>(args...);
  cudaStreamEndCapture(s, &g);
  cudaGraphInstantiate(&ge, g, 0);
  cudaGraphLaunch(ge, s);
  cudaStreamSynchronize(s);
  cudaEvent_t a, b;
  cudaEventCreate(&a);
  cudaEventCreate(&b);
  cudaEventRecord(a, s);
  for (int i = 0; i < 25; ++i) cudaGraphLaunch(ge, s);
  cudaEventRecord(b, s);
  cudaEventSynchronize(b);
  float ms = 0;
  cudaEventElapsedTime(&ms, a, b);
  cudaGraphExecDestroy(ge);
  cudaGraphDestroy(g);
  cudaStreamDestroy(s);
  cudaEventDestroy(a);
  cudaEventDestroy(b);
  return ms * 1e3f / 500.0f;
}

}  // namespace

int main() {
  const Shape shapes[] = {{"smol q/o 576x576", 576, 576},      {"smol gate_up 3072x576", 3072, 576},
                          {"smol down 576x1536", 576, 1536},   {"smol lm_head 49152x576", 49152, 576},
                          {"1.1B q 2048x2048", 2048, 2048},    {"1.1B gate_up 16384x2048", 16384, 2048},
                          {"1.1B down 2048x8192", 2048, 8192}, {"4096x4096", 4096, 4096},
                          {"14336x4096", 14336, 4096},         {"4096x14336", 4096, 14336}};
  std::mt19937 rng(7);
  cudaDeviceProp prop;
  cudaGetDeviceProperties(&prop, 0);
  std::printf("device: %s, %d SMs; each cell: us per call in a CUDA graph of 20 launches, weight GB/s\n",
              prop.name, prop.multiProcessorCount);
  const char* header1 = "| batch 1 | weight MB | A today 4w/1024 | G 8w/2048 loads first | F 8w/2048 loads first, factored d/m | rel err vs A |";
  const char* header16 = "| batch 16 | weight MB | today 16w x 1 row | 16w x 2 rows | 8w x 2 rows | 8w x 4 rows | 4w x 4 rows | 8w x 4 rows, no chunk sums | rel err vs today |";
  for (int batch : {1, 16}) {
    std::printf("\n%s\n", batch == 1 ? header1 : header16);
    for (const Shape& sh : shapes) {
      const int64_t blocks = static_cast<int64_t>(sh.n) * sh.k / 32;
      const size_t wbytes = blocks * 20;
      std::vector<uint8_t> hw(wbytes);
      for (auto& b : hw) b = static_cast<uint8_t>(rng());
      // Sane f16 scales: d in [0.001, 0.01], m in [-0.08, 0].
      std::uniform_real_distribution<float> ud(0.001f, 0.01f), um(-0.08f, 0.0f);
      uint16_t* sc = reinterpret_cast<uint16_t*>(hw.data() + blocks * 16);
      for (int64_t i = 0; i < blocks; ++i) {
        __half d = __float2half(ud(rng)), m = __float2half(um(rng));
        sc[2 * i] = *reinterpret_cast<uint16_t*>(&d);
        sc[2 * i + 1] = *reinterpret_cast<uint16_t*>(&m);
      }
      std::vector<float> hx(static_cast<size_t>(batch) * sh.k);
      std::normal_distribution<float> nd;
      for (float& v : hx) v = nd(rng);
      void* w;
      float *x, *y;
      const size_t ny = static_cast<size_t>(batch) * sh.n;
      cudaMalloc(&w, wbytes);
      cudaMalloc(&x, hx.size() * 4);
      cudaMalloc(&y, ny * 4);
      cudaMemcpy(w, hw.data(), wbytes, cudaMemcpyHostToDevice);
      cudaMemcpy(x, hx.data(), hx.size() * 4, cudaMemcpyHostToDevice);
      std::vector<float> ref(ny), got(ny);
      std::vector<float> us;
      double worst = 0;
      auto check = [&]() {
        cudaMemcpy(got.data(), y, ny * 4, cudaMemcpyDeviceToHost);
        if (us.size() == 1) {
          ref = got;
          return;
        }
        double num = 0, den = 0;
        for (size_t i = 0; i < ny; ++i) {
          num += (got[i] - ref[i]) * (got[i] - ref[i]);
          den += ref[i] * ref[i];
        }
        worst = std::fmax(worst, std::sqrt(num / den));
      };
      auto g1 = [&](int rows_per_block) { return dim3((sh.n + rows_per_block - 1) / rows_per_block); };
      const int sh1024 = 1152 * 4, sh2048 = 2304 * 4, sh16 = 16 * 1152 * 4;
      if (batch == 1) {
        us.push_back(TimeUs(VariantA<4, 1024>, g1(4), 128, sh1024, x, w, y, sh.n, sh.k));
        check();
        us.push_back(TimeUs(VariantB<8, 2048, false>, g1(8), 256, sh2048, x, w, y, sh.n, sh.k));
        check();
        us.push_back(TimeUs(VariantB<8, 2048, true>, g1(8), 256, sh2048, x, w, y, sh.n, sh.k));
        check();
      } else {
        // kernel, warps, weight rows per warp
        auto b16 = [&](auto kernel, int warps, int rows) {
          us.push_back(TimeUs(kernel, g1(warps * rows), 32 * warps, sh16, x, w, y, batch, sh.n, sh.k));
          check();
        };
        b16(Batch16<16, 1, true>, 16, 1);
        b16(Batch16<16, 2, true>, 16, 2);
        b16(Batch16<8, 2, true>, 8, 2);
        b16(Batch16<8, 4, true>, 8, 4);
        b16(Batch16<4, 4, true>, 4, 4);
        b16(Batch16<8, 4, false>, 8, 4);
      }
      std::printf("| %s | %.2f |", sh.name, wbytes / 1e6);
      for (float t : us) std::printf(" %.1f us %.0f GB/s |", t, wbytes / (t * 1e-6) / 1e9);
      std::printf(" %.1e | %s\n", worst, cudaGetErrorString(cudaGetLastError()));
      cudaFree(w);
      cudaFree(x);
      cudaFree(y);
    }
  }
  return 0;
}
