// ModelSource reads of K-quant tensors in GGUF files made by llama.cpp's own
// quantizer (llamacpp_quantize.py at test time, from a random F32 test model):
// Read, ReadRows and ReadColumns return owned Q8_0 tensors whose bytes equal
// the gguf package's quantize(Q8_0) of its dequantization of the same slice
// (kquant_read_check.py, run from $TPSERVE_ROOT/.venv); row slices agree with
// the whole tensor; column slices need only 32-value alignment.
#include <cstdlib>
#include <cstring>
#include <set>
#include <string>
#include <vector>

#include "absl/strings/str_cat.h"
#include "gmock/gmock.h"
#include "gtest/gtest.h"
#include "nlohmann/json.hpp"
#include "tests/testmodel/gguf_writer.h"
#include "tests/testmodel/test_model.h"
#include "worker/model/model_source.h"

namespace tpserve {
namespace {

using ::testing::HasSubstr;

std::string Root() {
  const char* r = std::getenv("TPSERVE_ROOT");
  return r != nullptr ? r : ".";
}

std::string Tmp(const std::string& name) {
  const char* t = std::getenv("TEST_TMPDIR");
  return std::string(t != nullptr ? t : "/tmp") + "/" + name;
}

TEST(ModelSourceKQuantTest, ConvertedReadsMatchGgufPackage) {
  const std::string python = Root() + "/.venv/bin/python3";
  TestModelSpec spec;
  spec.hidden_size = 256;
  spec.ffn_size = 768;
  spec.num_layers = 1;
  spec.num_heads = 4;
  spec.num_kv_heads = 2;
  spec.tie_embeddings = false;
  spec.vocab_size = 512;
  spec.dtype = DType::kF32;
  const std::string f32 = Tmp("src_f32.gguf");
  ASSERT_TRUE(WriteTestModel(spec, f32).ok());

  std::set<std::string> seen_types;
  for (const char* ftype : {"Q4_K_M", "Q5_K_M", "Q3_K_M", "Q2_K"}) {
    SCOPED_TRACE(ftype);
    const std::string path = Tmp(absl::StrCat("src_", ftype, ".gguf"));
    const std::string q =
        absl::StrCat(python, " ", Root(), "/worker/engine/kquant/llamacpp_quantize.py ", f32, " ",
                     path, " ", ftype, " 2 > ", Tmp("quantize.log"), " 2>&1");
    ASSERT_EQ(std::system(q.c_str()), 0) << "llama.cpp quantization failed: " << q;
    auto m = OpenModel(path);
    ASSERT_TRUE(m.ok()) << m.status();
    nlohmann::json tensors = nlohmann::json::array();
    int k = 0;
    auto dump = [&](const TensorInfo& info, const HostTensor& t, nlohmann::json rows,
                    nlohmann::json cols) {
      const std::string file = Tmp(absl::StrCat("dump_", k++));
      ASSERT_TRUE(WriteBytes(file, t.data, t.bytes).ok());
      tensors.push_back({{"name", info.name}, {"rows", rows}, {"cols", cols}, {"dump", file}});
    };
    for (const TensorInfo& info : (*m)->tensors()) {
      if (info.file_type.empty()) continue;
      SCOPED_TRACE(info.name);
      seen_types.insert(info.file_type);
      ASSERT_EQ(info.dtype, DType::kQ8_0);
      ASSERT_EQ(info.shape.size(), 2u);
      const int64_t rows = info.shape[0], cols = info.shape[1];
      const int64_t row_bytes = RowBytes(DType::kQ8_0, cols);
      EXPECT_EQ(info.bytes, static_cast<uint64_t>(rows * row_bytes));

      auto whole = (*m)->Read(info.name);
      ASSERT_TRUE(whole.ok()) << whole.status();
      EXPECT_EQ(whole->dtype, DType::kQ8_0);
      EXPECT_EQ(whole->bytes, info.bytes);
      EXPECT_NE(whole->owner, nullptr);
      dump(info, *whole, nullptr, nullptr);

      const int64_t rb = rows / 4, rn = rows / 2;
      auto part = (*m)->ReadRows(info.name, rb, rn);
      ASSERT_TRUE(part.ok()) << part.status();
      EXPECT_EQ(part->shape, (std::vector<int64_t>{rn, cols}));
      ASSERT_EQ(part->bytes, static_cast<uint64_t>(rn * row_bytes));
      EXPECT_EQ(std::memcmp(part->data, whole->data + rb * row_bytes, part->bytes), 0);
      dump(info, *part, {rb, rn}, nullptr);

      // Starts inside a 256-value K block: only Q8_0's 32 alignment is needed.
      const int64_t cb = cols / 2 - 32, cn = cols / 4 + 64;
      auto colpart = (*m)->ReadColumns(info.name, cb, cn);
      ASSERT_TRUE(colpart.ok()) << colpart.status();
      EXPECT_EQ(colpart->shape, (std::vector<int64_t>{rows, cn}));
      dump(info, *colpart, nullptr, {cb, cn});

      auto bad = (*m)->ReadColumns(info.name, 16, 32);
      EXPECT_EQ(bad.status().code(), absl::StatusCode::kInvalidArgument);
      EXPECT_THAT(bad.status().message(), HasSubstr("32-value block boundaries"));
    }
    EXPECT_GE(k, 3 * 8) << "every matrix is a K-quant";
    const std::string manifest = nlohmann::json{{"gguf", path}, {"tensors", tensors}}.dump();
    ASSERT_TRUE(WriteBytes(Tmp("read_manifest.json"), manifest.data(), manifest.size()).ok());
    const std::string cmd =
        absl::StrCat(python, " ", Root(), "/worker/engine/kquant/kquant_read_check.py ",
                     Tmp("read_manifest.json"));
    EXPECT_EQ(std::system(cmd.c_str()), 0) << "reference check failed: " << cmd;
  }
  EXPECT_EQ(seen_types, (std::set<std::string>{"Q2_K", "Q3_K", "Q4_K", "Q5_K", "Q6_K"}));
}

}  // namespace
}  // namespace tpserve
