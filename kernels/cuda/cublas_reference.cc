#include "kernels/cuda/cublas_reference.h"

#include <cublas_v2.h>
#include <dlfcn.h>

namespace tpserve::kernels::cuda {
namespace {

using CreateFn = decltype(&cublasCreate_v2);
using DestroyFn = decltype(&cublasDestroy_v2);
using SetStreamFn = decltype(&cublasSetStream_v2);
// cublasGemmEx is overloaded in C++ (a cudaDataType compute-type variant), so
// spell out the C signature.
using GemmExFn = cublasStatus_t (*)(cublasHandle_t, cublasOperation_t, cublasOperation_t, int, int,
                                    int, const void*, const void*, cudaDataType, int, const void*,
                                    cudaDataType, int, const void*, void*, cudaDataType, int,
                                    cublasComputeType_t, cublasGemmAlgo_t);

}  // namespace

CublasReference::CublasReference() {
  for (const char* name : {"libcublas.so.13", "libcublas.so"}) {
    lib_ = dlopen(name, RTLD_NOW | RTLD_LOCAL);
    if (lib_ != nullptr) break;
    error_ = dlerror();
  }
  if (lib_ == nullptr) return;
  auto create = reinterpret_cast<CreateFn>(dlsym(lib_, "cublasCreate_v2"));
  gemm_ex_ = dlsym(lib_, "cublasGemmEx");
  set_stream_ = dlsym(lib_, "cublasSetStream_v2");
  if (create == nullptr || gemm_ex_ == nullptr || set_stream_ == nullptr) {
    error_ = "cuBLAS symbols missing";
    return;
  }
  cublasHandle_t h = nullptr;
  if (create(&h) != CUBLAS_STATUS_SUCCESS) {
    error_ = "cublasCreate failed";
    return;
  }
  handle_ = h;
}

CublasReference::~CublasReference() {
  if (handle_ != nullptr) {
    auto destroy = reinterpret_cast<DestroyFn>(dlsym(lib_, "cublasDestroy_v2"));
    if (destroy != nullptr) destroy(static_cast<cublasHandle_t>(handle_));
  }
  if (lib_ != nullptr) dlclose(lib_);
}

bool CublasReference::GemmBf16(const uint16_t* a, const uint16_t* b, float* c, int m, int n, int k,
                               cudaStream_t stream) {
  if (handle_ == nullptr) return false;
  auto h = static_cast<cublasHandle_t>(handle_);
  reinterpret_cast<SetStreamFn>(set_stream_)(h, stream);
  const float alpha = 1.0f;
  const float beta = 0.0f;
  // Row-major c = a b^T is column-major c^T (n x m) = b (k x n, transposed) . a (k x m).
  return reinterpret_cast<GemmExFn>(gemm_ex_)(h, CUBLAS_OP_T, CUBLAS_OP_N, n, m, k, &alpha, b,
                                              CUDA_R_16BF, k, a, CUDA_R_16BF, k, &beta, c,
                                              CUDA_R_32F, n, CUBLAS_COMPUTE_32F,
                                              CUBLAS_GEMM_DEFAULT) == CUBLAS_STATUS_SUCCESS;
}

}  // namespace tpserve::kernels::cuda
