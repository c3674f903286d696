// Host-side parameter validation of the CUDA launchers: bad shapes come back
// as InvalidArgument before anything touches a device, so this is a CPU test
// (no "gpu" tag) and runs everywhere.
#include <cstdint>
#include <string>

#include "gtest/gtest.h"
#include "kernels/cuda/cuda_ops.h"

namespace tpserve::kernels::cuda {
namespace {

TEST(CudaGemmValidation, RejectsBadShapes) {
  GemmParams p;
  float dummy = 0.0f;
  p.x = &dummy;
  p.w = &dummy;
  p.y = &dummy;
  p.m = 1;
  p.n = 1;
  p.k = 33;
  p.w_dtype = DType::kQ4_1;  // k not a multiple of 32
  EXPECT_EQ(Gemm(p, Stream{}).code(), absl::StatusCode::kInvalidArgument);
  p.w_dtype = DType::kF32;
  p.x_stride = 2;  // below k
  EXPECT_EQ(Gemm(p, Stream{}).code(), absl::StatusCode::kInvalidArgument);
}

// Quantized weights are 16-byte planes (weight_layout.h): a pointer that is
// not 16-byte aligned cannot be the start of one.
TEST(CudaGemmValidation, RejectsMisalignedQuantizedWeights) {
  alignas(16) unsigned char w[32] = {};
  float x = 0.0f, y = 0.0f;
  GemmParams p{.x = &x, .w = w + 4, .w_dtype = DType::kQ4_0, .y = &y, .m = 1, .n = 1, .k = 32};
  EXPECT_EQ(Gemm(p, Stream{}).code(), absl::StatusCode::kInvalidArgument);
  EXPECT_EQ(
      GemmSwiglu({.x = &x, .w = w + 2, .w_dtype = DType::kQ8_0, .y = &y, .m = 1, .n = 2, .k = 32},
                 Stream{})
          .code(),
      absl::StatusCode::kInvalidArgument);
}

TEST(CudaGemmBf16Validation, RejectsKNotMultipleOf8) {
  uint16_t dummy[8] = {};
  float c = 0.0f;
  GemmBf16Params p{.a = dummy, .b = dummy, .c = &c, .m = 1, .n = 1, .k = 12};
  EXPECT_EQ(GemmBf16(p, Stream{}).code(), absl::StatusCode::kInvalidArgument);
}

TEST(CudaPagedAttentionValidation, RejectsBadGroupsAndSmallWorkspace) {
  PagedAttentionParams p;
  p.num_seqs = 0;
  p.n_heads = 9;
  p.n_kv_heads = 2;  // 9 % 2 != 0
  p.head_dim = 64;
  p.block_size = 16;
  EXPECT_EQ(PagedAttention(p, Stream{}).code(), absl::StatusCode::kInvalidArgument);
  p.n_kv_heads = 3;
  EXPECT_EQ(PagedAttention(p, Stream{}).code(), absl::StatusCode::kOk);  // empty batch
  EXPECT_GT(DecodeAttentionWorkspaceFloats(4, 9, 64, 3 * kDecodePartitionTokens), 0);
  EXPECT_EQ(DecodeAttentionWorkspaceFloats(4, 9, 64, kDecodePartitionTokens), 0);
}

TEST(CudaRopeValidation, RejectsOddHeadDimAndBadScaling) {
  float q = 0.0f;
  int32_t pos = 0;
  RopeParams p{.q = &q, .positions = &pos, .tokens = 1, .n_heads = 1, .head_dim = 3};
  EXPECT_EQ(Rope(p, Stream{}).code(), absl::StatusCode::kInvalidArgument);
  p.head_dim = 4;
  p.scaling.type = RopeScaling::Type::kLlama3;
  p.scaling.low_freq_factor = 4.0f;  // must be below high_freq_factor
  EXPECT_EQ(Rope(p, Stream{}).code(), absl::StatusCode::kInvalidArgument);
}

// One sequence, 2 query heads of 64 dims on one KV head, every pointer at a
// dummy: enough for the launcher's checks, which run before any launch.
PagedAttentionParams OneSequenceDecode(float* dummy, int32_t* idummy) {
  return {.q = dummy,
          .k_cache = dummy,
          .v_cache = dummy,
          .out = dummy,
          .block_tables = idummy,
          .cu_q_lens = idummy,
          .start_pos = idummy,
          .num_seqs = 1,
          .max_blocks_per_seq = 64,
          .n_heads = 2,
          .n_kv_heads = 1,
          .head_dim = 64,
          .block_size = 16,
          .num_blocks = 64};
}

TEST(CudaDecodeValidation, RejectsMissingWorkspace) {
  float dummy = 0.0f;
  int32_t idummy = 0;
  const PagedAttentionParams p = OneSequenceDecode(&dummy, &idummy);
  EXPECT_EQ(PagedAttentionDecode(p, 4 * kDecodePartitionTokens, nullptr, 0, Stream{}).code(),
            absl::StatusCode::kInvalidArgument);
}

// A lone sequence's context past one 256-token partition is cut into at most
// 64 partitions of 64, 128 or 256 tokens; batches and short contexts keep
// 256. The workspace follows the same cut, and the override is bounded.
TEST(CudaDecodeValidation, PartitionsOfALoneSequence) {
  EXPECT_EQ(DecodePartitionTokens(1, kDecodePartitionTokens), kDecodePartitionTokens);
  EXPECT_EQ(DecodePartitionTokens(1, kDecodePartitionTokens + 1), 64);
  EXPECT_EQ(DecodePartitionTokens(1, 4096), 64);
  EXPECT_EQ(DecodePartitionTokens(1, 4097), 128);
  EXPECT_EQ(DecodePartitionTokens(1, 8192), 128);
  EXPECT_EQ(DecodePartitionTokens(1, 8193), 256);
  EXPECT_EQ(DecodePartitionTokens(1, 100000), 256);
  EXPECT_EQ(DecodePartitionTokens(2, 4096), kDecodePartitionTokens);
  // 300 tokens: 5 partitions of 64 for one sequence, 2 of 256 for two.
  EXPECT_EQ(DecodeAttentionWorkspaceFloats(1, 9, 64, 300), 1 * 9 * 5 * 66);
  EXPECT_EQ(DecodeAttentionWorkspaceFloats(2, 9, 64, 300), 2 * 9 * 2 * 66);
  EXPECT_EQ(DecodeAttentionWorkspaceFloats(1, 9, 64, 300, 256), 1 * 9 * 2 * 66);
  EXPECT_EQ(DecodeAttentionWorkspaceFloats(1, 9, 64, 256), 0);

  float dummy = 0.0f;
  int32_t idummy = 0;
  const PagedAttentionParams p = OneSequenceDecode(&dummy, &idummy);
  for (int bad : {-1, kDecodePartitionTokens + 1}) {
    const absl::Status st = PagedAttentionDecode(p, 100, &dummy, 1, Stream{}, bad);
    EXPECT_EQ(st.code(), absl::StatusCode::kInvalidArgument);
    EXPECT_NE(st.message().find("partition_tokens"), std::string::npos) << st;
  }
  // 100 tokens in 7-token partitions need a workspace: none is given.
  const absl::Status st = PagedAttentionDecode(p, 100, nullptr, 0, Stream{}, 7);
  EXPECT_NE(st.message().find("workspace too small"), std::string::npos) << st;
}

// The fused RoPE and KV-cache write must describe this attention's own q
// rows and cache; a mismatch is named before anything launches.
TEST(CudaDecodeValidation, RejectsAFusedRopeForOtherRows) {
  float q[8] = {};
  float other = 0.0f;
  float out = 0.0f;
  int32_t idummy = 0;
  int64_t slot = 0;
  PagedAttentionParams p{.q = q,
                         .k_cache = q,
                         .v_cache = q,
                         .out = &out,
                         .block_tables = &idummy,
                         .cu_q_lens = &idummy,
                         .start_pos = &idummy,
                         .num_seqs = 0,
                         .max_blocks_per_seq = 1,
                         .n_heads = 2,
                         .n_kv_heads = 1,
                         .head_dim = 2,
                         .block_size = 16,
                         .num_blocks = 1,
                         .q_stride = 8};
  DecodeRopeKvWrite f{.rope = {.q = q,
                               .k = q + 4,
                               .positions = &idummy,
                               .tokens = 0,
                               .n_heads = 2,
                               .n_kv_heads = 1,
                               .head_dim = 2,
                               .q_stride = 8,
                               .k_stride = 8},
                      .kv = {.k = q + 4,
                             .v = q + 6,
                             .k_cache = q,
                             .v_cache = q,
                             .slot_mapping = &slot,
                             .tokens = 0,
                             .n_kv_heads = 1,
                             .head_dim = 2,
                             .block_size = 16,
                             .num_blocks = 1,
                             .k_stride = 8,
                             .v_stride = 8}};
  EXPECT_TRUE(PagedAttentionDecode(p, 1, nullptr, 0, f, Stream{}).ok());  // empty batch
  DecodeRopeKvWrite bad = f;
  bad.rope.q = &other;
  absl::Status st = PagedAttentionDecode(p, 1, nullptr, 0, bad, Stream{});
  EXPECT_EQ(st.code(), absl::StatusCode::kInvalidArgument);
  EXPECT_NE(st.message().find("fused RoPE"), std::string::npos) << st;
  bad = f;
  bad.kv.v_cache = &other;
  st = PagedAttentionDecode(p, 1, nullptr, 0, bad, Stream{});
  EXPECT_EQ(st.code(), absl::StatusCode::kInvalidArgument);
  EXPECT_NE(st.message().find("fused KV-cache write"), std::string::npos) << st;
  bad = f;
  bad.rope.head_dim = 3;  // CheckRope: odd
  EXPECT_EQ(PagedAttentionDecode(p, 1, nullptr, 0, bad, Stream{}).code(),
            absl::StatusCode::kInvalidArgument);
}

// DecodeStepPersistent names what is wrong before it asks for a device.
TEST(CudaPersistentDecodeValidation, RejectsWhatItDoesNotRun) {
  alignas(16) float buf[4 * 64] = {};
  DecodeLayerPointers layer;
  PersistentDecodeParams p{.layers = &layer,
                           .num_layers = 1,
                           .w_dtype = DType::kQ4_1,
                           .hidden = 64,
                           .q_dim = 64,
                           .qkv_dim = 128,
                           .ffn = 64,
                           .x = buf,
                           .qkv = buf + 64,
                           .attn = buf + 128,
                           .act = buf + 192};
  p.attention = {.q = p.qkv,
                 .kv_dtype = DType::kBF16,
                 .out = p.attn,
                 .num_seqs = 1,
                 .n_heads = 1,
                 .n_kv_heads = 1,
                 .head_dim = 64};
  auto message = [&p] { return std::string(DecodeStepPersistent(p, Stream{}).message()); };

  p.w_dtype = DType::kBF16;
  EXPECT_NE(message().find("needs Q8_0, Q4_0 or Q4_1 weights"), std::string::npos) << message();
  EXPECT_NE(message().find("got BF16 weights"), std::string::npos) << message();
  p.w_dtype = DType::kQ4_1;
  p.attention.head_dim = 256;
  EXPECT_NE(message().find("head_dim 256"), std::string::npos) << message();
  p.attention.head_dim = 64;
  p.num_layers = 0;
  EXPECT_NE(message().find("no layers"), std::string::npos) << message();
  p.num_layers = 1;
  p.act = buf + 193;  // not 16-byte aligned
  EXPECT_NE(message().find("16-byte aligned"), std::string::npos) << message();
  p.act = buf + 192;
  p.attention.num_seqs = 2;
  EXPECT_NE(message().find("one sequence"), std::string::npos) << message();
  p.attention.num_seqs = 1;
  // The arguments pass; without a device what is left is the machine's.
  if (!PersistentDecodeSupports(DType::kQ4_1, 64, DType::kBF16)) {
    EXPECT_EQ(DecodeStepPersistent(p, Stream{}).code(), absl::StatusCode::kFailedPrecondition)
        << message();
  }
  EXPECT_FALSE(PersistentDecodeSupports(DType::kF32, 64, DType::kF32));
  EXPECT_FALSE(PersistentDecodeSupports(DType::kQ4_1, 256, DType::kBF16));
}

}  // namespace
}  // namespace tpserve::kernels::cuda
