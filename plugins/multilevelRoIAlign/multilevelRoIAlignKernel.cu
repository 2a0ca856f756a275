// The MultilevelRoIAlign kernel: a grid-stride loop over the output, each element computed by roiAlignMath.h.
#include "../common/cudaLaunch.cuh"
#include "multilevelRoIAlignKernel.h"

namespace segtrt
{
namespace
{

template <typename T, typename TR>
__global__ void multilevelRoIAlignKernel(FeaturePyramid<T> fp, TR const* rois, int numRois, LevelMapping lm,
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

template <typename T, typename TR>
cudaError_t launch(void const* const* features, void const* rois, MultilevelRoIAlignShape const& s,
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
    return launchGridStride(multilevelRoIAlignKernel<T, TR>, total, stream, fp, static_cast<TR const*>(rois),
        s.numRois, lm, p, total, static_cast<T*>(output));
}

template <typename T>
cudaError_t launchForFeatures(void const* const* features, void const* rois, bool roisHalf,
    MultilevelRoIAlignShape const& s, LevelMapping const& lm, RoiAlignParams const& p, void* output,
    cudaStream_t stream)
{
    return roisHalf ? launch<T, __half>(features, rois, s, lm, p, output, stream)
                    : launch<T, float>(features, rois, s, lm, p, output, stream);
}

} // namespace

cudaError_t launchMultilevelRoIAlign(void const* const* features, bool featuresHalf, void const* rois, bool roisHalf,
    MultilevelRoIAlignShape const& shape, LevelMapping const& levelMapping, RoiAlignParams const& params, void* output,
    cudaStream_t stream)
{
    return featuresHalf
        ? launchForFeatures<__half>(features, rois, roisHalf, shape, levelMapping, params, output, stream)
        : launchForFeatures<float>(features, rois, roisHalf, shape, levelMapping, params, output, stream);
}
#endif // __CUDACC_RTC__

} // namespace segtrt
