// Checks tpserve's GGUF reading and quantizers against the gguf Python package
// (an independent implementation), run as a subprocess from .venv:
//   - config of the default model and of test models vs their metadata;
//   - dequantized tensors (and row/column slices) vs gguf.quants.dequantize:
//     bit-exact for F32/F16/BF16, max abs diff <= 1e-6 for Q8_0/Q4_0/Q4_1;
//   - QuantizeRow vs gguf.quants.quantize: identical bytes.
// Expected values come from the reference at test time; nothing is hard-coded.
#include <cstdio>
#include <cstdlib>
#include <random>
#include <string>
#include <vector>

#include "gtest/gtest.h"
#include "nlohmann/json.hpp"
#include "tests/testmodel/gguf_writer.h"
#include "tests/testmodel/test_model.h"
#include "worker/model/model_source.h"
#include "worker/model/quantize.h"

namespace tpserve {
namespace {

std::string Root() {
  const char* r = std::getenv("TPSERVE_ROOT");
  return r != nullptr ? r : ".";
}

std::string Tmp(const std::string& name) {
  const char* t = std::getenv("TEST_TMPDIR");
  return std::string(t != nullptr ? t : "/tmp") + "/" + name;
}

nlohmann::json ConfigJson(const ModelConfig& c) {
  return {{"architecture", c.architecture},
          {"hidden_size", c.hidden_size},
          {"num_layers", c.num_layers},
          {"num_heads", c.num_heads},
          {"num_kv_heads", c.num_kv_heads},
          {"head_dim", c.head_dim},
          {"ffn_size", c.ffn_size},
          {"vocab_size", c.vocab_size},
          {"context_length", c.context_length},
          {"rms_norm_eps", c.rms_norm_eps},
          {"rope_theta", c.rope_theta},
          {"rope_neox", c.rope_neox},
          {"tie_embeddings", c.tie_embeddings},
          {"qkv_bias", c.qkv_bias},
          {"bos_id", c.bos_id},
          {"eos_id", c.eos_id},
          {"pad_id", c.pad_id},
          {"stop_ids", c.stop_ids}};
}

// Dumps `t` as f32 and returns its manifest entry.
nlohmann::json Dump(const HostTensor& t, const TensorInfo& info, const std::string& file,
                    nlohmann::json rows, nlohmann::json cols) {
  const std::vector<float> v = t.ToFloat();
  EXPECT_TRUE(WriteBytes(file, v.data(), v.size() * sizeof(float)).ok());
  return {{"name", info.name},   {"dtype", DTypeName(info.dtype)},
          {"shape", info.shape}, {"dump", file},
          {"rows", rows},        {"cols", cols}};
}

// Adds `model`'s tensors to the manifest: whole tensors when `all`, else the
// slices named in `slices` (name, rows or cols, begin, count).
struct Slice {
  std::string name;
  bool rows;
  int64_t begin, count;
};

nlohmann::json ModelEntry(const std::string& path, const std::string& tag, bool all,
                          const std::vector<Slice>& slices) {
  auto m = OpenModel(path);
  EXPECT_TRUE(m.ok()) << m.status();
  if (!m.ok()) return {};
  nlohmann::json tensors = nlohmann::json::array();
  int k = 0;
  for (const TensorInfo& info : (*m)->tensors()) {
    if (!all) break;
    auto t = (*m)->Read(info.name);
    EXPECT_TRUE(t.ok()) << t.status();
    tensors.push_back(
        Dump(*t, info, Tmp(tag + "_" + std::to_string(k++) + ".f32"), nullptr, nullptr));
  }
  for (const Slice& s : slices) {
    auto info = (*m)->FindTensor(s.name);
    EXPECT_TRUE(info.ok()) << s.name;
    auto t = s.rows ? (*m)->ReadRows(s.name, s.begin, s.count)
                    : (*m)->ReadColumns(s.name, s.begin, s.count);
    EXPECT_TRUE(t.ok()) << t.status();
    if (!t.ok() || !info.ok()) continue;
    const nlohmann::json range = {s.begin, s.count};
    tensors.push_back(Dump(*t, *info, Tmp(tag + "_" + std::to_string(k++) + ".f32"),
                           s.rows ? range : nullptr, s.rows ? nullptr : range));
  }
  return {{"gguf", path}, {"config", ConfigJson((*m)->config())}, {"tensors", tensors}};
}

TEST(ReferenceTest, MatchesGgufPackage) {
  const std::string python = Root() + "/.venv/bin/python3";
  ASSERT_EQ(std::system((python + " -c 'import gguf' 2>/dev/null").c_str()), 0)
      << "needs the gguf package in " << python << " (scripts/setup.sh)";
  nlohmann::json manifest = {{"models", nlohmann::json::array()},
                             {"quant", nlohmann::json::array()}};

  // The default model: slices of every tensor kind it holds (whole tensors
  // would dump 0.5 GB of f32).
  const std::string def = Root() + "/models/SmolLM2-135M-Instruct.Q4_1.gguf";
  std::vector<Slice> slices = {
      {"token_embd.weight", true, 0, 64},         {"token_embd.weight", true, 40000, 300},
      {"token_embd.weight", false, 256, 128},     {"output_norm.weight", true, 0, 576},
      {"blk.0.attn_norm.weight", true, 100, 200}, {"blk.29.ffn_norm.weight", true, 0, 576}};
  for (const char* w :
       {"attn_q", "attn_k", "attn_v", "attn_output", "ffn_gate", "ffn_up", "ffn_down"}) {
    const std::string n0 = std::string("blk.0.") + w + ".weight",
                      n29 = std::string("blk.29.") + w + ".weight";
    slices.push_back({n0, true, 0, 192});
    slices.push_back({n29, true, 64, 128});
    slices.push_back({n29, false, 64, 128});
  }
  manifest["models"].push_back(ModelEntry(def, "default", false, slices));

  // Test models in every GGUF type the generator writes, dumped whole.
  int i = 0;
  for (DType d :
       {DType::kF32, DType::kF16, DType::kBF16, DType::kQ8_0, DType::kQ4_0, DType::kQ4_1}) {
    TestModelSpec spec;
    spec.dtype = d;
    spec.vocab_size = 1000;
    spec.qkv_bias = (i % 2) == 1;
    spec.tie_embeddings = i != 2;
    spec.architecture = i == 4 ? "qwen2" : "llama";
    spec.num_heads = 8;
    spec.num_kv_heads = 2;
    spec.head_dim = 8;
    spec.ffn_size = 96;
    const std::string path = Tmp(std::string("ref_") + DTypeName(d) + ".gguf");
    ASSERT_TRUE(WriteTestModel(spec, path).ok());
    manifest["models"].push_back(ModelEntry(path, std::string("t") + DTypeName(d), true,
                                            {{"blk.1.ffn_down.weight", false, 32, 64}}));
    ++i;
  }

  // Quantizers: random rows including an all-zero block and outliers.
  std::mt19937 rng(5);
  std::normal_distribution<float> normal(0.0f, 1.0f);
  const int64_t cols = 256, rows = 64;
  std::vector<float> x(cols * rows);
  for (float& v : x) v = normal(rng);
  for (int j = 0; j < 32; ++j) x[j] = 0.0f;
  x[100] = 40.0f;
  x[300] = -55.0f;
  const std::string input = Tmp("quant_in.f32");
  ASSERT_TRUE(WriteBytes(input, x.data(), x.size() * 4).ok());
  for (DType d : {DType::kF16, DType::kQ8_0, DType::kQ4_0, DType::kQ4_1}) {
    std::vector<uint8_t> q(rows * RowBytes(d, cols));
    for (int64_t r = 0; r < rows; ++r)
      QuantizeRow(d, x.data() + r * cols, q.data() + r * RowBytes(d, cols), cols);
    const std::string ours = Tmp(std::string("quant_") + DTypeName(d) + ".bin");
    ASSERT_TRUE(WriteBytes(ours, q.data(), q.size()).ok());
    manifest["quant"].push_back(
        {{"type", DTypeName(d)}, {"cols", cols}, {"input", input}, {"ours", ours}});
  }

  const std::string mpath = Tmp("manifest.json");
  const std::string text = manifest.dump();
  ASSERT_TRUE(WriteBytes(mpath, text.data(), text.size()).ok());
  const std::string cmd = python + " " + Root() + "/worker/model/gguf_reference_check.py " + mpath;
  EXPECT_EQ(std::system(cmd.c_str()), 0) << "reference check failed: " << cmd;
}

}  // namespace
}  // namespace tpserve
