// Feeds every file under the given corpus directories, and every prefix of
// each (truncations), through a fuzz target's LLVMFuzzerTestOneInput — the
// same entry point libFuzzer drives — as a plain test. Fails if the target
// returns non-zero; a crash fails the test by itself.
//
//   gguf_corpus_test fuzz/model/corpus/gguf
#include <cstdint>
#include <cstdio>
#include <filesystem>
#include <fstream>
#include <iterator>
#include <vector>

extern "C" int LLVMFuzzerTestOneInput(const uint8_t* data, size_t size);

int main(int argc, char** argv) {
  int inputs = 0;
  for (int a = 1; a < argc; ++a) {
    for (const auto& e : std::filesystem::directory_iterator(argv[a])) {
      std::ifstream in(e.path(), std::ios::binary);
      const std::vector<uint8_t> bytes((std::istreambuf_iterator<char>(in)),
                                       std::istreambuf_iterator<char>());
      // Whole file, then every prefix (truncated files), then single-byte flips.
      for (size_t n = 0; n <= bytes.size(); ++n) {
        std::vector<uint8_t> prefix(
            bytes.begin(), bytes.begin() + n);  // exact-size heap copy for ASan-like bounds
        if (LLVMFuzzerTestOneInput(prefix.data(), prefix.size()) != 0) return 1;
        ++inputs;
      }
      for (size_t i = 0; i < bytes.size() && i < 512; ++i) {
        std::vector<uint8_t> flipped = bytes;
        flipped[i] ^= 0xFF;
        if (LLVMFuzzerTestOneInput(flipped.data(), flipped.size()) != 0) return 1;
        ++inputs;
      }
    }
  }
  std::printf("ran %d inputs\n", inputs);
  return inputs > 0 ? 0 : 1;
}
