// Programmatic dependent launch (PDL, compute capability 9.0 and later): a
// kernel launched with it may be started while the kernel before it on the
// stream is still running, and waits for that kernel inside, at
// WaitForPrimary(). What it does before the wait (its launch, block
// scheduling, loads of weights) overlaps the previous kernel's tail. CUDA
// programming guide, "Programmatic Dependent Launch and Synchronization";
// PTX ISA, griddepcontrol.
//
// The rule for a kernel launched this way: every thread calls
// WaitForPrimary() before it reads anything an earlier kernel of the stream
// may write (activations, the residual stream, the KV cache, any scratch)
// and before it writes anything at all. Before the wait it may read only
// what stays fixed while kernels run: weights, and inputs copied in before
// the first kernel of the step. The wait makes the whole previous kernel
// (and, because that kernel waited too, every kernel before it) complete and
// visible. The CUDA emulator checks the rule by value: it runs a
// programmatic kernel's first blocks up to the wait before the previous
// kernel (kernels/cuda/emu/grid.h), so an early read sees stale memory.
//
//   // device
//   AllowDependents();
//   const uint4 w0 = __ldg(weights + i);   // fixed data only
//   WaitForPrimary();
//   ... x, y ...
//   // host
//   const LaunchStream ls = ForLaunch(stream);
//   LaunchKernel("MyKernel", MyKernel, grid, block, smem, ls, args...);
//   return LaunchStatus("MyKernel");
#ifndef TPSERVE_KERNELS_CUDA_LAUNCH_CUH_
#define TPSERVE_KERNELS_CUDA_LAUNCH_CUH_

#include <cuda_runtime.h>

#include <utility>

#include "kernels/cuda/cuda_ops.h"
#include "kernels/ops.h"

namespace tpserve::kernels::cuda {

// griddepcontrol.wait: returns once the kernel this one was launched after
// has completed and its writes are visible (at once without PDL).
__device__ __forceinline__ void WaitForPrimary() {
#if defined(TPSERVE_CUDA_EMU)
  ::tpserve_emu::GridDependencyWait();
#elif defined(__CUDA_ARCH__) && __CUDA_ARCH__ >= 900
  asm volatile("griddepcontrol.wait;" ::: "memory");
#endif
}

// griddepcontrol.launch_dependents: the next kernel may be started once
// every block of this one has called it or exited. A hint; the emulator
// assumes it was called as early as possible.
__device__ __forceinline__ void AllowDependents() {
#if !defined(TPSERVE_CUDA_EMU) && defined(__CUDA_ARCH__) && __CUDA_ARCH__ >= 900
  asm volatile("griddepcontrol.launch_dependents;" ::: "memory");
#endif
}

// A launch's stream, and whether to launch programmatically there.
struct LaunchStream {
  cudaStream_t stream = nullptr;
  bool programmatic = false;
};
inline LaunchStream ForLaunch(const Stream& s) {
  return {static_cast<cudaStream_t>(s.cuda_stream),
          s.programmatic && ProgrammaticLaunchSupported()};
}

#if !defined(TPSERVE_CUDA_EMU)
// cudaLaunchKernelEx of kernel<<<grid, block, shared_bytes, stream>>>(args...)
// with `attribute` (none when null). Errors are left for cudaGetLastError.
template <typename... P, typename... A>
void LaunchWithAttribute(void (*kernel)(P...), dim3 grid, dim3 block, size_t shared_bytes,
                         cudaStream_t stream, cudaLaunchAttribute* attribute, A&&... args) {
  cudaLaunchConfig_t config{};
  config.gridDim = grid;
  config.blockDim = block;
  config.dynamicSmemBytes = shared_bytes;
  config.stream = stream;
  config.attrs = attribute;
  config.numAttrs = attribute != nullptr ? 1 : 0;
  (void)cudaLaunchKernelEx(&config, kernel, std::forward<A>(args)...);
}
#endif

// kernel<<<grid, block, shared_bytes, ls.stream>>>(args...), programmatic
// when ls.programmatic. Errors are left for LaunchStatus (cudaGetLastError),
// as with <<<>>>. `name` must be a literal: the emulator keeps the pointer.
template <typename... P, typename... A>
void LaunchKernel(const char* name, void (*kernel)(P...), dim3 grid, dim3 block,
                  size_t shared_bytes, const LaunchStream& ls, A&&... args) {
#if defined(TPSERVE_CUDA_EMU)
  ::tpserve_emu::Launcher(name, grid, block, shared_bytes, ls.stream,
                          ls.programmatic)(kernel)(std::forward<A>(args)...);
#else
  (void)name;
  cudaLaunchAttribute attribute{};
  attribute.id = cudaLaunchAttributeProgrammaticStreamSerialization;
  attribute.val.programmaticStreamSerializationAllowed = 1;
  LaunchWithAttribute(kernel, grid, block, shared_bytes, ls.stream,
                      ls.programmatic ? &attribute : nullptr, std::forward<A>(args)...);
#endif
}

}  // namespace tpserve::kernels::cuda

#endif  // TPSERVE_KERNELS_CUDA_LAUNCH_CUH_
