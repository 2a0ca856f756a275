// Lets one header of per-element math compile with nvcc (host and device) and with plain g++.
#pragma once

#if defined(__CUDACC__)
#define SEGTRT_HD __host__ __device__ __forceinline__
#else
#define SEGTRT_HD inline
#endif

#include <math.h>

namespace segtrt
{

// Reads a stored value as FP32; plugins store FP32 or FP16 but always compute in FP32.
SEGTRT_HD float toFloat(float v)
{
    return v;
}

// False for NaN and +-Inf; spelled with fabsf so NVRTC (no C library headers) compiles it too.
SEGTRT_HD bool isFinite(float v)
{
    return fabsf(v) <= 3.40282347e+38f;
}

// Minimum that propagates NaN, like torch.min, so CPU, GPU and mmdetection agree on degenerate input.
SEGTRT_HD float nanMin(float a, float b)
{
    return (b < a || b != b) ? b : a;
}

} // namespace segtrt

#if defined(__CUDACC__)
#include <cuda_fp16.h>
namespace segtrt
{
__device__ __forceinline__ float toFloat(__half v)
{
    return __half2float(v);
}
} // namespace segtrt
#endif
