// fusion_bench: what a kernel boundary costs in a batch-1 decode step, and
// whether one persistent kernel with grid barriers would do better.
//
// The 2026-12-05 H100 run put a batch-1 decode step of the 1.1B model at
// 0.15 of the weight-streaming roofline, about 100 kernels of 2.5-14 us
// each (docs/benchmarks.md): launch and latency, not bytes. Fusing a whole
// step into one kernel replaces each boundary with a grid barrier; this
// measures both on the same work before anyone builds that. The work: per
// layer, four dependent GEMVs of 4-bit weights in the 1.1B Llama shape
// (q/k/v 2560 x 2048, o 2048 x 2048, gate/up 2 x 5632 x 2048 with SwiGLU,
// down 2048 x 5632), 16 layers; no attention, norms or residual adds
// (their launches are the same kind of boundary). Rows:
//   - one kernel per GEMV, replayed from a CUDA graph, plain and with
//     programmatic dependent launch (the engine's decode step today), and
//     with PDL where each kernel also prefetches the next GEMV's weights
//     into L2 before its wait (cp.async.bulk.prefetch, kernels/cuda/prefetch.cuh);
//   - one cooperative kernel for all 64 GEMVs, a grid barrier after each,
//     with as many blocks as fit and with one per SM, each also with the
//     next GEMV's weights prefetched at every phase's start;
//   - the boundaries alone: empty kernels of the same grids, and grid
//     barriers with no work, in us each.
// Both ways run the same device code per row, so they should give the same
// bits; each run compares them, and a CPU reference checks one step of each. Not on the engine's
// path.
//
//   fusion_bench [--layers=16] [--hidden=2048] [--qkv=2560] [--ffn=5632]
#include "kernels/cuda/fusion_bench.h"

#include <cuda_runtime.h>

#include <cmath>
#include <cstdint>
#include <cstdio>
#include <cstdlib>
#include <cstring>
#include <random>
#include <string>
#include <vector>

#include "kernels/cuda/bench_util.h"
#include "kernels/cuda/cuda_ops.h"

namespace fb = tpserve::kernels::cuda::fusion_bench;
using tpserve::kernels::cuda::Fmt;
using tpserve::kernels::cuda::MeasureCopyBandwidth;
using tpserve::kernels::cuda::PrintRow;
using tpserve::kernels::cuda::TimeMs;
using tpserve::kernels::cuda::Work;

namespace {

struct Shape {
  int layers = 16, hidden = 2048, qkv = 2560, ffn = 5632;
};

// One weight matrix on the host and the device.
struct Matrix {
  std::vector<uint8_t> w;  // rows x k / 2
  std::vector<float> scale;
  uint8_t* d_w = nullptr;
  float* d_scale = nullptr;
};

// Uploads on `stream` (a non-blocking stream is not ordered after
// cudaMemcpy's legacy-stream copies: the emulator caught this here).
template <typename T>
void Upload(T* dst, const T* src, size_t count, cudaStream_t stream) {
  cudaMemcpyAsync(dst, src, count * sizeof(T), cudaMemcpyHostToDevice, stream);
  cudaStreamSynchronize(stream);
}

Matrix MakeMatrix(int rows, int k, std::mt19937& rng, cudaStream_t stream) {
  Matrix m;
  m.w.resize(static_cast<size_t>(rows) * k / 2);
  for (uint8_t& b : m.w) b = static_cast<uint8_t>(rng());
  // Outputs of about unit size for inputs of unit size: (nibble - 8) has a
  // standard deviation of about 4.6.
  m.scale.assign(rows, 1.0f / (4.6f * std::sqrt(static_cast<float>(k))));
  cudaMalloc(&m.d_w, m.w.size());
  cudaMalloc(&m.d_scale, m.scale.size() * sizeof(float));
  Upload(m.d_w, m.w.data(), m.w.size(), stream);
  Upload(m.d_scale, m.scale.data(), m.scale.size(), stream);
  return m;
}

// The phase on the host, in double: the reference.
void HostPhase(const Matrix& m, const std::vector<double>& in, int rows, int k, fb::Op op,
               std::vector<double>* out) {
  auto dot = [&](int r) {
    double s = 0.0;
    for (int j = 0; j < k; ++j) {
      const uint8_t b = m.w[static_cast<size_t>(r) * k / 2 + j / 2];
      s += static_cast<double>((j % 2 == 0 ? (b & 15) : (b >> 4)) - 8) * in[j];
    }
    return s * m.scale[r];
  };
  out->resize(std::max<size_t>(out->size(), rows));
  for (int r = 0; r < rows; ++r) {
    const double g = dot(r);
    (*out)[r] = op == fb::Op::kSwiglu ? g / (1.0 + std::exp(-g)) * dot(r + rows) : g;
  }
}

int Flag(int argc, char** argv, const char* name, int fallback) {
  const size_t n = std::strlen(name);
  for (int i = 1; i < argc; ++i) {
    if (std::strncmp(argv[i], name, n) == 0 && argv[i][n] == '=') return std::atoi(argv[i] + n + 1);
  }
  return fallback;
}

}  // namespace

