// tpserve-inspect: prints what tpserve reads from a model — config, tensors
// (internal name, file name, type, shape, bytes), tokenizer summary and chat
// template.
//
//   tpserve-inspect models/SmolLM2-135M-Instruct.Q4_1.gguf
//   tpserve-inspect --tensors=false /models/Qwen2-0.5B
//   tpserve-inspect --tensors=false --template=false --tokenize="Hello there" MODEL
#include <cstdio>
#include <iostream>

#include "absl/flags/flag.h"
#include "absl/flags/parse.h"
#include "absl/flags/usage.h"
#include "absl/strings/escaping.h"
#include "absl/strings/str_cat.h"
#include "absl/strings/str_join.h"
#include "router/tokenizer/tokenizer.h"
#include "router/tokenizer/tokenizer_gguf.h"
#include "worker/model/model_source.h"

ABSL_FLAG(bool, tensors, true, "list every tensor");
ABSL_FLAG(bool, template, true, "print the chat template");
ABSL_FLAG(std::string, tokenize, "",
          "also tokenize this text (special tokens parsed) and print ids and pieces");

namespace tpserve {
namespace {

const char* RopeScalingName(RopeScaling::Type t) {
  switch (t) {
    case RopeScaling::Type::kNone:
      return "none";
    case RopeScaling::Type::kLinear:
      return "linear";
    case RopeScaling::Type::kLlama3:
      return "llama3";
  }
  return "?";
}

void PrintConfig(const ModelSource& m) {
  const ModelConfig& c = m.config();
  std::cout << "model: " << m.path() << " (" << m.format() << ")\n"
            << "  architecture      " << c.architecture << "\n"
            << "  name              " << c.name << "\n"
            << "  hidden_size       " << c.hidden_size << "\n"
            << "  num_layers        " << c.num_layers << "\n"
            << "  num_heads         " << c.num_heads << "\n"
            << "  num_kv_heads      " << c.num_kv_heads << "\n"
            << "  head_dim          " << c.head_dim << "\n"
            << "  ffn_size          " << c.ffn_size << "\n"
            << "  vocab_size        " << c.vocab_size << "\n"
            << "  context_length    " << c.context_length << "\n"
            << "  rms_norm_eps      " << c.rms_norm_eps << "\n"
            << "  rope_theta        " << c.rope_theta << "\n"
            << "  rope_scaling      " << RopeScalingName(c.rope_scaling.type);
  if (c.rope_scaling.type != RopeScaling::Type::kNone)
    std::cout << " factor " << c.rope_scaling.factor;
  if (c.rope_scaling.type == RopeScaling::Type::kLlama3) {
    std::cout << " low " << c.rope_scaling.low_freq_factor << " high "
              << c.rope_scaling.high_freq_factor << " original_max_position "
              << c.rope_scaling.original_max_position;
  }
  std::cout << "\n"
            << "  rope_layout       " << (c.rope_neox ? "neox (rotate-half)" : "adjacent pairs")
            << "\n"
            << "  tie_embeddings    " << (c.tie_embeddings ? "yes" : "no") << "\n"
            << "  qkv_bias          " << (c.qkv_bias ? "yes" : "no") << "\n"
            << "  bos/eos/pad ids   " << c.bos_id << " / " << c.eos_id << " / " << c.pad_id << "\n"
            << "  stop_ids          " << absl::StrJoin(c.stop_ids, ", ") << "\n";
}

void PrintTensors(const ModelSource& m) {
  const std::vector<TensorInfo> ts = m.tensors();
  uint64_t total = 0;
  for (const TensorInfo& t : ts) total += t.bytes;
  std::cout << "tensors: " << ts.size() << ", " << total << " bytes\n";
  for (const TensorInfo& t : ts) {
    std::string line = absl::StrCat("  ", t.name);
    line.resize(std::max<size_t>(line.size() + 1, 32), ' ');
    absl::StrAppend(&line, DTypeName(t.dtype));
    line.resize(std::max<size_t>(line.size() + 1, 40), ' ');
    absl::StrAppend(&line, "[", absl::StrJoin(t.shape, ", "), "]");
    line.resize(std::max<size_t>(line.size() + 1, 56), ' ');
    absl::StrAppend(&line, t.bytes, " B");
    if (t.source_name != t.name) absl::StrAppend(&line, "  (", t.source_name, ")");
    if (!t.file_type.empty()) absl::StrAppend(&line, "  [", t.file_type, " in the file]");
    std::cout << line << "\n";
  }
}

void PrintTokenizer(const ModelSource& m, bool with_template) {
  const TokenizerSummary& t = m.tokenizer();
  std::cout << "tokenizer:\n"
            << "  model             " << t.model << "\n"
            << "  tokens            " << t.vocab_size << "\n"
            << "  merges            " << t.num_merges << "\n"
            << "  bos_token         " << t.bos_token << "\n"
            << "  eos_token         " << t.eos_token << "\n";
  if (!t.tokenizer_json.empty()) std::cout << "  tokenizer.json    " << t.tokenizer_json << "\n";
  if (t.chat_template.empty()) {
    std::cout << "chat template: none\n";
  } else if (with_template) {
    std::cout << "chat template:\n" << t.chat_template << "\n";
  } else {
    std::cout << "chat template: " << t.chat_template.size() << " characters\n";
  }
}

// Tokenizes with router/tokenizer: GGUF metadata, or the HF tokenizer.json.
bool PrintTokens(const ModelSource& m, const std::string& text) {
  absl::StatusOr<TokenizerData> data =
      m.format() == "gguf" ? TokenizerDataFromGguf(m.path())
                           : TokenizerDataFromTokenizerJson(m.tokenizer().tokenizer_json);
  if (!data.ok()) {
    std::cerr << "tpserve-inspect: tokenizer: " << data.status().message() << "\n";
    return false;
  }
  absl::StatusOr<Tokenizer> tok = Tokenizer::Create(std::move(*data));
  if (!tok.ok()) {
    std::cerr << "tpserve-inspect: tokenizer: " << tok.status().message() << "\n";
    return false;
  }
  absl::StatusOr<std::vector<int32_t>> ids = tok->Encode(text, false);
  if (!ids.ok()) {
    std::cerr << "tpserve-inspect: tokenize: " << ids.status().message() << "\n";
    return false;
  }
  std::cout << "tokenize: " << ids->size() << " tokens\n  ids " << absl::StrJoin(*ids, " ") << "\n";
  for (int32_t id : *ids) {
    std::cout << "  " << id << "\t\"" << absl::CEscape(tok->TokenBytes(id)) << "\"\n";
  }
  return true;
}

}  // namespace
}  // namespace tpserve

int main(int argc, char** argv) {
  absl::SetProgramUsageMessage(
      "tpserve-inspect [--tensors=false] [--template=false] [--tokenize=TEXT] MODEL");
  std::vector<char*> args = absl::ParseCommandLine(argc, argv);
  if (args.size() != 2) {
    std::cerr << "usage: tpserve-inspect [--tensors=false] [--template=false] [--tokenize=TEXT] "
                 "MODEL (a .gguf file or an HF directory)\n";
    return 2;
  }
  auto model = tpserve::OpenModel(args[1]);
  if (!model.ok()) {
    std::cerr << "tpserve-inspect: " << model.status().message() << "\n";
    return 1;
  }
  tpserve::PrintConfig(**model);
  if (absl::GetFlag(FLAGS_tensors)) tpserve::PrintTensors(**model);
  tpserve::PrintTokenizer(**model, absl::GetFlag(FLAGS_template));
  const std::string text = absl::GetFlag(FLAGS_tokenize);
  if (!text.empty() && !tpserve::PrintTokens(**model, text)) return 1;
  return 0;
}
