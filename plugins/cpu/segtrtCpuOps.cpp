// CPU twins of the plugins: plain loops over the same per-element functions the CUDA kernels run.
// Built into libsegtrt_cpu_ops.so; python/segtrt/ops reaches it through ctypes (see segtrtCpuOps.h).
#include "segtrtCpuOps.h"

#include "../matrixNMS/matrixNmsAttributes.h"
#include "../multilevelRoIAlign/multilevelRoIAlignAttributes.h"

#include <cstring>
#include <string>
#include <vector>

namespace
{

using namespace segtrt;

// Copies a validation message to the caller's buffer; returns the C status (0 ok, 1 bad argument).
int report(std::string const& message, char* error, int errorSize)
{
    if (message.empty())
    {
        return 0;
    }
    if (error != nullptr && errorSize > 0)
    {
        std::strncpy(error, message.c_str(), static_cast<size_t>(errorSize - 1));
        error[errorSize - 1] = '\0';
    }
    return 1;
}

MultilevelRoIAlignAttributes roiAlignAttributes(int outputHeight, int outputWidth, int const* strides, int numStrides,
    int samplingRatio, int aligned, char const* mode, int canonicalScale, int canonicalLevel)
{
    MultilevelRoIAlignAttributes a;
    a.outputHeight = outputHeight;
    a.outputWidth = outputWidth;
    a.featureStrides.assign(strides, strides + numStrides);
    a.samplingRatio = samplingRatio;
    a.aligned = aligned;
    a.mode = mode;
    a.canonicalScale = canonicalScale;
    a.canonicalLevel = canonicalLevel;
    return a;
}

MatrixNmsAttributes nmsAttributes(
    char const* kernel, float sigma, float maskThreshold, int nmsPre, int maxNum, float filterThr)
{
    MatrixNmsAttributes a;
    a.kernel = kernel;
    a.sigma = sigma;
    a.maskThreshold = maskThreshold;
    a.nmsPre = nmsPre;
    a.maxNum = maxNum;
    a.filterThr = filterThr;
    return a;
}

} // namespace

extern "C" int segtrt_validate_multilevel_roi_align(int outputHeight, int outputWidth, int const* strides,
    int numStrides, int samplingRatio, int aligned, char const* mode, int canonicalScale, int canonicalLevel,
    int numFeatureMaps, char* error, int errorSize)
{
    auto const a = roiAlignAttributes(
        outputHeight, outputWidth, strides, numStrides, samplingRatio, aligned, mode, canonicalScale, canonicalLevel);
    std::string message = validateMultilevelRoIAlign(a);
    if (message.empty())
    {
        message = validateMultilevelRoIAlignInputs(a, numFeatureMaps);
    }
    return report(message, error, errorSize);
}

extern "C" int segtrt_validate_matrix_nms(char const* kernel, float sigma, float maskThreshold, int nmsPre, int maxNum,
    float filterThr, int fixedSizeOutputs, char* error, int errorSize)
{
    auto const a = nmsAttributes(kernel, sigma, maskThreshold, nmsPre, maxNum, filterThr);
    return report(validateMatrixNms(a, fixedSizeOutputs != 0), error, errorSize);
}

extern "C" int segtrt_roi_align(float const* input, int channels, int height, int width, float const* rois,
    int const* batchIndices, int numRois, int outputHeight, int outputWidth, float spatialScale, int samplingRatio,
    int aligned, char const* mode, float* output, char* error, int errorSize)
{
    int const unitStride = 1;
    auto const a = roiAlignAttributes(outputHeight, outputWidth, &unitStride, 1, samplingRatio, aligned, mode, 224, 4);
    if (int status = report(validateMultilevelRoIAlign(a), error, errorSize))
    {
        return status;
    }
    RoiAlignParams const p = roiAlignParams(a);
    long long const planeSize = static_cast<long long>(height) * width;
    for (int r = 0; r < numRois; ++r)
    {
        for (int c = 0; c < channels; ++c)
        {
            float const* plane = input + (static_cast<long long>(batchIndices[r]) * channels + c) * planeSize;
            float* out = output + (static_cast<long long>(r) * channels + c) * outputHeight * outputWidth;
            for (int ph = 0; ph < outputHeight; ++ph)
            {
                for (int pw = 0; pw < outputWidth; ++pw)
                {
                    out[ph * outputWidth + pw] = roiAlignBin(plane, height, width, rois + 4 * r, spatialScale, p, ph, pw);
                }
            }
        }
    }
    return 0;
}

