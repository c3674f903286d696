// Runs tokenizer_fuzz.cc's LLVMFuzzerTestOneInput over the checked-in seed
// corpus as a plain test: every seed, every prefix of it (cut-off UTF-8) and
// every single-byte flip. A broken invariant traps; a clean run prints the
// number of inputs.
//
//   tokenizer_corpus_test fuzz/tokenizer/corpus
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
      for (size_t n = 0; n <= bytes.size(); ++n) {
        std::vector<uint8_t> prefix(bytes.begin(), bytes.begin() + n);
        LLVMFuzzerTestOneInput(prefix.data(), prefix.size());
        ++inputs;
      }
      for (size_t i = 1; i < bytes.size(); ++i) {
        std::vector<uint8_t> flipped = bytes;
        flipped[i] ^= 0x80;
        LLVMFuzzerTestOneInput(flipped.data(), flipped.size());
        ++inputs;
      }
    }
  }
  std::printf("ran %d inputs\n", inputs);
  return inputs > 0 ? 0 : 1;
}
