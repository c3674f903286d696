// make_test_model: writes a tiny random Llama model (see test_model.h).
//
//   make_test_model --out=/tmp/tiny.gguf --dtype=q8_0 --heads=8 --kv_heads=2
//   make_test_model --out=/tmp/tiny_hf --format=hf --dtype=bf16 --qkv_bias --arch=qwen2
#include <iostream>

#include "absl/flags/flag.h"
#include "absl/flags/parse.h"
#include "absl/strings/ascii.h"
#include "tests/testmodel/test_model.h"

ABSL_FLAG(std::string, out, "", "output GGUF file or HF directory");
ABSL_FLAG(std::string, format, "gguf", "gguf or hf");
ABSL_FLAG(std::string, arch, "llama", "llama or qwen2");
ABSL_FLAG(std::string, dtype, "f32", "f32, f16, bf16, q8_0, q4_0, q4_1");
ABSL_FLAG(int, hidden, 64, "hidden size");
ABSL_FLAG(int, layers, 2, "layers");
ABSL_FLAG(int, heads, 4, "query heads");
ABSL_FLAG(int, kv_heads, 2, "key/value heads");
ABSL_FLAG(int, head_dim, 0, "head dim (0: hidden / heads)");
ABSL_FLAG(int, ffn, 128, "FFN size");
ABSL_FLAG(int, vocab, 0, "vocabulary size (0: all of the vocab source)");
ABSL_FLAG(bool, qkv_bias, false, "Q/K/V biases");
ABSL_FLAG(bool, tied, true, "tie the LM head to the embedding");
ABSL_FLAG(uint64_t, seed, 1, "weight seed");
ABSL_FLAG(std::string, vocab_source, "",
          "GGUF to copy the tokenizer from (default: the default model)");

int main(int argc, char** argv) {
  absl::ParseCommandLine(argc, argv);
  tpserve::TestModelSpec spec;
  const std::string out = absl::GetFlag(FLAGS_out);
  if (out.empty()) {
    std::cerr << "make_test_model: --out is required\n";
    return 2;
  }
  spec.format = absl::GetFlag(FLAGS_format) == "hf" ? tpserve::TestModelFormat::kHf
                                                    : tpserve::TestModelFormat::kGguf;
  spec.architecture = absl::GetFlag(FLAGS_arch);
  const std::string d = absl::AsciiStrToLower(absl::GetFlag(FLAGS_dtype));
  using tpserve::DType;
  if (d == "f32")
    spec.dtype = DType::kF32;
  else if (d == "f16")
    spec.dtype = DType::kF16;
  else if (d == "bf16")
    spec.dtype = DType::kBF16;
  else if (d == "q8_0")
    spec.dtype = DType::kQ8_0;
  else if (d == "q4_0")
    spec.dtype = DType::kQ4_0;
  else if (d == "q4_1")
    spec.dtype = DType::kQ4_1;
  else {
    std::cerr << "make_test_model: unknown --dtype " << d << "\n";
    return 2;
  }
  spec.hidden_size = absl::GetFlag(FLAGS_hidden);
  spec.num_layers = absl::GetFlag(FLAGS_layers);
  spec.num_heads = absl::GetFlag(FLAGS_heads);
  spec.num_kv_heads = absl::GetFlag(FLAGS_kv_heads);
  spec.head_dim = absl::GetFlag(FLAGS_head_dim);
  spec.ffn_size = absl::GetFlag(FLAGS_ffn);
  spec.vocab_size = absl::GetFlag(FLAGS_vocab);
  spec.qkv_bias = absl::GetFlag(FLAGS_qkv_bias);
  spec.tie_embeddings = absl::GetFlag(FLAGS_tied);
  spec.seed = absl::GetFlag(FLAGS_seed);
  spec.vocab_source = absl::GetFlag(FLAGS_vocab_source);
  const absl::Status s = tpserve::WriteTestModel(spec, out);
  if (!s.ok()) {
    std::cerr << "make_test_model: " << s << "\n";
    return 1;
  }
  std::cout << "wrote " << out << "\n";
  return 0;
}