extern "C" int segtrt_multilevel_roi_align(float const* const* features, int const* heights, int const* widths,
    int numFeatureMaps, int batch, int channels, float const* rois, int numRois, int const* strides, int numStrides,
    int outputHeight, int outputWidth, int samplingRatio, int aligned, char const* mode, int canonicalScale,
    int canonicalLevel, float* output, char* error, int errorSize)
{
    auto const a = roiAlignAttributes(
        outputHeight, outputWidth, strides, numStrides, samplingRatio, aligned, mode, canonicalScale, canonicalLevel);
    std::string message = validateMultilevelRoIAlign(a);
    if (message.empty())
    {
        message = validateMultilevelRoIAlignInputs(a, numFeatureMaps);
    }
    if (int status = report(message, error, errorSize))
    {
        return status;
    }
    FeaturePyramid<float> fp{};
    for (int l = 0; l < numFeatureMaps; ++l)
    {
        fp.data[l] = features[l];
        fp.height[l] = heights[l];
        fp.width[l] = widths[l];
        fp.stride[l] = strides[l];
    }
    fp.levels = numFeatureMaps;
    fp.batch = batch;
    fp.channels = channels;
    LevelMapping const lm{static_cast<float>(canonicalScale), canonicalLevel};
    RoiAlignParams const p = roiAlignParams(a);
    long long const total = static_cast<long long>(batch) * numRois * channels * outputHeight * outputWidth;
    for (long long i = 0; i < total; ++i)
    {
        output[i] = multilevelRoiAlignElement(i, fp, rois, numRois, lm, p);
    }
    return 0;
}

extern "C" int segtrt_matrix_nms(float const* masks, int numMasks, int maskSize, int const* labels,
    float const* scores, char const* kernel, float sigma, float maskThreshold, int nmsPre, int maxNum,
    float filterThr, int* count, int* keepIndices, float* keptScores, int* keptLabels, char* error, int errorSize)
{
    auto const a = nmsAttributes(kernel, sigma, maskThreshold, nmsPre, maxNum, filterThr);
    if (int status = report(validateMatrixNms(a, false), error, errorSize))
    {
        return status;
    }
    int const n = (nmsPre > 0 && numMasks > nmsPre) ? nmsPre : numMasks;

    // Sort by score (stable, descending) and keep the top nms_pre.
    std::vector<int> order(n);
    for (int i = 0; i < numMasks; ++i)
    {
        int const rank = descendingRank(scores, numMasks, i);
        if (rank < n)
        {
            order[rank] = i;
        }
    }
    std::vector<float> sortedScores(n);
    std::vector<int> sortedLabels(n);
    std::vector<float> binary(static_cast<size_t>(n) * maskSize);
    for (int r = 0; r < n; ++r)
    {
        sortedScores[r] = scores[order[r]];
        sortedLabels[r] = labels[order[r]];
        float const* src = masks + static_cast<long long>(order[r]) * maskSize;
        for (int k = 0; k < maskSize; ++k)
        {
            binary[static_cast<size_t>(r) * maskSize + k] = binarizeMask(src[k], maskThreshold);
        }
    }

    // Overlaps as one product: gram = M · Mᵀ (symmetric, so each pair once).
    std::vector<float> gram(static_cast<size_t>(n) * n);
    for (int i = 0; i < n; ++i)
    {
        for (int j = i; j < n; ++j)
        {
            float const* mi = binary.data() + static_cast<size_t>(i) * maskSize;
            float const* mj = binary.data() + static_cast<size_t>(j) * maskSize;
            float dot = 0.f;
            for (int k = 0; k < maskSize; ++k)
            {
                dot += mi[k] * mj[k];
            }
            gram[static_cast<size_t>(i) * n + j] = gram[static_cast<size_t>(j) * n + i] = dot;
        }
    }

    std::vector<float> compensate(n);
    for (int i = 0; i < n; ++i)
    {
        compensate[i] = compensateIou(gram.data(), sortedLabels.data(), n, i);
    }
    NmsKernel const k = nmsKernel(a);
    std::vector<float> decayed(n);
    for (int j = 0; j < n; ++j)
    {
        float const coefficient = decayCoefficient(gram.data(), sortedLabels.data(), compensate.data(), n, j, k, sigma);
        decayed[j] = decayedScore(sortedScores[j], coefficient, filterThr);
    }

    // Re-sort the survivors by decayed score and keep the top max_num.
    int survivors = 0;
    for (int j = 0; j < n; ++j)
    {
        survivors += decayed[j] != kRemovedScore ? 1 : 0;
    }
    *count = (maxNum > 0 && survivors > maxNum) ? maxNum : survivors;
    for (int j = 0; j < n; ++j)
    {
        int const rank = descendingRank(decayed.data(), n, j);
        if (rank < *count)
        {
            keepIndices[rank] = order[j];
            keptScores[rank] = decayed[j];
            keptLabels[rank] = sortedLabels[j];
        }
    }
    return 0;
}
