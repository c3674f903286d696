// OpenModel over the default model and over generated test models (GGUF and
// HF), slicing reads, and the errors bad models produce.
#include "worker/model/model_source.h"

#include <algorithm>
#include <cstdlib>
#include <filesystem>
#include <fstream>

#include "formats/gguf_reader.h"
#include "gmock/gmock.h"
#include "gtest/gtest.h"
#include "tests/testmodel/gguf_writer.h"
#include "tests/testmodel/safetensors_writer.h"
#include "tests/testmodel/test_model.h"
#include "worker/model/safetensors.h"

namespace tpserve {
namespace {

using ::testing::Contains;
using ::testing::HasSubstr;

std::string DefaultModelPath() {
  const char* root = std::getenv("TPSERVE_ROOT");
  return std::string(root != nullptr ? root : ".") + "/models/SmolLM2-135M-Instruct.Q4_1.gguf";
}

std::string TmpPath(const std::string& name) {
  const char* t = std::getenv("TEST_TMPDIR");
  return std::string(t != nullptr ? t : "/tmp") + "/" + name;
}

std::unique_ptr<ModelSource> Open(const std::string& path) {
  auto m = OpenModel(path);
  EXPECT_TRUE(m.ok()) << m.status();
  return m.ok() ? std::move(*m) : nullptr;
}

std::string Write(TestModelSpec spec, const std::string& name) {
  const std::string path = TmpPath(name);
  const absl::Status s = WriteTestModel(spec, path);
  EXPECT_TRUE(s.ok()) << s;
  return path;
}

TEST(ModelSourceTest, DefaultModelConfig) {
  auto m = Open(DefaultModelPath());
  ASSERT_NE(m, nullptr);
  const ModelConfig& c = m->config();
  EXPECT_EQ(m->format(), "gguf");
  EXPECT_EQ(c.architecture, "llama");
  EXPECT_EQ(c.hidden_size, 576);
  EXPECT_EQ(c.num_layers, 30);
  EXPECT_EQ(c.num_heads, 9);
  EXPECT_EQ(c.num_kv_heads, 3);
  EXPECT_EQ(c.head_dim, 64);
  EXPECT_EQ(c.ffn_size, 1536);
  EXPECT_EQ(c.vocab_size, 49152);
  EXPECT_EQ(c.context_length, 8192);
  EXPECT_FLOAT_EQ(c.rms_norm_eps, 1e-5f);
  EXPECT_FLOAT_EQ(c.rope_theta, 100000.0f);
  EXPECT_EQ(c.rope_scaling.type, RopeScaling::Type::kNone);
  EXPECT_FALSE(c.rope_neox);
  EXPECT_TRUE(c.tie_embeddings);
  EXPECT_FALSE(c.qkv_bias);
  EXPECT_EQ(c.bos_id, 1);
  EXPECT_EQ(c.eos_id, 2);
  EXPECT_EQ(c.pad_id, 2);
  EXPECT_THAT(c.stop_ids, Contains(2));
  EXPECT_EQ(m->tensors().size(), 272u);
  EXPECT_EQ(m->tokenizer().model, "gpt2");
  EXPECT_EQ(m->tokenizer().eos_token, "<|im_end|>");
  EXPECT_THAT(m->tokenizer().chat_template, HasSubstr("<|im_start|>"));
}

TEST(ModelSourceTest, RowSlicesAreZeroCopyViews) {
  auto m = Open(DefaultModelPath());
  ASSERT_NE(m, nullptr);
  auto full = m->Read("blk.0.attn_k.weight");
  ASSERT_TRUE(full.ok());
  EXPECT_EQ(full->shape, (std::vector<int64_t>{192, 576}));
  EXPECT_EQ(full->dtype, DType::kQ4_1);
  auto rows = m->ReadRows("blk.0.attn_k.weight", 64, 64);
  ASSERT_TRUE(rows.ok());
  EXPECT_EQ(rows->shape, (std::vector<int64_t>{64, 576}));
  EXPECT_EQ(rows->data, full->data + 64 * RowBytes(DType::kQ4_1, 576));
  EXPECT_EQ(rows->bytes, 64u * RowBytes(DType::kQ4_1, 576));
  EXPECT_EQ(m->ReadRows("blk.0.attn_k.weight", 190, 3).status().code(),
            absl::StatusCode::kOutOfRange);
  EXPECT_EQ(m->ReadRows("blk.0.attn_k.weight", -1, 3).status().code(),
            absl::StatusCode::kOutOfRange);
  EXPECT_EQ(m->ReadRows("nope", 0, 1).status().code(), absl::StatusCode::kNotFound);
  // 1-D: rows are elements.
  auto norm = m->ReadRows("output_norm.weight", 100, 10);
  ASSERT_TRUE(norm.ok());
  EXPECT_EQ(norm->shape, (std::vector<int64_t>{10}));
  EXPECT_EQ(norm->ToFloat()[0], m->Read("output_norm.weight")->ToFloat()[100]);
}

TEST(ModelSourceTest, ColumnSlicesOfQuantizedTensors) {
  auto m = Open(DefaultModelPath());
  ASSERT_NE(m, nullptr);
  const std::string name = "blk.3.ffn_down.weight";  // [576, 1536] Q4_1
  auto full = m->Read(name);
  ASSERT_TRUE(full.ok());
  const std::vector<float> all = full->ToFloat();
  auto cols = m->ReadColumns(name, 512, 256);
  ASSERT_TRUE(cols.ok()) << cols.status();
  EXPECT_EQ(cols->shape, (std::vector<int64_t>{576, 256}));
  EXPECT_EQ(cols->dtype, DType::kQ4_1);
  EXPECT_EQ(cols->bytes, 576u * RowBytes(DType::kQ4_1, 256));
  const std::vector<float> part = cols->ToFloat();
  for (int64_t r = 0; r < 576; ++r) {
    for (int64_t c = 0; c < 256; ++c)
      ASSERT_EQ(part[r * 256 + c], all[r * 1536 + 512 + c]) << r << "," << c;
  }
  auto bad = m->ReadColumns(name, 16, 64);
  EXPECT_EQ(bad.status().code(), absl::StatusCode::kInvalidArgument);
  EXPECT_THAT(bad.status().message(), HasSubstr("block boundaries"));
  EXPECT_FALSE(m->ReadColumns(name, 0, 48).ok());
  EXPECT_EQ(m->ReadColumns(name, 1536, 32).status().code(), absl::StatusCode::kOutOfRange);
  EXPECT_FALSE(m->ReadColumns("output_norm.weight", 0, 32).ok());
}

TEST(ModelSourceTest, GgufAndHfTestModelsHoldTheSameWeights) {
  for (const char* arch : {"llama", "qwen2"}) {
    TestModelSpec spec;
    spec.architecture = arch;
    spec.num_heads = 8;
    spec.num_kv_heads = 2;
    spec.head_dim = 16;
    spec.qkv_bias = true;
    spec.tie_embeddings = false;
    spec.vocab_size = 512;
    auto g = Open(Write(spec, std::string(arch) + "_f32.gguf"));
    spec.format = TestModelFormat::kHf;
    auto h = Open(Write(spec, std::string(arch) + "_hf"));
    ASSERT_NE(g, nullptr);
    ASSERT_NE(h, nullptr);
    EXPECT_EQ(h->format(), "hf");
    EXPECT_EQ(g->config().rope_neox, std::string(arch) == "qwen2");
    EXPECT_TRUE(h->config().rope_neox);
    for (const auto* m : {g.get(), h.get()}) {
      EXPECT_EQ(m->config().num_heads, 8);
      EXPECT_EQ(m->config().num_kv_heads, 2);
      EXPECT_EQ(m->config().head_dim, 16);
      EXPECT_EQ(m->config().vocab_size, 512);
      EXPECT_TRUE(m->config().qkv_bias);
      EXPECT_FALSE(m->config().tie_embeddings);
    }
    ASSERT_EQ(g->tensors().size(), h->tensors().size());
    for (const TensorInfo& t : g->tensors()) {
      auto a = g->Read(t.name);
      auto b = h->Read(t.name);
      ASSERT_TRUE(a.ok() && b.ok()) << t.name;
      ASSERT_EQ(a->shape, b->shape) << t.name;
      const std::vector<float> x = a->ToFloat(), y = b->ToFloat();
      const bool permuted =
          std::string(arch) == "llama" && (t.name.find("attn_q.") != std::string::npos ||
                                           t.name.find("attn_k.") != std::string::npos);
      const int64_t cols = a->shape.size() == 2 ? a->shape[1] : 1;
      for (int64_t r = 0; r < a->shape[0]; ++r) {
        // llama.cpp's layout: GGUF row h*hd + 2i + j is HF row h*hd + j*hd/2 + i.
        const int64_t hf_row = permuted ? (r / 16) * 16 + (r % 2) * 8 + (r % 16) / 2 : r;
        for (int64_t c = 0; c < cols; ++c)
          ASSERT_EQ(x[r * cols + c], y[hf_row * cols + c]) << t.name << " " << r;
      }
    }
  }
}

TEST(ModelSourceTest, QuantizedAndHalfTestModels) {
  for (DType d : {DType::kF16, DType::kQ8_0, DType::kQ4_0, DType::kQ4_1}) {
    TestModelSpec spec;
    spec.dtype = d;
    auto m = Open(Write(spec, std::string("tiny_") + DTypeName(d) + ".gguf"));
    ASSERT_NE(m, nullptr);
    EXPECT_EQ(m->FindTensor("blk.1.ffn_up.weight")->dtype, d);
    EXPECT_EQ(m->FindTensor("blk.1.ffn_norm.weight")->dtype, DType::kF32);
    EXPECT_EQ(m->FindTensor("output.weight").status().code(), absl::StatusCode::kNotFound);  // tied
    EXPECT_EQ(m->config().vocab_size, 49152);
    EXPECT_THAT(m->config().stop_ids, Contains(2));
  }
  TestModelSpec spec;
  spec.format = TestModelFormat::kHf;
  spec.dtype = DType::kBF16;
  auto h = Open(Write(spec, "tiny_bf16_hf"));
  ASSERT_NE(h, nullptr);
  EXPECT_EQ(h->FindTensor("blk.0.attn_q.weight")->dtype, DType::kBF16);
  EXPECT_EQ(h->FindTensor("blk.0.attn_q.weight")->source_name,
            "model.layers.0.self_attn.q_proj.weight");
  EXPECT_EQ(h->tokenizer().eos_token, "<|im_end|>");
  EXPECT_THAT(h->tokenizer().chat_template, HasSubstr("<|im_start|>"));
  EXPECT_EQ(h->tokenizer().vocab_size, 49152);
  EXPECT_THAT(h->config().stop_ids, Contains(2));
  EXPECT_EQ(h->config().bos_id, 1);
  spec.dtype = DType::kQ8_0;
  EXPECT_FALSE(WriteTestModel(spec, TmpPath("bad_hf")).ok());
}

TEST(ModelSourceTest, ShardedHfDirectory) {
  TestModelSpec spec;
  spec.format = TestModelFormat::kHf;
  spec.vocab_size = 256;
  spec.tie_embeddings = false;
  const std::string dir = Write(spec, "sharded_hf");
  auto one = SafetensorsFile::Open(dir + "/model.safetensors");
  ASSERT_TRUE(one.ok());
  SafetensorsWriter a, b;
  std::string weight_map;
  int i = 0;
  for (const SafetensorsTensor& t : (*one)->tensors()) {
    const uint8_t* p = (*one)->data(t);
    const bool first = i++ % 2 == 0;
    (first ? a : b).AddTensor(t.name, *t.dtype, t.shape, std::vector<uint8_t>(p, p + t.bytes()));
    weight_map +=
        (weight_map.empty() ? "" : ",") + ("\"" + t.name + "\":\"") +
        (first ? "model-00001-of-00002.safetensors\"" : "model-00002-of-00002.safetensors\"");
  }
  ASSERT_TRUE(a.WriteFile(dir + "/model-00001-of-00002.safetensors").ok());
  ASSERT_TRUE(b.WriteFile(dir + "/model-00002-of-00002.safetensors").ok());
  std::filesystem::remove(dir + "/model.safetensors");
  std::ofstream(dir + "/model.safetensors.index.json")
      << "{\"metadata\":{},\"weight_map\":{" << weight_map << "}}";
  auto m = Open(dir);
  ASSERT_NE(m, nullptr);
  EXPECT_EQ(m->tensors().size(), (*one)->tensors().size());
  EXPECT_TRUE(m->Read("output.weight").ok());
}

TEST(ModelSourceTest, BadModelsGiveClearErrors) {
  EXPECT_EQ(OpenModel("/nonexistent/model").status().code(), absl::StatusCode::kNotFound);

  GgufWriter w;
  w.AddString("general.architecture", "gpt2");
  const std::string arch = TmpPath("gpt2.gguf");
  ASSERT_TRUE(w.WriteFile(arch).ok());
  auto r = OpenModel(arch);
  EXPECT_EQ(r.status().code(), absl::StatusCode::kUnimplemented);
  EXPECT_THAT(r.status().message(), HasSubstr("unsupported architecture 'gpt2'"));
  EXPECT_THAT(r.status().message(), HasSubstr("gpt2.gguf"));

  // A GGUF whose metadata disagrees with its tensors: rewrite a test model's
  // head count by copying every tensor into a file with different metadata.
  TestModelSpec spec;
  spec.vocab_size = 64;
  auto good = GgufFile::Open(Write(spec, "good.gguf"));
  ASSERT_TRUE(good.ok());
  GgufWriter bad;
  bad.AddString("general.architecture", "llama");
  bad.AddUint32("llama.embedding_length", 64);
  bad.AddUint32("llama.block_count", 2);
  bad.AddUint32("llama.feed_forward_length", 128);
  bad.AddUint32("llama.attention.head_count", 4);
  bad.AddUint32("llama.attention.head_count_kv", 4);  // the file has 2
  for (const GgufTensorInfo& t : (*good)->tensors()) {
    bad.AddTensor(t.name, *t.dtype, t.shape, std::vector<uint8_t>(t.data, t.data + t.bytes));
  }
  const std::string shapes = TmpPath("bad_shapes.gguf");
  ASSERT_TRUE(bad.WriteFile(shapes).ok());
  r = OpenModel(shapes);
  EXPECT_EQ(r.status().code(), absl::StatusCode::kInvalidArgument);
  EXPECT_THAT(r.status().message(), HasSubstr("blk.0.attn_k.weight"));
  EXPECT_THAT(r.status().message(), HasSubstr("config implies [64, 64]"));

  // Missing config.json in an HF directory.
  std::filesystem::create_directories(TmpPath("empty_hf"));
  r = OpenModel(TmpPath("empty_hf"));
  EXPECT_EQ(r.status().code(), absl::StatusCode::kNotFound);
  EXPECT_THAT(r.status().message(), HasSubstr("config.json"));

  // Unknown HF model type and broken JSON.
  spec.format = TestModelFormat::kHf;
  const std::string hf = Write(spec, "hf_bad");
  std::ofstream(hf + "/config.json") << R"({"model_type": "gemma", "hidden_size": 64})";
  r = OpenModel(hf);
  EXPECT_EQ(r.status().code(), absl::StatusCode::kUnimplemented);
  EXPECT_THAT(r.status().message(), HasSubstr("unsupported model_type 'gemma'"));
  std::ofstream(hf + "/config.json") << "{ not json";
  r = OpenModel(hf);
  EXPECT_THAT(r.status().message(), HasSubstr("config.json: not a JSON object"));

  // A truncated safetensors file.
  const std::string hf2 = Write(spec, "hf_trunc");
  std::filesystem::resize_file(hf2 + "/model.safetensors", 1000);
  r = OpenModel(hf2);
  EXPECT_EQ(r.status().code(), absl::StatusCode::kInvalidArgument);
  EXPECT_THAT(r.status().message(), HasSubstr("model.safetensors"));
}

TEST(ModelSourceTest, UnsupportedTensorTypeIsNamed) {
  GgufWriter w;
  w.AddString("general.architecture", "llama");
  w.AddUint32("llama.embedding_length", 256);
  w.AddUint32("llama.block_count", 1);
  w.AddUint32("llama.feed_forward_length", 256);
  w.AddUint32("llama.attention.head_count", 4);
  w.AddTensor("token_embd.weight", DType::kF32, {4, 256}, std::vector<uint8_t>(4 * 256 * 4));
  const std::string path = TmpPath("k_quant.gguf");
  auto bytes = w.Serialize();
  ASSERT_TRUE(WriteBytes(path, bytes.data(), bytes.size()).ok());
  // Patch the tensor's GGML type (F32 -> IQ3_S, 21; K-quants and IQ4 are read) in
  // place: the type field sits right after the name and the two dims.
  const std::string needle = "token_embd.weight";
  auto it = std::search(bytes.begin(), bytes.end(), needle.begin(), needle.end());
  ASSERT_NE(it, bytes.end());
  const size_t type_at = (it - bytes.begin()) + needle.size() + 4 + 16;
  bytes[type_at] = 21;
  ASSERT_TRUE(WriteBytes(path, bytes.data(), bytes.size()).ok());
  auto r = OpenModel(path);
  EXPECT_EQ(r.status().code(), absl::StatusCode::kUnimplemented);
  EXPECT_THAT(r.status().message(), HasSubstr("token_embd.weight has type IQ3_S"));
}

}  // namespace
}  // namespace tpserve
