// K-quant GGUF models end to end, against llama.cpp (an implementation nobody
// here wrote). A small random Llama (hidden 256, FFN 768, 2 layers, the
// default model's vocabulary) is written as F32, quantized at test time by
// llama.cpp's own llama_model_quantize (llamacpp_quantize.py)
// to Q4_K_M, Q5_K_M, Q6_K, Q3_K_M and Q2_K, and each file is run by llama.cpp
// (llamacpp_reference.py) and by our engine (TP=1), which reads the K-quant
// tensors converted to Q8_0. Per file type:
//   - the file really holds the K types (GGUF tensor types) and ModelSource
//     reports them as Q8_0 with file_type set;
//   - prompt-end logits: max |ours - llama.cpp| / max |llama.cpp| <= kMaxRel,
//     and smaller than the same measure for our engine on the F32 original
//     (so the K-quant values are decoded, not approximated by the source);
//   - greedy continuations match or diverge only at near-ties (top-two gap
//     <= kNearTie by either side), as in engine_llamacpp_test.
// A second test does the same on the default model (a real one, whose logits
// have real gaps) requantized by llama.cpp to Q6_K, Q4_K_M (with Q5_0),
// Q5_K_M (with Q5_1), Q3_K_M (with IQ4_NL), IQ4_XS and IQ4_NL.
//
//   bazel test //worker/engine/kquant:engine_kquant_llamacpp_test  (TPSERVE_ROOT set)
#include <algorithm>
#include <cmath>
#include <cstdio>
#include <cstdlib>
#include <fstream>
#include <iterator>
#include <set>
#include <string>
#include <vector>

#include "absl/strings/match.h"
#include "absl/strings/str_cat.h"
#include "common/status.h"
#include "formats/gguf_reader.h"
#include "gtest/gtest.h"
#include "nlohmann/json.hpp"
#include "tests/testmodel/test_model.h"
#include "worker/engine/multi_rank_test_util.h"
#include "worker/model/model_source.h"

