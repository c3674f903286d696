// libFuzzer target: GGUF parsing, typed metadata getters, config mapping and
// slicing reads over arbitrary bytes. Every tensor byte the reader hands out
// is read, so an out-of-bounds view shows up under ASan.
//
//   scripts/fuzz.sh gguf 300      # see docs/fuzzing.md
#include <cstddef>
#include <cstdint>

#include "formats/gguf_reader.h"
#include "worker/model/gguf_model.h"

namespace {

uint8_t Touch(const uint8_t* p, uint64_t n) {
  uint8_t x = 0;
  for (uint64_t i = 0; i < n; ++i) x ^= p[i];
  return x;
}

}  // namespace

extern "C" int LLVMFuzzerTestOneInput(const uint8_t* data, size_t size) {
  using namespace tpserve;
  auto f = GgufFile::Parse(nullptr, absl::Span<const uint8_t>(data, size), "fuzz.gguf");
  if (!f.ok()) return 0;
  volatile uint8_t sink = 0;
  for (const GgufKeyValue& kv : (*f)->metadata()) {
    (void)(*f)->GetString(kv.key);
    (void)(*f)->GetInt(kv.key);
    (void)(*f)->GetFloat(kv.key);
    (void)(*f)->GetBool(kv.key);
    (void)(*f)->GetIntArray(kv.key);
    (void)(*f)->GetFloatArray(kv.key);
    if (auto s = (*f)->GetStringArray(kv.key); s.ok()) {
      for (absl::string_view v : *s)
        sink = sink ^ Touch(reinterpret_cast<const uint8_t*>(v.data()), v.size());
    }
  }
  for (const GgufTensorInfo& t : (*f)->tensors()) sink = sink ^ Touch(t.data, t.bytes);
  auto model = GgufModelFromFile(std::move(*f));
  if (!model.ok()) return 0;
  for (const TensorInfo& t : (*model)->tensors()) {
    if (t.shape.empty()) continue;
    auto rows = (*model)->ReadRows(t.name, t.shape[0] / 2, t.shape[0] - t.shape[0] / 2);
    if (rows.ok() && rows->num_elements() <= (1 << 16)) {
      std::vector<float> v = rows->ToFloat();
      if (!v.empty()) sink = sink ^ static_cast<uint8_t>(v.back() > 0);
    }
    if (t.shape.size() == 2) {
      auto cols = (*model)->ReadColumns(t.name, 32, t.shape[1] - 32);
      if (cols.ok()) sink = sink ^ Touch(cols->data, cols->bytes);
    }
  }
  return 0;
}
