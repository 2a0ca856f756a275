// Launch helpers shared by the CUDA kernels (nvcc only).
#pragma once

#include <cuda_fp16.h>
#include <cuda_runtime_api.h>

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
#endif

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