int main(int argc, char** argv) {
  Shape s;
  s.layers = Flag(argc, argv, "--layers", s.layers);
  s.hidden = Flag(argc, argv, "--hidden", s.hidden);
  s.qkv = Flag(argc, argv, "--qkv", s.qkv);
  s.ffn = Flag(argc, argv, "--ffn", s.ffn);
  if (s.layers < 1 || s.hidden % 32 != 0 || s.ffn % 32 != 0 || s.qkv < s.hidden) {
    std::fprintf(stderr, "fusion_bench: hidden and ffn must be multiples of 32, qkv >= hidden\n");
    return 2;
  }
  const int max_k = std::max(s.hidden, s.ffn);
  cudaStream_t stream;
  if (cudaStreamCreateWithFlags(&stream, cudaStreamNonBlocking) != cudaSuccess) {
    PrintRow("decode fusion", "skipped: no CUDA device", "", "", -1.0);
    return 0;
  }

  std::mt19937 rng(7);
  float *x, *qkv, *act;
  cudaMalloc(&x, sizeof(float) * s.hidden);
  cudaMalloc(&qkv, sizeof(float) * s.qkv);
  cudaMalloc(&act, sizeof(float) * s.ffn);
  std::vector<Matrix> mats;
  std::vector<fb::Phase> phases;
  double weight_bytes = 0.0;
  for (int l = 0; l < s.layers; ++l) {
    struct Spec {
      int rows, k;
      const float* in;
      float* out;
      fb::Op op;
    };
    for (const Spec& p : {Spec{s.qkv, s.hidden, x, qkv, fb::Op::kStore},
                          Spec{s.hidden, s.hidden, qkv, x, fb::Op::kStore},
                          Spec{s.ffn, s.hidden, x, act, fb::Op::kSwiglu},
                          Spec{s.hidden, s.ffn, act, x, fb::Op::kStore}}) {
      const int stored_rows = p.op == fb::Op::kSwiglu ? 2 * p.rows : p.rows;
      mats.push_back(MakeMatrix(stored_rows, p.k, rng, stream));
      phases.push_back({mats.back().d_w, mats.back().d_scale, p.in, p.out, p.rows, p.k, p.op});
      weight_bytes += static_cast<double>(stored_rows) * p.k / 2;
    }
  }
  const int n = static_cast<int>(phases.size());
  fb::Phase* d_phases;
  cudaMalloc(&d_phases, sizeof(fb::Phase) * n);
  Upload(d_phases, phases.data(), n, stream);

  // One step from x0 on the host.
  std::vector<float> x0(s.hidden);
  for (float& v : x0) v = std::uniform_real_distribution<float>(-1.0f, 1.0f)(rng);
  std::vector<double> hx(x0.begin(), x0.end()), hqkv, hact;
  for (int l = 0; l < s.layers; ++l) {
    const Matrix* m = &mats[4 * l];
    HostPhase(m[0], hx, s.qkv, s.hidden, fb::Op::kStore, &hqkv);
    HostPhase(m[1], hqkv, s.hidden, s.hidden, fb::Op::kStore, &hx);
    HostPhase(m[2], hx, s.ffn, s.hidden, fb::Op::kSwiglu, &hact);
    HostPhase(m[3], hact, s.hidden, s.ffn, fb::Op::kStore, &hx);
  }
  double scale = 0.0;
  for (double v : hx) scale = std::max(scale, std::fabs(v));
  // One step from x0 on the device: its largest difference from the host's,
  // relative to the largest |x|, and the result's bits.
  auto check = [&](auto&& step, std::vector<float>* got) {
    Upload(x, x0.data(), x0.size(), stream);
    step();
    got->resize(s.hidden);
    cudaMemcpyAsync(got->data(), x, sizeof(float) * s.hidden, cudaMemcpyDeviceToHost, stream);
    cudaStreamSynchronize(stream);
    double worst = 0.0;
    for (int i = 0; i < s.hidden; ++i) worst = std::max(worst, std::fabs((*got)[i] - hx[i]));
    return worst / std::max(scale, 1e-30);
  };

  const double copy_bw = MeasureCopyBandwidth(stream, size_t{1} << 30);
  const double roofline_us = weight_bytes / copy_bw * 1e6;
  const std::string what =
      Fmt("decode fusion %d layers x 4 GEMVs, 4-bit, hidden %d, ffn %d", s.layers, s.hidden, s.ffn);
  const std::string baseline = Fmt("roofline %.1f us (%.0f MB at copy bandwidth %.0f GB/s)",
                                   roofline_us, weight_bytes / 1e6, copy_bw / 1e9);
  const Work work{.bytes = weight_bytes};

  // The same phases, each prefetching the next one's weights into L2 (the
  // last the first's: the step is replayed back to back).
  std::vector<fb::Phase> prefetched = phases;
  for (int i = 0; i < n; ++i) {
    const Matrix& next = mats[(i + 1) % n];
    prefetched[i].prefetch.Add(next.d_w, static_cast<int64_t>(next.w.size()));
    prefetched[i].prefetch.Add(next.d_scale, static_cast<int64_t>(next.scale.size() * 4));
  }
  fb::Phase* d_prefetched;
  cudaMalloc(&d_prefetched, sizeof(fb::Phase) * n);
  Upload(d_prefetched, prefetched.data(), n, stream);
  auto status = [](double e, bool same) {
    return e < 1e-4 && same && cudaGetLastError() == cudaSuccess
               ? std::string("ok")
               : Fmt("MISMATCH (%.2g of max |x| from the host%s)", e,
                     same ? "" : "; bits differ from the plain kernel per GEMV");
  };

  std::vector<float> per_phase_x;
  const double err =
      check([&] { fb::LaunchPerPhase(phases.data(), n, max_k, stream, false); }, &per_phase_x);
  struct PerPhaseWay {
    bool pdl, prefetch;
    const char* label;
  };
  for (const PerPhaseWay& way :
       {PerPhaseWay{false, false, "graph"}, PerPhaseWay{true, false, "graph, PDL"},
        PerPhaseWay{true, true, "graph, PDL, next GEMV prefetched to L2"}}) {
    const std::string row = what + Fmt(": kernel per GEMV (%s)", way.label);
    if (way.pdl && !tpserve::kernels::cuda::ProgrammaticLaunchSupported()) {
      PrintRow(row, "skipped: programmatic launch needs compute capability 9.0", "", "", -1.0);
      continue;
    }
    const fb::Phase* ph = way.prefetch ? prefetched.data() : phases.data();
    std::vector<float> got = per_phase_x;
    const double e = way.prefetch
                         ? check([&] { fb::LaunchPerPhase(ph, n, max_k, stream, way.pdl); }, &got)
                         : err;
    cudaGraph_t graph;
    cudaGraphExec_t exec;
    cudaStreamBeginCapture(stream, cudaStreamCaptureModeThreadLocal);
    fb::LaunchPerPhase(ph, n, max_k, stream, way.pdl);
    cudaStreamEndCapture(stream, &graph);
    if (cudaGraphInstantiate(&exec, graph, 0) != cudaSuccess) {
      PrintRow(row, "CUDA ERROR", "", "", -1.0);
      continue;
    }
    const double ms = TimeMs(stream, work, [&] { cudaGraphLaunch(exec, stream); });
    PrintRow(row, status(e, got == per_phase_x), Fmt("%.1f us per step", ms * 1e3), baseline,
             roofline_us / (ms * 1e3));
    cudaGraphExecDestroy(exec);
    cudaGraphDestroy(graph);
    if (way.prefetch) continue;  // the boundaries alone: once per launch kind
    cudaGraph_t empty_graph;
    cudaGraphExec_t empty_exec;
    cudaStreamBeginCapture(stream, cudaStreamCaptureModeThreadLocal);
    fb::LaunchEmptyPerPhase(phases.data(), n, stream, way.pdl);
    cudaStreamEndCapture(stream, &empty_graph);
    if (cudaGraphInstantiate(&empty_exec, empty_graph, 0) == cudaSuccess) {
      const double empty_ms = TimeMs(stream, Work{}, [&] { cudaGraphLaunch(empty_exec, stream); });
      PrintRow(Fmt("decode fusion: kernel boundary, %d empty kernels of the GEMVs' grids (%s)", n,
                   way.label),
               "ok", Fmt("%.2f us each", empty_ms * 1e3 / n), "", -1.0);
      cudaGraphExecDestroy(empty_exec);
    }
    cudaGraphDestroy(empty_graph);
  }

  // The persistent kernel at every block the device holds at once, and at
  // one block per SM (fewer blocks to meet at each barrier, fewer warps to
  // stream with); without and with the next phase's weights prefetched.
  const int most = fb::PersistentBlocks(max_k);
  int device = 0, sms = 0;
  cudaGetDevice(&device);
  cudaDeviceGetAttribute(&sms, cudaDevAttrMultiProcessorCount, device);
  if (most == 0) {
    PrintRow(what + ": persistent kernel, grid barrier per GEMV",
             "skipped: no cooperative launch here", "", "", -1.0);
  }
  for (const int blocks : {most, sms}) {
    if (most == 0 || (blocks == sms && sms == most)) break;
    for (const bool prefetch : {false, true}) {
      const fb::Phase* ph = prefetch ? d_prefetched : d_phases;
      std::vector<float> got;
      const double e = check([&] { fb::LaunchPersistent(ph, n, max_k, blocks, stream); }, &got);
      const std::string st = status(e, got == per_phase_x);
      const double ms =
          TimeMs(stream, work, [&] { fb::LaunchPersistent(ph, n, max_k, blocks, stream); });
      PrintRow(what + Fmt(": persistent kernel, grid barrier per GEMV (%d blocks%s)", blocks,
                          prefetch ? ", next GEMV prefetched to L2" : ""),
               st, Fmt("%.1f us per step", ms * 1e3), baseline, roofline_us / (ms * 1e3));
    }
    const double bms = TimeMs(stream, Work{}, [&] { fb::LaunchBarriers(n, blocks, stream); });
    PrintRow(Fmt("decode fusion: grid barrier alone (%d blocks, %d per launch)", blocks, n),
             cudaGetLastError() == cudaSuccess ? "ok" : "CUDA ERROR",
             Fmt("%.2f us each", bms * 1e3 / n), "", -1.0);
  }
  return 0;
}
