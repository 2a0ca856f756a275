// Launch helpers shared by the CUDA kernels (nvcc only).
#pragma once

#include <cuda_fp16.h>
#ifndef __CUDACC_RTC__
#include <cuda_runtime.h> // cudaLaunchKernelEx
#endif

namespace segtrt
{

constexpr int kThreadsPerBlock = 256;

#ifndef __CUDACC_RTC__ // host code: NVRTC (tests/test_kernels_nvrtc.py) compiles device code only
// Enough blocks for a grid-stride loop over `total` elements without flooding the GPU.
inline int gridSize(long long total)
{
    long long const blocks = (total + kThreadsPerBlock - 1) / kThreadsPerBlock;
    return static_cast<int>(blocks < 4096 ? (blocks > 0 ? blocks : 1) : 4096);
}

// Launches kernel<<<grid, block, 0, stream>>>(args...) and returns this launch's own status: cudaGetLastError
// after a <<<>>> launch would also return (and clear) an earlier error of someone else's.
template <typename... Params, typename... Args>
cudaError_t launchKernel(void (*kernel)(Params...), dim3 grid, dim3 block, cudaStream_t stream, Args&&... args)
{
    cudaLaunchConfig_t config{};
    config.gridDim = grid;
    config.blockDim = block;
    config.stream = stream;
    return cudaLaunchKernelEx(&config, kernel, static_cast<Args&&>(args)...);
}

// A grid-stride launch over `total` elements.
template <typename... Params, typename... Args>
cudaError_t launchGridStride(void (*kernel)(Params...), long long total, cudaStream_t stream, Args&&... args)
{
    return launchKernel(kernel, dim3(gridSize(total)), dim3(kThreadsPerBlock), stream, static_cast<Args&&>(args)...);
}
#endif

// Returns from the calling launcher with the first failing CUDA call's status.
#define SEGTRT_CUDA_TRY(call)                                                                                          \
    do                                                                                                                 \
    {                                                                                                                  \
        cudaError_t const segtrtStatus = (call);                                                                       \
        if (segtrtStatus != cudaSuccess)                                                                               \
            return segtrtStatus;                                                                                       \
    } while (0)

template <typename T>
__device__ __forceinline__ T fromFloat(float v);

template <>
__device__ __forceinline__ float fromFloat<float>(float v)
{
    return v;
}

template <>
__device__ __forceinline__ __half fromFloat<__half>(float v)
{
    return __float2half(v);
}

} // namespace segtrt
