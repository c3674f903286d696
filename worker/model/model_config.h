// ModelConfig: the Llama-family hyper-parameters tpserve needs, filled from a
// GGUF file's metadata or a Hugging Face config.json (see model_loader.h).
//
//   ModelConfig c = ...;
//   int q_dim = c.num_heads * c.head_dim;  // width of the query projection
#ifndef TPSERVE_WORKER_MODEL_MODEL_CONFIG_H_
#define TPSERVE_WORKER_MODEL_MODEL_CONFIG_H_

#include <cstdint>
#include <string>
#include <vector>

#include "formats/rope_scaling.h"

namespace tpserve {

struct ModelConfig {
  std::string architecture;  // "llama", "mistral", "qwen2" (SmolLM is "llama")
  std::string name;          // general.name or the directory name
  int hidden_size = 0;       // d_model
  int num_layers = 0;
  int num_heads = 0;     // query heads
  int num_kv_heads = 0;  // key/value heads (GQA when < num_heads)
  int head_dim = 0;      // usually hidden_size / num_heads
  int ffn_size = 0;      // SwiGLU intermediate size
  int vocab_size = 0;
  int context_length = 0;  // max positions the model was trained for
  float rms_norm_eps = 1e-5f;
  float rope_theta = 10000.0f;
  RopeScaling rope_scaling;
  // RoPE pairing. false: adjacent pairs (x[2i], x[2i+1]) — llama.cpp's layout
  // for GGUF "llama" models, whose converter permuted Q/K rows. true: halves
  // (x[i], x[i + head_dim/2]) — Hugging Face's rotate_half, and GGUF "qwen2".
  bool rope_neox = false;
  bool tie_embeddings = false;  // LM head reuses token_embd.weight
  bool qkv_bias = false;        // Qwen2: attn_q/k/v have biases
  int32_t bos_id = -1;
  int32_t eos_id = -1;
  int32_t pad_id = -1;
  std::vector<int32_t> stop_ids;  // eos plus any other end-of-turn ids
};

}  // namespace tpserve

#endif  // TPSERVE_WORKER_MODEL_MODEL_CONFIG_H_
