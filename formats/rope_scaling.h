// RopeScaling: how RoPE frequencies are rescaled for long context, as a
// model file states it (GGUF `rope.scaling.*`, Hugging Face `rope_scaling`)
// and as the RoPE kernels apply it (kernels/ops.h RopeParams has the
// formulas). Dependency-free.
//
//   RopeScaling s{.type = RopeScaling::Type::kLinear, .factor = 4.0f};
//   rope_params.scaling = s;
#ifndef TPSERVE_FORMATS_ROPE_SCALING_H_
#define TPSERVE_FORMATS_ROPE_SCALING_H_

namespace tpserve {

struct RopeScaling {
  enum class Type { kNone, kLinear, kLlama3 };
  Type type = Type::kNone;
  float factor = 1.0f;               // kLinear and kLlama3
  float low_freq_factor = 1.0f;      // kLlama3
  float high_freq_factor = 4.0f;     // kLlama3
  int original_max_position = 8192;  // kLlama3
};

}  // namespace tpserve

#endif  // TPSERVE_FORMATS_ROPE_SCALING_H_
