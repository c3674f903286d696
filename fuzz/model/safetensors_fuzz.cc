// libFuzzer target: the safetensors header parser over arbitrary bytes. Every
// tensor extent it accepts is read, so a bad bounds check shows up under ASan.
//
//   scripts/fuzz.sh safetensors 300      # see docs/fuzzing.md
#include <cstddef>
#include <cstdint>

#include "worker/model/safetensors.h"

extern "C" int LLVMFuzzerTestOneInput(const uint8_t* data, size_t size) {
  auto h =
      tpserve::ParseSafetensorsHeader(absl::Span<const uint8_t>(data, size), "fuzz.safetensors");
  if (!h.ok()) return 0;
  volatile uint8_t sink = 0;
  for (const tpserve::SafetensorsTensor& t : h->tensors) {
    const uint8_t* p = data + h->data_offset + t.begin;
    for (uint64_t i = 0; i < t.bytes(); ++i) sink = sink ^ p[i];
  }
  return 0;
}
