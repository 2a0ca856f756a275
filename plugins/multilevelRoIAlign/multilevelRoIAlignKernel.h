// Host entry point of the MultilevelRoIAlign CUDA kernel (plain C++ types so g++ can include it).
#pragma once

#include "roiAlignMath.h"

#include <cuda_runtime_api.h>

namespace segtrt
{

struct MultilevelRoIAlignShape
{
    int batch;
    int channels;
    int numRois;
    int levels;
    int height[kMaxLevels];
    int width[kMaxLevels];
    int stride[kMaxLevels];
};

// The host API; NVRTC, which tests/test_kernels_nvrtc.py compiles the kernels with, takes device code only.
#ifndef __CUDACC_RTC__
// features[l] [B, C, H_l, W_l] (all FP32, or all FP16 when featuresHalf), rois [B, R, 4] (FP32, or FP16 when
// roisHalf) -> output [B, R, C, oh, ow] in the features' type. Returns the launch's own status.
cudaError_t launchMultilevelRoIAlign(void const* const* features, bool featuresHalf, void const* rois, bool roisHalf,
    MultilevelRoIAlignShape const& shape, LevelMapping const& levelMapping, RoiAlignParams const& params, void* output,
    cudaStream_t stream);
#endif

} // namespace segtrt
