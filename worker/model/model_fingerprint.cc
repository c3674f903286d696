#include "worker/model/model_fingerprint.h"

#include <dirent.h>
#include <fcntl.h>
#include <sys/stat.h>
#include <unistd.h>

#include <algorithm>
#include <cerrno>
#include <cstdint>
#include <cstring>
#include <string>
#include <vector>

#include "absl/strings/match.h"
#include "absl/strings/str_cat.h"
#include "absl/strings/str_format.h"

namespace tpserve {
namespace {

constexpr int64_t kHeadBytes = int64_t{1} << 20;
constexpr int64_t kChunkBytes = 4096;
constexpr int kChunks = 256;

// 64-bit FNV-1a over bytes, mixed per 8-byte word for speed; not
// cryptographic (the threat is an operator's mistake, not an attacker: the
// control plane's authentication is the security boundary).
class Hasher {
 public:
  void Add(const void* data, size_t n) {
    const auto* p = static_cast<const unsigned char*>(data);
    size_t i = 0;
    for (; i + 8 <= n; i += 8) {
      uint64_t w;
      std::memcpy(&w, p + i, 8);
      h_ = (h_ ^ w) * 0x100000001b3ULL;
      h_ ^= h_ >> 29;
    }
    for (; i < n; ++i) h_ = (h_ ^ p[i]) * 0x100000001b3ULL;
  }
  void AddInt(int64_t v) { Add(&v, sizeof(v)); }
  uint64_t value() const { return h_; }

 private:
  uint64_t h_ = 0xcbf29ce484222325ULL;
};

absl::Status ReadAt(int fd, int64_t offset, int64_t n, std::vector<char>& buf,
                    const std::string& path) {
  buf.resize(static_cast<size_t>(n));
  int64_t done = 0;
  while (done < n) {
    const ssize_t got = pread(fd, buf.data() + done, static_cast<size_t>(n - done), offset + done);
    if (got < 0 && errno == EINTR) continue;
    if (got <= 0) {
      return absl::UnavailableError(
          absl::StrCat("reading ", path, " at offset ", offset + done, " for its fingerprint: ",
                       got < 0 ? std::strerror(errno) : "unexpected end of file"));
    }
    done += got;
  }
  return absl::OkStatus();
}

absl::Status HashFile(const std::string& path, Hasher& h) {
  const int fd = open(path.c_str(), O_RDONLY | O_CLOEXEC);
  if (fd < 0) {
    return absl::NotFoundError(absl::StrCat("cannot open ", path, ": ", std::strerror(errno)));
  }
  struct stat st;
  if (fstat(fd, &st) != 0) {
    close(fd);
    return absl::UnavailableError(absl::StrCat("cannot stat ", path, ": ", std::strerror(errno)));
  }
  const int64_t size = st.st_size;
  h.AddInt(size);
  std::vector<char> buf;
  absl::Status s = ReadAt(fd, 0, std::min(size, kHeadBytes), buf, path);
  if (s.ok()) h.Add(buf.data(), buf.size());
  if (s.ok() && size > kHeadBytes) {
    for (int i = 0; i < kChunks && s.ok(); ++i) {
      const int64_t span = size - kHeadBytes - kChunkBytes;
      const int64_t at = kHeadBytes + std::max<int64_t>(0, span) * i / (kChunks - 1);
      s = ReadAt(fd, at, std::min(kChunkBytes, size - at), buf, path);
      if (s.ok()) h.Add(buf.data(), buf.size());
    }
    if (s.ok()) {
      const int64_t tail = std::min(kChunkBytes, size - kHeadBytes);
      s = ReadAt(fd, size - tail, tail, buf, path);
      if (s.ok()) h.Add(buf.data(), buf.size());
    }
  }
  close(fd);
  return s;
}

}  // namespace

absl::StatusOr<std::string> ModelFingerprint(const std::string& path) {
  struct stat st;
  if (stat(path.c_str(), &st) != 0) {
    return absl::NotFoundError(absl::StrCat("model ", path, " does not exist"));
  }
  std::vector<std::string> files;
  if (S_ISDIR(st.st_mode)) {
    DIR* dir = opendir(path.c_str());
    if (dir == nullptr) {
      return absl::UnavailableError(
          absl::StrCat("cannot list ", path, ": ", std::strerror(errno)));
    }
    while (dirent* e = readdir(dir)) {
      const std::string name = e->d_name;
      if (name == "config.json" || absl::EndsWith(name, ".safetensors")) files.push_back(name);
    }
    closedir(dir);
    std::sort(files.begin(), files.end());
    for (std::string& f : files) f = absl::StrCat(path, "/", f);
  } else {
    files.push_back(path);
  }
  Hasher h;
  for (const std::string& f : files) {
    const size_t slash = f.find_last_of('/');
    const std::string base = slash == std::string::npos ? f : f.substr(slash + 1);
    // Directory entries are named; a single file's name is not part of its
    // content (a renamed copy is the same model).
    if (S_ISDIR(st.st_mode)) h.Add(base.data(), base.size());
    absl::Status s = HashFile(f, h);
    if (!s.ok()) return s;
  }
  return absl::StrFormat("fp1-%016x", h.value());
}

}  // namespace tpserve
