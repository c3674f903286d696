// CublasReference in CUDA-emulator builds: cuBLAS runs only on a device, so
// the reference is never available there (kernel_bench's rows print
// "cuBLAS n/a").
#include "kernels/cuda/cublas_reference.h"

namespace tpserve::kernels::cuda {

CublasReference::CublasReference() : error_("cuBLAS is not emulated") {}

CublasReference::~CublasReference() = default;

bool CublasReference::GemmBf16(const uint16_t*, const uint16_t*, float*, int, int, int,
                               cudaStream_t) {
  return false;
}

}  // namespace tpserve::kernels::cuda
