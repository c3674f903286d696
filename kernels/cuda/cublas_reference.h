// cuBLAS as a benchmark reference only (never on the serving path), loaded
// with dlopen so the benchmark runs on machines without cuBLAS: there the
// baseline reports itself unavailable instead of the binary failing to start.
//
//   CublasReference ref;                 // tries libcublas.so.13, then libcublas.so
//   if (ref.available()) ref.GemmBf16(a, b, c, m, n, k, stream);  // c = a . b^T
#ifndef TPSERVE_KERNELS_CUDA_CUBLAS_REFERENCE_H_
#define TPSERVE_KERNELS_CUDA_CUBLAS_REFERENCE_H_

#include <cuda_runtime.h>

#include <cstdint>
#include <string>

namespace tpserve::kernels::cuda {

class CublasReference {
 public:
  CublasReference();
  ~CublasReference();
  CublasReference(const CublasReference&) = delete;
  CublasReference& operator=(const CublasReference&) = delete;

  bool available() const { return handle_ != nullptr; }
  // Why it is unavailable ("libcublas.so.13: cannot open shared object file").
  const std::string& error() const { return error_; }

  // c (m, n) f32 row-major = a (m, k) bf16 . b (n, k)^T bf16, f32 compute,
  // default algorithm (tensor cores). Returns false on a cuBLAS error.
  bool GemmBf16(const uint16_t* a, const uint16_t* b, float* c, int m, int n, int k,
                cudaStream_t stream);

 private:
  void* lib_ = nullptr;
  void* handle_ = nullptr;  // cublasHandle_t
  void* gemm_ex_ = nullptr;
  void* set_stream_ = nullptr;
  std::string error_;
};

}  // namespace tpserve::kernels::cuda

#endif  // TPSERVE_KERNELS_CUDA_CUBLAS_REFERENCE_H_