namespace tpserve {
namespace {

constexpr int kNewTokens = 32;
constexpr double kNearTie = 0.5;  // logit units, as engine_llamacpp_test
// Prompt-end logits, max |diff| relative to max |llama.cpp logit|. Measured
// on this model: 0.019-0.024 when both sides run the same Q8_0 file (the two
// engines' 8-bit activation quantization), 0.034-0.059 on the K-quant files
// (our Q8_0 re-quantization adds about what F32 -> Q8_0 does); our engine on
// the F32 original is 0.08-0.11 away from llama.cpp's Q6_K, 0.6-0.8 from Q2_K.
constexpr double kMaxRel = 0.08;

const char* kPrompts[] = {
    "The capital of France is",
    "Once upon a time, there was a little",
    "def fibonacci(n):",
    "<|im_start|>user\nWhat is the boiling point of water?<|im_end|>\n<|im_start|>assistant\n",
};
constexpr int kNumPrompts = static_cast<int>(std::size(kPrompts));

struct FileType {
  const char* ftype;              // llama.cpp's name
  std::set<std::string> k_types;  // K types the file must hold
};
const FileType kFileTypes[] = {
    {"Q4_K_M", {"Q4_K", "Q6_K"}}, {"Q5_K_M", {"Q5_K", "Q6_K"}}, {"Q6_K", {"Q6_K"}},
    {"Q3_K_M", {"Q3_K"}},         {"Q2_K", {"Q2_K"}},
};

std::string Root() {
  const char* r = std::getenv("TPSERVE_ROOT");
  return r != nullptr ? r : ".";
}

std::string Tmp(const std::string& name) {
  const char* t = std::getenv("TEST_TMPDIR");
  return std::string(t != nullptr ? t : "/tmp") + "/" + name;
}

struct Reference {
  std::vector<int32_t> ids, tokens;
  std::vector<double> gaps;
  std::vector<float> logits;  // prompt-end
};

std::vector<Reference> RunLlamaCpp(const std::string& model) {
  const std::string root = Root();
  {
    std::ofstream f(Tmp("prompts.txt"));
    for (const char* p : kPrompts) {
      std::string escaped;
      for (const char* c = p; *c != 0; ++c)
        escaped += *c == '\n' ? std::string("\\n") : std::string(1, *c);
      f << escaped << "\n";
    }
  }
  const std::string cmd =
      absl::StrCat("OMP_WAIT_POLICY=passive ", root, "/.venv/bin/python3 ", root,
                   "/worker/engine/kquant/llamacpp_reference.py ", model, " ", kNewTokens, " 2 ",
                   Tmp("logits.f32"), " < ", Tmp("prompts.txt"), " > ", Tmp("llamacpp.json"));
  EXPECT_EQ(std::system(cmd.c_str()), 0) << "llama.cpp reference failed: " << cmd;
  std::ifstream in(Tmp("llamacpp.json"));
  nlohmann::json j = nlohmann::json::parse(in, nullptr, /*allow_exceptions=*/false);
  std::vector<Reference> refs;
  if (!j.is_array()) return refs;
  std::ifstream lf(Tmp("logits.f32"), std::ios::binary);
  std::vector<char> raw((std::istreambuf_iterator<char>(lf)), {});
  const size_t vocab = raw.size() / 4 / std::max<size_t>(j.size(), 1);
  for (size_t p = 0; p < j.size(); ++p) {
    Reference r;
    r.ids = j[p]["ids"].get<std::vector<int32_t>>();
    r.tokens = j[p]["tokens"].get<std::vector<int32_t>>();
    r.gaps = j[p]["gaps"].get<std::vector<double>>();
    r.logits.resize(vocab);
    std::copy_n(reinterpret_cast<const float*>(raw.data()) + p * vocab, vocab, r.logits.data());
    refs.push_back(std::move(r));
  }
  return refs;
}

// Per prompt: prompt-end logits (vocab), greedy tokens, top-two gaps.
absl::StatusOr<std::vector<float>> OurRun(Engine& e, const std::vector<Reference>& refs) {
  std::vector<float> out;
  uint64_t seq = 100;
  for (const Reference& r : refs) {
    std::vector<float> tokens, gaps, logits;
    TPS_RETURN_IF_ERROR(GreedyContinuation(e, ++seq, r.ids, kNewTokens, &tokens, &gaps, &logits));
    out.insert(out.end(), logits.begin(), logits.end());
    out.insert(out.end(), tokens.begin(), tokens.end());
    out.insert(out.end(), gaps.begin(), gaps.end());
  }
  return out;
}

std::vector<float> RunOurs(const std::string& model, const std::vector<Reference>& refs) {
  EngineOptions o;
  o.num_threads = 2;
  o.kv_cache_bytes = int64_t{16} << 20;
  RankRun run = RunOnRanks(
      1, {model}, o, [&](Engine& e, int) { return OurRun(e, refs); }, absl::Seconds(300));
  EXPECT_TRUE(run.ok()) << run.ErrorSummary();
  return run.rank0;
}

double MaxRel(const std::vector<float>& ref, const float* ours) {
  double diff = 0, scale = 0;
  for (size_t i = 0; i < ref.size(); ++i) {
    diff = std::max(diff, std::fabs(static_cast<double>(ours[i]) - ref[i]));
    scale = std::max(scale, std::fabs(static_cast<double>(ref[i])));
  }
  return scale > 0 ? diff / scale : diff;
}

// Runs llama.cpp and our engine on `path`; checks prompt-end logits (max
// relative diff <= max_rel, and below our engine's on `baseline` unless
// empty) and greedy continuations (match or diverge at a near-tie).
void CompareWithLlamaCpp(const char* label, const std::string& path, const std::string& baseline,
                         double max_rel) {
  const std::vector<Reference> refs = RunLlamaCpp(path);
  ASSERT_EQ(refs.size(), std::size(kPrompts));
  const size_t vocab = refs[0].logits.size();
  ASSERT_GT(vocab, 0u);
  const size_t per_prompt = vocab + 2 * kNewTokens;
  const std::vector<float> ours = RunOurs(path, refs);
  const std::vector<float> ours_f32 =
      baseline.empty() ? std::vector<float>(ours.size(), 0.0f) : RunOurs(baseline, refs);
  ASSERT_EQ(ours.size(), per_prompt * kNumPrompts);
  ASSERT_EQ(ours_f32.size(), per_prompt * kNumPrompts);
  int exact = 0;
  for (int p = 0; p < kNumPrompts; ++p) {
    const float* o = ours.data() + p * per_prompt;
    const double rel = MaxRel(refs[p].logits, o);
    const double rel_f32 = MaxRel(refs[p].logits, ours_f32.data() + p * per_prompt);
    EXPECT_LE(rel, max_rel) << "prompt " << p;
    if (!baseline.empty()) {
      EXPECT_LT(rel, rel_f32) << "prompt " << p
                              << ": the original is closer to llama.cpp than our converted read";
    }
    const float* tokens = o + vocab;
    const float* gaps = tokens + kNewTokens;
    int diverge = -1;
    for (int i = 0; i < kNewTokens && diverge < 0; ++i) {
      if (static_cast<int32_t>(tokens[i]) != refs[p].tokens[i]) diverge = i;
    }
    printf("%s prompt %d: logits max rel diff %.5f", label, p, rel);
    if (!baseline.empty()) printf(" (original: %.5f)", rel_f32);
    printf(", ");
    if (diverge < 0) {
      ++exact;
      printf("all %d greedy tokens match\n", kNewTokens);
      continue;
    }
    const double gap = std::min<double>(refs[p].gaps[diverge], gaps[diverge]);
    printf("diverges at token %d, top-2 gap there %.4f\n", diverge, gap);
    EXPECT_LE(gap, kNearTie) << "prompt " << p << " diverges at " << diverge
                             << " without a near-tie";
  }
  printf("%s: %d of %d prompts match llama.cpp exactly for %d tokens\n", label, exact, kNumPrompts,
         kNewTokens);
}

TEST(EngineKQuantLlamaCppTest, LlamaCppQuantizedModelsMatchLlamaCpp) {
  const std::string lib = Root() + "/.deps/llama.cpp-build/bin/libllama.so";
  ASSERT_TRUE(std::ifstream(lib).good())
      << "llama.cpp reference not built (" << lib << "): run scripts/setup.sh";
  TestModelSpec spec;
  spec.hidden_size = 256;
  spec.ffn_size = 768;
  spec.num_layers = 2;
  spec.num_heads = 4;
  spec.num_kv_heads = 2;
  spec.dtype = DType::kF32;
  spec.init_scale = 0.08f;  // logits spread over several units
  spec.seed = 7;
  const std::string f32 = Tmp("kq_f32.gguf");
  ASSERT_TRUE(WriteTestModel(spec, f32).ok());

  for (const FileType& ft : kFileTypes) {
    SCOPED_TRACE(ft.ftype);
    const std::string path = Tmp(absl::StrCat("kq_", ft.ftype, ".gguf"));
    const std::string cmd = absl::StrCat(
        Root(), "/.venv/bin/python3 ", Root(), "/worker/engine/kquant/llamacpp_quantize.py ", f32,
        " ", path, " ", ft.ftype, " 2 > ", Tmp("quantize.log"), " 2>&1");
    ASSERT_EQ(std::system(cmd.c_str()), 0) << "llama.cpp quantization failed: " << cmd;

    // The file holds the K types; ModelSource reads them as Q8_0.
    auto g = GgufFile::Open(path);
    ASSERT_TRUE(g.ok()) << g.status();
    std::set<std::string> file_types;
    for (const GgufTensorInfo& t : (*g)->tensors()) file_types.insert(t.ggml_type_name);
    for (const std::string& k : ft.k_types) EXPECT_TRUE(file_types.count(k)) << k;
    auto m = OpenModel(path);
    ASSERT_TRUE(m.ok()) << m.status();
    int converted = 0;
    for (const TensorInfo& t : (*m)->tensors()) {
      if (t.file_type.empty()) continue;
      ++converted;
      EXPECT_EQ(t.dtype, DType::kQ8_0) << t.name;
      EXPECT_TRUE(absl::EndsWith(t.file_type, "_K")) << t.name << " " << t.file_type;
    }
    EXPECT_GE(converted, 1 + 7 * spec.num_layers) << "every matrix is a K-quant";

    CompareWithLlamaCpp(ft.ftype, path, f32, kMaxRel);
  }
}

// The default model (SmolLM2-135M, a real one) requantized by llama.cpp.
// Its hidden size 576 is not a multiple of 256, so llama.cpp makes only the
// 1536-wide ffn_down matrices K-quants and falls back elsewhere: to Q8_0 for
// Q6_K, to Q5_0 / Q5_1 (also converted) for Q4_K_M / Q5_K_M, as in
// published files.
TEST(EngineKQuantLlamaCppTest, RequantizedDefaultModelMatchesLlamaCpp) {
  const std::string lib = Root() + "/.deps/llama.cpp-build/bin/libllama.so";
  ASSERT_TRUE(std::ifstream(lib).good())
      << "llama.cpp reference not built (" << lib << "): run scripts/setup.sh";
  auto quantize = [](const std::string& out, const char* ftype) {
    const std::string cmd =
        absl::StrCat("LLAMACPP_ALLOW_REQUANTIZE=1 ", Root(), "/.venv/bin/python3 ", Root(),
                     "/worker/engine/kquant/llamacpp_quantize.py ", DefaultModelPath(), " ", out,
                     " ", ftype, " 2 > ", Tmp("quantize.log"), " 2>&1");
    return std::system(cmd.c_str()) == 0;
  };
  const std::string q6k = Tmp("smol_Q6_K.gguf");
  ASSERT_TRUE(quantize(q6k, "Q6_K"));
  auto m = OpenModel(q6k);
  ASSERT_TRUE(m.ok()) << m.status();
  int converted = 0;
  for (const TensorInfo& t : (*m)->tensors()) converted += t.file_type == "Q6_K";
  EXPECT_EQ(converted, 30);  // blk.N.ffn_down.weight
  // Measured: 0.038-0.078 (0.017-0.043 when both run the original Q4_1 file,
  // nothing converted); ffn_down's inputs have outliers, which the two
  // engines' activation quantizations (Q8_0 here, Q8_K in llama.cpp) treat
  // differently.
  CompareWithLlamaCpp("SmolLM2 Q6_K", q6k, "", /*max_rel=*/0.12);

  // Presets whose fallbacks are Q5_0 / Q5_1 / IQ4_NL, and llama.cpp's
  // non-linear IQ4 presets: every converted type must be present, and our
  // logits on the file must be closer to llama.cpp's on it than our logits
  // on the Q4_1 original are (so the file's values really were decoded).
  // Bounds: measured 0.03-0.087 (0.134 for 3-bit Q3_K_M, prompt 0), plus
  // margin.
  const struct {
    const char* ftype;
    std::set<std::string> file_types;  // "" = read as stored (F32 norms, Q8_0)
    double max_rel;
  } kRequantized[] = {
      {"Q4_K_M", {"", "Q4_K", "Q5_0", "Q6_K"}, 0.12},
      {"Q5_K_M", {"", "Q5_1", "Q5_K", "Q6_K"}, 0.12},
      {"Q3_K_M", {"", "IQ4_NL", "Q4_K", "Q5_0", "Q5_1", "Q5_K"}, 0.2},
      {"IQ4_XS", {"", "IQ4_NL", "IQ4_XS", "Q5_K"}, 0.12},
      {"IQ4_NL", {"", "IQ4_NL", "Q5_K"}, 0.12},
  };
  for (const auto& r : kRequantized) {
    SCOPED_TRACE(r.ftype);
    const std::string path = Tmp(absl::StrCat("smol_", r.ftype, ".gguf"));
    ASSERT_TRUE(quantize(path, r.ftype));
    auto model = OpenModel(path);
    ASSERT_TRUE(model.ok()) << model.status();
    std::set<std::string> types;
    for (const TensorInfo& t : (*model)->tensors()) types.insert(t.file_type);
    EXPECT_EQ(types, r.file_types);
    const std::string label = absl::StrCat("SmolLM2 ", r.ftype);
    CompareWithLlamaCpp(label.c_str(), path, DefaultModelPath(), r.max_rel);
  }
}

}  // namespace
}  // namespace tpserve
