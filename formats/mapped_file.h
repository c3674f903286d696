// MappedFile: a read-only, private memory mapping of a whole file (RAII).
// Model readers keep one shared_ptr<MappedFile> and hand out views into it;
// a view stays valid as long as someone holds the shared_ptr.
//
//   TPS_ASSIGN_OR_RETURN(std::shared_ptr<MappedFile> f, MappedFile::Open(path));
//   absl::Span<const uint8_t> bytes = f->bytes();
#ifndef TPSERVE_FORMATS_MAPPED_FILE_H_
#define TPSERVE_FORMATS_MAPPED_FILE_H_

#include <cstddef>
#include <cstdint>
#include <memory>
#include <string>

#include "absl/status/statusor.h"
#include "absl/types/span.h"

namespace tpserve {

class MappedFile {
 public:
  // Maps `path` read-only. An empty file maps to an empty span.
  [[nodiscard]] static absl::StatusOr<std::shared_ptr<MappedFile>> Open(const std::string& path);

  ~MappedFile();
  MappedFile(const MappedFile&) = delete;
  MappedFile& operator=(const MappedFile&) = delete;

  const std::string& path() const { return path_; }
  const uint8_t* data() const { return data_; }
  size_t size() const { return size_; }
  absl::Span<const uint8_t> bytes() const { return {data_, size_}; }

 private:
  MappedFile(std::string path, const uint8_t* data, size_t size)
      : path_(std::move(path)), data_(data), size_(size) {}

  std::string path_;
  const uint8_t* data_ = nullptr;
  size_t size_ = 0;
};

}  // namespace tpserve

#endif  // TPSERVE_FORMATS_MAPPED_FILE_H_
