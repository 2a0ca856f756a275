// Host entry point of the MatrixNMS CUDA kernels (plain C++ types so g++ can include it).
#pragma once

#include "matrixNmsMath.h"

#include <cstddef>
#include <cuda_runtime_api.h>

namespace segtrt
{

struct MatrixNmsParams
{
    NmsKernel kernel;
    float sigma;
    float maskThreshold;
    int nmsPre; // <= 0: no cut
    int maxNum; // >= 1: the fixed output size
    float filterThr;
};

struct MatrixNmsShape
{
    int batch;
    int numMasks;
    int maskSize; // H * W
};

// The host API; NVRTC, which tests/test_kernels_nvrtc.py compiles the kernels with, takes device code only.
#ifndef __CUDACC_RTC__
// Bytes of scratch the launch needs (sort keys and orders, bit-packed masks, intersection counts, per-candidate
// vectors, the sorts' own scratch).
size_t matrixNmsWorkspaceSize(MatrixNmsShape const& shape, MatrixNmsParams const& params);

// masks [B, N, H*W], scores [B, N] (each FP32, or FP16 when its flag is set), labels [B, N] int32 ->
// count [B] int32, keep [B, max_num] int32 (-1 padded), keptScores [B, max_num] (scores' type, 0 padded),
// keptLabels [B, max_num] int32 (-1 padded). Returns the first failing CUDA call's own status.
cudaError_t launchMatrixNms(void const* masks, bool masksHalf, void const* scores, bool scoresHalf, int const* labels,
    MatrixNmsShape const& shape, MatrixNmsParams const& params, int* count, int* keep, void* keptScores,
    int* keptLabels, void* workspace, cudaStream_t stream);
#endif

} // namespace segtrt
