// The CUDA engine's prefill GEMMs (EngineOptions::cuda_prefill_gemm): the
// kernels line the worker logs, both experimental wgmma kernels against the
// CPU engine, mma_dequant against mma (bit for bit), a bad kernel name, and
// the bf16 copies the prefill GEMMs multiply (which kernel writes them, and
// which need none). Cases,
// tolerances and models as cuda_engine_parity_test.cc's
// (engine_parity_util.h).
#include <cuda_runtime.h>

#include <algorithm>
#include <cstdint>
#include <cstdio>
#include <memory>
#include <string>
#include <utility>
#include <vector>

#include "absl/strings/str_cat.h"
#include "gtest/gtest.h"
#include "kernels/cuda/cuda_ops.h"
#include "kernels/cuda/device.h"
#include "tests/testmodel/test_model.h"
#include "worker/engine/cuda/engine_parity_util.h"
#include "worker/engine/engine.h"

#if defined(TPSERVE_CUDA_EMU)
#include "kernels/cuda/emu/emu.h"  // GridsRun
#endif

namespace tpserve::cuda_parity {
namespace {

using Logits = std::vector<std::vector<std::vector<float>>>;  // [case][sequence][token id]

// Every case's logits from two one-rank engines, [0] with
// cuda_prefill_gemm `asked`, [1] with "mma"; under the emulator also that
// grids named `kernel...` ran in engine 0's steps and none in engine 1's.
void RunAgainstMma(const ModelSource& model, const std::vector<Case>& cases,
                   const std::string& asked, const char* kernel, Logits got[2]) {
  EnginePair pair;
  const absl::Status made = MakeEnginePair(
      model,
      [&asked](int e) {
        EngineOptions o = Options("cuda");
        o.cuda_prefill_gemm = e == 0 ? asked : "mma";
        return o;
      },
      &pair);
  ASSERT_TRUE(made.ok()) << made;
  for (int e = 0; e < 2; ++e) {
#if defined(TPSERVE_CUDA_EMU)
    const uint64_t before = tpserve_emu::GridsRun(kernel);
#else
    (void)kernel;
#endif
    for (const Case& k : cases) {
      absl::StatusOr<std::vector<std::vector<float>>> l = pair.engines[e]->ForwardLogits(k.batch);
      ASSERT_TRUE(l.ok()) << l.status();
      got[e].push_back(*l);
    }
#if defined(TPSERVE_CUDA_EMU)
    const uint64_t ran = tpserve_emu::GridsRun(kernel) - before;
    if (e == 0) {
      EXPECT_GT(ran, 0u) << asked << " engine: no " << kernel << " ran";
    } else {
      EXPECT_EQ(ran, 0u) << "mma engine: " << kernel << " ran";
    }
#endif
  }
}

// The worker logs Engine::kernels() at start: it names the prefill GEMM and
// whether programmatic launch is on, and says so when an option asked for
// something this device lacks (wgmma below or above 9.x, PDL below 9.0).
TEST(CudaEnginePrefill, KernelsLineSaysWhatThisDeviceRuns) {
  if (::tpserve::kernels::cuda::DeviceCount() == 0) GTEST_SKIP() << "skipped: no CUDA device";
  const std::string path = ModelPaths().front();
  absl::StatusOr<std::unique_ptr<ModelSource>> model = OpenModel(path);
  if (!model.ok()) GTEST_SKIP() << "skipped: no model available: " << model.status();
  const bool wgmma = ::tpserve::kernels::cuda::WgmmaSupported();
  const bool pdl = ::tpserve::kernels::cuda::ProgrammaticLaunchSupported();
  EnginePair pair;  // [0] asks for wgmma, PDL and graphs; [1] for none of them, and mma_dequant
  const absl::Status made = MakeEnginePair(
      **model,
      [](int e) {
        EngineOptions o = Options("cuda");
        o.cuda_prefill_gemm = e == 0 ? "wgmma_tma" : "mma_dequant";
        o.cuda_pdl = e == 0;
        o.cuda_graphs = e == 0;
        return o;
      },
      &pair);
  ASSERT_TRUE(made.ok()) << made;
  const std::string asked = pair.engines[0]->kernels();
  EXPECT_EQ(asked, absl::StrCat("CUDA kernels: prefill GEMMs on ",
                                wgmma ? "wgmma with TMA loads"
                                      : "mma.sync (--cuda_prefill_gemm=wgmma_tma ignored: it "
                                        "needs compute capability 9.x)",
                                ", programmatic dependent launch ",
                                pdl ? "on" : "off (--cuda_pdl needs compute capability 9.0+)",
                                ", decode graphs on"));
  EXPECT_EQ(pair.engines[1]->kernels(),
            "CUDA kernels: prefill GEMMs on mma.sync, quantized weights dequantised in the kernel, "
            "programmatic dependent launch off, decode graphs off");
}

// Prefill GEMMs on the experimental wgmma kernels (EngineOptions::
// cuda_prefill_gemm "wgmma" and "wgmma_tma") against the CPU engine, at
// OneRankMatchesCpuEngine's tolerances, on sm_90 devices; the _emu twin
// cuda_engine_wgmma_test_emu emulates one. Under the emulator also: the
// kernel asked for ran, and its logits have the mma.sync engine's bits (the
// emulated instructions add each k16 step's 16 products in order, and the
// kernels walk k in order; a GPU need not agree).
TEST(CudaEnginePrefill, WgmmaPrefillMatchesCpuEngine) {
  if (::tpserve::kernels::cuda::DeviceCount() == 0) GTEST_SKIP() << "skipped: no CUDA device";
  if (!::tpserve::kernels::cuda::WgmmaSupported()) {
    GTEST_SKIP() << "skipped: the wgmma kernels need an sm_90 device";
  }
  const std::string path = ModelPaths().front();
  absl::StatusOr<std::unique_ptr<ModelSource>> model = OpenModel(path);
  if (!model.ok()) GTEST_SKIP() << "skipped: no model available: " << model.status();
  const std::vector<Case> cases = Cases((*model)->config().vocab_size);
  const auto want = CpuReference(**model, cases, "f32");
  for (const auto& [gemm, kernel] :
       {std::pair<std::string, const char*>{"wgmma", "GemmWgmmaKernel"},
        {"wgmma_tma", "GemmWgmmaTmaKernel"}}) {
    SCOPED_TRACE(gemm);
    Logits got[2];
    RunAgainstMma(**model, cases, gemm, kernel, got);
    if (HasFatalFailure()) return;
    ExpectMatches(cases, want, got[0]);
#if defined(TPSERVE_CUDA_EMU)
    EXPECT_EQ(got[0], got[1]);
#endif
  }
}

// --cuda_prefill_gemm=mma_dequant: the mma.sync kernel dequantises the Q4_1
// weights in its loader instead of multiplying a bf16 copy made per call.
// The same values reach the same mma instructions in the same order, so the
// logits are the default engine's bits, on any device (emulated sm_80 here).
TEST(CudaEnginePrefill, MmaDequantGivesTheCopiesBits) {
  if (::tpserve::kernels::cuda::DeviceCount() == 0) GTEST_SKIP() << "skipped: no CUDA device";
  const std::string path = ModelPaths().front();
  absl::StatusOr<std::unique_ptr<ModelSource>> model = OpenModel(path);
  if (!model.ok()) GTEST_SKIP() << "skipped: no model available: " << model.status();
  const std::vector<Case> cases = Cases((*model)->config().vocab_size);
  Logits got[2];
  RunAgainstMma(**model, cases, "mma_dequant",
                "TensorCoreGemmKernel<CpAsyncBf16Loader, ConvertLoader", got);
  if (HasFatalFailure()) return;
  EXPECT_EQ(got[0], got[1]);
}

// An unknown prefill GEMM is a clear error, not a silent fallback.
TEST(CudaEnginePrefill, UnknownPrefillGemmIsInvalidArgument) {
  if (::tpserve::kernels::cuda::DeviceCount() == 0) GTEST_SKIP() << "skipped: no CUDA device";
  const std::string path = ModelPaths().front();
  absl::StatusOr<std::unique_ptr<ModelSource>> model = OpenModel(path);
  if (!model.ok()) GTEST_SKIP() << "skipped: no model available: " << model.status();
  EnginePair pair;
  const absl::Status made = MakeEnginePair(
      **model,
      [](int) {
        EngineOptions o = Options("cuda");
        o.cuda_prefill_gemm = "cublas";
        return o;
      },
      &pair);
  EXPECT_EQ(made.code(), absl::StatusCode::kInvalidArgument) << made;
  EXPECT_NE(made.message().find("mma, mma_dequant, wgmma or wgmma_tma; got \"cublas\""),
            std::string::npos)
      << made;
}

// A prefill of more than kSkinnyGemmMaxRows tokens multiplies bf16 copies:
// the norms, SwiGLU and prefill attention write the next GEMM's copy of
// their output themselves (LayerStep::producers_write_bf16) and BF16 weights
// are multiplied in place. On a BF16 model whose every k is a multiple of 32
// a prefill converts nothing (before 2026-12-07: four x copies and one copy
// per weight, per layer) while its GEMMs run on the copies. The logits stay
// within OneRankMatchesCpuEngine's tolerances of the CPU engine; the counts
// are checked under the emulator, which counts grids.
TEST(CudaEnginePrefill, Bf16ModelPrefillConvertsNothing) {
  if (::tpserve::kernels::cuda::DeviceCount() == 0) GTEST_SKIP() << "skipped: no CUDA device";
  TestModelSpec spec = GeneratedModelSpec(DType::kBF16);
  spec.format = TestModelFormat::kHf;  // BF16 weights exist only there
  const std::string dir = std::string(::testing::TempDir()) + "/cuda_engine_bf16_hf";
  if (absl::Status st = WriteTestModel(spec, dir); !st.ok()) {
    GTEST_SKIP() << "skipped: cannot generate a test model: " << st;
  }
  absl::StatusOr<std::unique_ptr<ModelSource>> model = OpenModel(dir);
  ASSERT_TRUE(model.ok()) << model.status();
  const std::vector<Case> cases = Cases((*model)->config().vocab_size);
  const auto want = CpuReference(**model, cases, "f32");
  EnginePair pair;  // only [0] runs
  ASSERT_TRUE(MakeEnginePair(
                  **model, [](int) { return Options("cuda"); }, &pair)
                  .ok());
  std::vector<std::vector<std::vector<float>>> got;
  for (const Case& k : cases) {
    SCOPED_TRACE(k.name);
#if defined(TPSERVE_CUDA_EMU)
    constexpr char kOnCopies[] = "TensorCoreGemmKernel<CpAsyncBf16Loader, CpAsyncBf16Loader>";
    const uint64_t converts = tpserve_emu::GridsRun("ConvertRowsKernel");
    const uint64_t on_copies = tpserve_emu::GridsRun(kOnCopies);
#endif
    absl::StatusOr<std::vector<std::vector<float>>> l = pair.engines[0]->ForwardLogits(k.batch);
    ASSERT_TRUE(l.ok()) << l.status();
    got.push_back(*l);
#if defined(TPSERVE_CUDA_EMU)
    size_t tokens = 0;
    for (const SequenceInput& s : k.batch.seqs) tokens += s.tokens.size();
    EXPECT_EQ(tpserve_emu::GridsRun("ConvertRowsKernel") - converts, 0u) << tokens << " tokens";
    const bool prefill = tokens > static_cast<size_t>(::tpserve::kernels::cuda::kSkinnyGemmMaxRows);
    EXPECT_EQ(tpserve_emu::GridsRun(kOnCopies) - on_copies > 0, prefill) << tokens << " tokens";
#endif
  }
  ExpectMatches(cases, want, got);
}

// A prefill step's norms, attention and SwiGLU write the next GEMM's bf16
// copy instead of their f32 output (LayerStep::producers_write_bf16), so the
// step keeps no f32 buffer of T rows for them (KeptInF32): per token, a
// prefill grows device memory by x, q/k/v, the O and down outputs, gate/up
// (f32), one row of the bf16 copy and the step's index arrays, and not by h,
// attn and act (4 x (hidden + q_dim + ffn) bytes more per token until
// 2026-12-07). Measured under the emulator, which counts device bytes
// exactly; a driver allocates in pages and lazily.
TEST(CudaEnginePrefill, PrefillScratchHoldsNoF32CopyOfWhatGoesToBf16) {
#if !defined(TPSERVE_CUDA_EMU)
  GTEST_SKIP() << "skipped: device bytes are counted exactly only under the emulator";
#else
  const std::string path = ModelPaths().front();
  absl::StatusOr<std::unique_ptr<ModelSource>> model = OpenModel(path);
  if (!model.ok()) GTEST_SKIP() << "skipped: no model available: " << model.status();
  const ModelConfig& c = (*model)->config();
  // Device bytes one prefill of `tokens` tokens allocates on a fresh engine.
  auto grown = [&](int tokens) -> int64_t {
    EnginePair pair;  // only [0] runs
    const absl::Status made = MakeEnginePair(
        **model, [](int) { return Options("cuda"); }, &pair);
    EXPECT_TRUE(made.ok()) << made;
    if (!made.ok()) return 0;
    std::vector<int32_t> blocks;
    for (int b = 0; b * 16 < tokens; ++b) blocks.push_back(b);
    StepBatch batch;
    batch.seqs.push_back(Seq(1, TokenStream(5, c.vocab_size)(tokens), 0, blocks));
    size_t free_before = 0, free_after = 0, total = 0;
    cudaMemGetInfo(&free_before, &total);
    const absl::StatusOr<std::vector<std::vector<float>>> l = pair.engines[0]->ForwardLogits(batch);
    EXPECT_TRUE(l.ok()) << l.status();
    cudaMemGetInfo(&free_after, &total);
    return static_cast<int64_t>(free_before) - static_cast<int64_t>(free_after);
  };
  const double per_token = static_cast<double>(grown(200) - grown(100)) / 100.0;
  const int64_t q_dim = int64_t{c.num_heads} * c.head_dim;
  const int64_t qkv_dim = q_dim + 2 * int64_t{c.num_kv_heads} * c.head_dim;
  const int64_t f32 = 4 * (2 * int64_t{c.hidden_size} + qkv_dim + 2 * int64_t{c.ffn_size});
  const int64_t widest_k = std::max<int64_t>(c.hidden_size, c.ffn_size);
  const int64_t bf16 =
      2 * ::tpserve::kernels::cuda::GemmViaBf16RowElems(static_cast<int>(widest_k));
  std::printf("prefill device bytes per token: %.2f (f32 buffers %lld, bf16 row %lld)\n", per_token,
              static_cast<long long>(f32), static_cast<long long>(bf16));
  EXPECT_GE(per_token, static_cast<double>(f32)) << "the buffers every step needs";
  // 64 bytes for the index arrays (tokens, positions, slots, block table).
  EXPECT_LE(per_token, static_cast<double>(f32 + bf16 + 64))
      << "h, attn or act kept in f32 would add " << 4 * (c.hidden_size + q_dim + c.ffn_size)
      << " bytes per token";
#endif
}

}  // namespace
}  // namespace tpserve::cuda_parity
