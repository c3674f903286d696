// ModelFingerprint: a cheap content fingerprint of a model's files, so ranks
// of one group can prove they loaded the same weights (a copy with equal
// shapes but other values must not join silently).
//
// What it reads, per file (a GGUF file, or a Hugging Face directory's
// config.json and *.safetensors in name order): the size, the first 1 MiB
// (the GGUF header / safetensors JSON header and the first tensors), the last
// 4 KiB, and 256 chunks of 4 KiB spaced evenly through the file — about
// 2 MiB per file whatever the model size, so a 100 GB model fingerprints in
// milliseconds. It is a sampled hash: two files that differ only between the
// sampled chunks get the same fingerprint. Weights changed throughout (a
// re-quantized, re-trained or scrambled copy) change it.
//
//   TPS_ASSIGN_OR_RETURN(std::string fp, ModelFingerprint(path));  // "fp1-3f2a..."
#ifndef TPSERVE_WORKER_MODEL_MODEL_FINGERPRINT_H_
#define TPSERVE_WORKER_MODEL_MODEL_FINGERPRINT_H_

#include <string>

#include "absl/status/statusor.h"

namespace tpserve {

// `path` is a model file or a Hugging Face model directory. NOT_FOUND or
// UNAVAILABLE (naming the file) when a file cannot be read.
[[nodiscard]] absl::StatusOr<std::string> ModelFingerprint(const std::string& path);

}  // namespace tpserve

#endif  // TPSERVE_WORKER_MODEL_MODEL_FINGERPRINT_H_
