// CPU twins of the plugins: plain loops over the same per-element functions the CUDA kernels run.
// Built into libsegtrt_cpu_ops.so; python/segtrt/ops reaches it through ctypes (see segtrtCpuOps.h).
#include "segtrtCpuOps.h"

#include "../matrixNMS/matrixNmsAttributes.h"
#include "../multilevelRoIAlign/multilevelRoIAlignAttributes.h"

#include <algorithm>
#include <cstring>
#include <numeric>
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

// Indices 0..n-1 in a stable descending sort of keys: larger first, ties by index (as the kernels' radix sort).
std::vector<int> descendingOrder(float const* keys, int n)
{
    std::vector<int> order(n);
    std::iota(order.begin(), order.end(), 0);
    std::stable_sort(order.begin(), order.end(), [keys](int a, int b) { return keys[a] > keys[b]; });
    return order;
}

// inter[i, j] = common pixels of bit rows i <= j (areas on the diagonal), what the kernel's tiles compute. Four rows
// i at a time share each load of row j. The clone lets x86 CPUs with a popcount instruction (all since 2008; not in
// the x86-64 baseline the library is built for) use it.
#if defined(__x86_64__)
__attribute__((target_clones("popcnt", "default")))
#endif
void intersections(MaskWord const* bits, int n, int words, int* inter)
{
    constexpr int kRows = 4;
    for (int i0 = 0; i0 < n; i0 += kRows)
    {
        int const rows = n - i0 < kRows ? n - i0 : kRows;
        MaskWord const* a = bits + static_cast<size_t>(i0) * words;
        for (int j = i0; j < n; ++j)
        {
            MaskWord const* b = bits + static_cast<size_t>(j) * words;
            int common[kRows] = {0, 0, 0, 0};
            for (int w = 0; w < words; ++w)
            {
                for (int r = 0; r < kRows; ++r)
                {
                    common[r] += r < rows ? commonPixels(a[static_cast<size_t>(r) * words + w], b[w]) : 0;
                }
            }
            for (int r = 0; r < rows && i0 + r <= j; ++r)
            {
                inter[pairIndex(n, i0 + r, j)] = common[r];
            }
        }
    }
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

    std::vector<float> keys(numMasks);
    for (int i = 0; i < numMasks; ++i)
    {
        keys[i] = sortKey(scores[i]);
    }
    std::vector<int> order = descendingOrder(keys.data(), numMasks);
    order.resize(n);
    int const words = maskWords(maskSize);
    std::vector<float> sortedScores(n);
    std::vector<int> sortedLabels(n);
    std::vector<MaskWord> bits(static_cast<size_t>(n) * words);
    for (int r = 0; r < n; ++r)
    {
        sortedScores[r] = keys[order[r]];
        sortedLabels[r] = labels[order[r]];
        float const* src = masks + static_cast<long long>(order[r]) * maskSize;
        for (int w = 0; w < words; ++w)
        {
            bits[static_cast<size_t>(r) * words + w] = packMaskWord(src, maskSize, w, maskThreshold);
        }
    }
    std::vector<int> inter(static_cast<size_t>(n) * n);
    intersections(bits.data(), n, words, inter.data());

    std::vector<float> compensate(n);
    for (int i = 0; i < n; ++i)
    {
        compensate[i] = compensateIou(inter.data(), sortedScores.data(), sortedLabels.data(), n, i);
    }
    NmsKernel const k = nmsKernel(a);
    std::vector<float> decayed(n);
    for (int j = 0; j < n; ++j)
    {
        float const coefficient = decayCoefficient(
            inter.data(), sortedScores.data(), sortedLabels.data(), compensate.data(), n, j, k, sigma);
        decayed[j] = decayedScore(sortedScores[j], coefficient, filterThr);
    }

    // Re-sort by decayed score; the removed sort last, so the survivors are a prefix.
    std::vector<int> const ranked = descendingOrder(decayed.data(), n);
    int survivors = 0;
    while (survivors < n && decayed[ranked[survivors]] != kRemovedScore)
    {
        ++survivors;
    }
    *count = (maxNum > 0 && survivors > maxNum) ? maxNum : survivors;
    for (int r = 0; r < *count; ++r)
    {
        keepIndices[r] = order[ranked[r]];
        keptScores[r] = decayed[ranked[r]];
        keptLabels[r] = sortedLabels[ranked[r]];
    }
    return 0;
}
