// Stand-in for CUDA's runtime API in the emulated-kernel test build (see emulation.h): the few types and calls
// the plugins use, on host memory, with CUDA's error semantics.
#pragma once

#include <cstddef>
#include <cstdint>
#include <cstdlib>
#include <cstring>

enum cudaError
{
    cudaSuccess = 0,
    cudaErrorInvalidValue = 1,
    cudaErrorMemoryAllocation = 2,
    cudaErrorInvalidConfiguration = 9,
};
typedef enum cudaError cudaError_t;
typedef struct CUstream_st* cudaStream_t;
typedef struct CUevent_st* cudaEvent_t;

struct dim3
{
    unsigned x, y, z;
    constexpr dim3(unsigned vx = 1, unsigned vy = 1, unsigned vz = 1)
        : x(vx)
        , y(vy)
        , z(vz)
    {
    }
};

struct cudaLaunchConfig_t
{
    dim3 gridDim;
    dim3 blockDim;
    size_t dynamicSmemBytes;
    cudaStream_t stream;
    void* attrs;
    unsigned numAttrs;
};

namespace cuda_emu
{
// The runtime's per-thread "last error": set by a failing call, returned and cleared by cudaGetLastError.
inline cudaError_t gLastError = cudaSuccess;

inline cudaError_t fail(cudaError_t e)
{
    gLastError = e;
    return e;
}
} // namespace cuda_emu

inline cudaError_t cudaGetLastError()
{
    cudaError_t const e = cuda_emu::gLastError;
    cuda_emu::gLastError = cudaSuccess;
    return e;
}

inline cudaError_t cudaPeekAtLastError()
{
    return cuda_emu::gLastError;
}

enum cudaMemcpyKind
{
    cudaMemcpyHostToDevice = 1,
    cudaMemcpyDeviceToHost = 2,
};

// Device memory is host memory: an allocation of exactly the size asked, so ASan sees any byte beyond it.
inline cudaError_t cudaMalloc(void** p, size_t bytes)
{
    constexpr size_t kDeviceMemory = size_t(1) << 40;
    *p = bytes <= kDeviceMemory ? std::malloc(bytes) : nullptr;
    return *p != nullptr ? cudaSuccess : cuda_emu::fail(cudaErrorMemoryAllocation);
}

inline cudaError_t cudaFree(void* p)
{
    std::free(p);
    return cudaSuccess;
}

inline cudaError_t cudaMemcpy(void* to, void const* from, size_t bytes, cudaMemcpyKind)
{
    std::memcpy(to, from, bytes);
    return cudaSuccess;
}

// Launches are synchronous.
inline cudaError_t cudaDeviceSynchronize()
{
    return cudaSuccess;
}

inline char const* cudaGetErrorString(cudaError_t e)
{
    return e == cudaSuccess ? "no error" : "emulated CUDA error";
}
