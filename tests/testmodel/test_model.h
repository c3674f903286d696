// Test-model generator: tiny random Llama-family models for hermetic tests,
// written as a GGUF file or a Hugging Face directory (config.json,
// generation_config.json, model.safetensors, tokenizer.json,
// tokenizer_config.json). The vocabulary, merges, special tokens and chat
// template are copied from the default model's GGUF (SmolLM2, byte-level BPE,
// ChatML), so the real tokenizer works on these models.
//
//   TestModelSpec spec;
//   spec.num_heads = 8;
//   spec.num_kv_heads = 2;
//   spec.qkv_bias = true;
//   spec.dtype = DType::kQ8_0;
//   TPS_RETURN_IF_ERROR(WriteTestModel(spec, dir + "/tiny.gguf"));
//   spec.format = TestModelFormat::kHf;  // F32/F16/BF16 only
//   TPS_RETURN_IF_ERROR(WriteTestModel(spec, dir + "/tiny_hf"));
#ifndef TPSERVE_TESTS_TESTMODEL_TEST_MODEL_H_
#define TPSERVE_TESTS_TESTMODEL_TEST_MODEL_H_

#include <cstdint>
#include <string>

#include "absl/status/status.h"
#include "formats/dtype.h"

namespace tpserve {

enum class TestModelFormat { kGguf, kHf };

struct TestModelSpec {
  TestModelFormat format = TestModelFormat::kGguf;
  std::string architecture = "llama";  // "llama" or "qwen2" (qwen2 implies rope_neox in GGUF)
  int hidden_size = 64;
  int num_layers = 2;
  int num_heads = 4;
  int num_kv_heads = 2;
  int head_dim = 0;  // 0: hidden_size / num_heads
  int ffn_size = 128;
  int vocab_size = 0;  // 0: the full vocabulary of the vocab source (49152)
  int context_length = 2048;
  float rms_norm_eps = 1e-5f;
  float rope_theta = 10000.0f;
  bool qkv_bias = false;
  bool tie_embeddings = true;
  // Weight matrices (GGUF: F32, F16, Q8_0, Q4_0, Q4_1; HF: F32, F16, BF16).
  // token_embd follows it; norms and biases are always F32.
  DType dtype = DType::kF32;
  uint64_t seed = 1;
  float init_scale = 0.02f;  // weights ~ uniform(-s, s) * sqrt(3); norms ~ 1 +- 0.1
  // GGUF whose tokenizer.* metadata supplies the vocabulary. Empty:
  // $TPSERVE_ROOT/models/SmolLM2-135M-Instruct.Q4_1.gguf.
  std::string vocab_source;
};

// Writes the model to `out_path` (a file for GGUF, a directory created if
// needed for HF). The same spec and seed give the same weights in both formats
// (HF gets unquantized values; GGUF quantizes them).
[[nodiscard]] absl::Status WriteTestModel(const TestModelSpec& spec, const std::string& out_path);

// The default vocabulary source: $TPSERVE_TEST_VOCAB when set (a GGUF whose
// vocabulary the generated models copy; scripts/gpu_check.sh points it at a
// bundled model, as the default model is too large to bundle), else
// $TPSERVE_ROOT/models/SmolLM2-135M-Instruct.Q4_1.gguf ("." when unset).
std::string DefaultVocabSource();

}  // namespace tpserve

#endif  // TPSERVE_TESTS_TESTMODEL_TEST_MODEL_H_
