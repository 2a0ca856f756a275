// The MultilevelRoIAlign kernel: a grid-stride loop over the output, each element computed by roiAlignMath.h.
#include "../common/cudaLaunch.cuh"
#include "multilevelRoIAlignKernel.h"

namespace segtrt
{
namespace
{

template <typename T>
__global__ void multilevelRoIAlignKernel(FeaturePyramid<T> fp, float const* rois, int numRois, LevelMapping lm,
    RoiAlignParams p, long long total, T* output)
{
    for (long long i = blockIdx.x * static_cast<long long>(blockDim.x) + threadIdx.x; i < total;
         i += static_cast<long long>(gridDim.x) * blockDim.x)
    {
        output[i] = fromFloat<T>(multilevelRoiAlignElement(i, fp, rois, numRois, lm, p));
    }
}

} // namespace

// Host side: the launches. NVRTC compiles device code only (tests/test_kernels_nvrtc.py compiles the kernels above
// with it for every target architecture, including those the installed nvcc has dropped), so it skips this part.
#ifndef __CUDACC_RTC__
namespace
{

template <typename T>
cudaError_t launch(void const* const* features, float const* rois, MultilevelRoIAlignShape const& s,
    LevelMapping const& lm, RoiAlignParams const& p, void* output, cudaStream_t stream)
{
    FeaturePyramid<T> fp{};
    for (int l = 0; l < s.levels; ++l)
    {
        fp.data[l] = static_cast<T const*>(features[l]);
        fp.height[l] = s.height[l];
        fp.width[l] = s.width[l];
        fp.stride[l] = s.stride[l];
    }
    fp.levels = s.levels;
    fp.batch = s.batch;
    fp.channels = s.channels;
    long long const total = static_cast<long long>(s.batch) * s.numRois * s.channels * p.outputHeight * p.outputWidth;
    multilevelRoIAlignKernel<T><<<gridSize(total), kThreadsPerBlock, 0, stream>>>(
        fp, rois, s.numRois, lm, p, total, static_cast<T*>(output));
    return cudaGetLastError();
}

} // namespace

cudaError_t launchMultilevelRoIAlign(void const* const* features, float const* rois, MultilevelRoIAlignShape const& shape,
    LevelMapping const& levelMapping, RoiAlignParams const& params, bool fp16, void* output, cudaStream_t stream)
{
    return fp16 ? launch<__half>(features, rois, shape, levelMapping, params, output, stream)
                : launch<float>(features, rois, shape, levelMapping, params, output, stream);
}
#endif // __CUDACC_RTC__

} // namespace segtrt
