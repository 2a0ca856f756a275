// Per-element math of RoIAlign and of the FPN level choice, shared by the CUDA kernel and the CPU twin.
// Semantics follow torchvision.ops.roi_align (avg) and ONNX RoiAlign (max), and torchvision's LevelMapper.
#pragma once

#include "../common/hostDevice.h"

#include <math.h>

namespace segtrt
{

enum class PoolMode : int
{
    kAvg = 0,
    kMax = 1,
};

struct RoiAlignParams
{
    int outputHeight;
    int outputWidth;
    int samplingRatio; // 0: adaptive, ceil(roi_size / output_size) samples per bin side
    bool aligned;      // half-pixel offset: continuous coordinate = pixel index + 0.5
    PoolMode mode;
};

// The four bilinear corner contributions (weight * value) of one sample point; all zero outside the map.
struct BilinearCorners
{
    float c[4];
};

template <typename T>
SEGTRT_HD BilinearCorners bilinearCorners(T const* plane, int height, int width, float y, float x)
{
    BilinearCorners out{{0.f, 0.f, 0.f, 0.f}};
    // A sample more than one pixel outside the map contributes nothing (torchvision / ONNX rule).
    if (y < -1.f || y > static_cast<float>(height) || x < -1.f || x > static_cast<float>(width))
    {
        return out;
    }
    y = y <= 0.f ? 0.f : y;
    x = x <= 0.f ? 0.f : x;
    int yLow = static_cast<int>(y);
    int xLow = static_cast<int>(x);
    int yHigh = yLow + 1;
    int xHigh = xLow + 1;
    if (yLow >= height - 1)
    {
        yLow = yHigh = height - 1;
        y = static_cast<float>(yLow);
    }
    if (xLow >= width - 1)
    {
        xLow = xHigh = width - 1;
        x = static_cast<float>(xLow);
    }
    float const ly = y - static_cast<float>(yLow);
    float const lx = x - static_cast<float>(xLow);
    float const hy = 1.f - ly;
    float const hx = 1.f - lx;
    out.c[0] = hy * hx * toFloat(plane[yLow * width + xLow]);
    out.c[1] = hy * lx * toFloat(plane[yLow * width + xHigh]);
    out.c[2] = ly * hx * toFloat(plane[yHigh * width + xLow]);
    out.c[3] = ly * lx * toFloat(plane[yHigh * width + xHigh]);
    return out;
}

// Adaptive sampling takes ceil(roi_size / bins) samples per bin side, at most this many: a bin then costs at most
// 512^2 samples however large the box, and boxes below 512 bins' size (3584 px at 7 bins) sample exactly as
// torchvision does.
constexpr int kMaxSamplesPerBinSide = 512;

SEGTRT_HD int adaptiveSamples(float roiSize, int bins)
{
    float const samples = ceilf(roiSize / static_cast<float>(bins));
    return samples < static_cast<float>(kMaxSamplesPerBinSide) ? static_cast<int>(samples) : kMaxSamplesPerBinSide;
}

// One output bin (ph, pw) of one RoI over one channel plane [height, width].
// roi = (x1, y1, x2, y2) in the coordinates that spatialScale maps onto this plane.
template <typename T>
SEGTRT_HD float roiAlignBin(T const* plane, int height, int width, float const* roi, float spatialScale,
    RoiAlignParams const& p, int ph, int pw)
{
    float const offset = p.aligned ? 0.5f : 0.f;
    float const startW = roi[0] * spatialScale - offset;
    float const startH = roi[1] * spatialScale - offset;
    float roiW = roi[2] * spatialScale - offset - startW;
    float roiH = roi[3] * spatialScale - offset - startH;
    if (!(isFinite(startW) && isFinite(startH) && isFinite(roiW) && isFinite(roiH)))
    {
        return 0.f; // a NaN or infinite box (or one whose size overflows) pools nothing
    }
    if (!p.aligned)
    {
        // Legacy (non-aligned) RoIs are at least one pixel wide.
        roiW = roiW > 1.f ? roiW : 1.f;
        roiH = roiH > 1.f ? roiH : 1.f;
    }
    float const binH = roiH / static_cast<float>(p.outputHeight);
    float const binW = roiW / static_cast<float>(p.outputWidth);
    int const gridH = p.samplingRatio > 0 ? p.samplingRatio : adaptiveSamples(roiH, p.outputHeight);
    int const gridW = p.samplingRatio > 0 ? p.samplingRatio : adaptiveSamples(roiW, p.outputWidth);
    int const count = gridH * gridW > 1 ? gridH * gridW : 1;

    float acc = 0.f;
    bool first = true;
    for (int iy = 0; iy < gridH; ++iy)
    {
        float const y = startH + ph * binH + (iy + .5f) * binH / static_cast<float>(gridH);
        for (int ix = 0; ix < gridW; ++ix)
        {
            float const x = startW + pw * binW + (ix + .5f) * binW / static_cast<float>(gridW);
            BilinearCorners const b = bilinearCorners(plane, height, width, y, x);
            if (p.mode == PoolMode::kAvg)
            {
                acc += b.c[0] + b.c[1] + b.c[2] + b.c[3];
            }
            else
            {
                // ONNX RoiAlign's max mode: the largest weighted corner over all samples.
                float const m = fmaxf(fmaxf(b.c[0], b.c[1]), fmaxf(b.c[2], b.c[3]));
                acc = first ? m : fmaxf(acc, m);
                first = false;
            }
        }
    }
    return p.mode == PoolMode::kAvg ? acc / static_cast<float>(count) : acc;
}

// Pyramid level of a RoI (x1, y1, x2, y2 in input pixels) as torchvision's LevelMapper:
// floor(canonicalLevel + log2(sqrt(area) / canonicalScale) + 1e-6), clamped to [minLevel, maxLevel].
SEGTRT_HD int fpnLevel(float const* roi, float canonicalScale, int canonicalLevel, int minLevel, int maxLevel)
{
    float const area = (roi[2] - roi[0]) * (roi[3] - roi[1]);
    float const k = floorf(static_cast<float>(canonicalLevel) + log2f(sqrtf(area) / canonicalScale) + 1e-6f);
    float const clamped = fminf(fmaxf(k, static_cast<float>(minLevel)), static_cast<float>(maxLevel));
    return static_cast<int>(clamped);
}

// Index of the level whose stride is 2^level; strides are consecutive powers of two.
SEGTRT_HD int log2OfPowerOfTwo(int v)
{
    int k = 0;
    while ((1 << k) < v)
    {
        ++k;
    }
    return k;
}

// At most this many pyramid levels (the kernel receives them by value).
constexpr int kMaxLevels = 8;

template <typename T>
struct FeaturePyramid
{
    T const* data[kMaxLevels]; // each [B, C, H_l, W_l]
    int height[kMaxLevels];
    int width[kMaxLevels];
    int stride[kMaxLevels];
    int levels;
    int batch;
    int channels;
};

struct LevelMapping
{
    float canonicalScale;
    int canonicalLevel;
};

// One element of the output [B, R, C, oh, ow] (flat index), rois [B, R, 4] in input pixels (stored as TR, used
// as FP32).
template <typename T, typename TR>
SEGTRT_HD float multilevelRoiAlignElement(long long index, FeaturePyramid<T> const& fp, TR const* rois, int numRois,
    LevelMapping const& lm, RoiAlignParams const& p)
{
    int const pw = static_cast<int>(index % p.outputWidth);
    long long rest = index / p.outputWidth;
    int const ph = static_cast<int>(rest % p.outputHeight);
    rest /= p.outputHeight;
    int const c = static_cast<int>(rest % fp.channels);
    rest /= fp.channels;
    int const r = static_cast<int>(rest % numRois);
    int const b = static_cast<int>(rest / numRois);

    TR const* stored = rois + (static_cast<long long>(b) * numRois + r) * 4;
    float const roi[4] = {toFloat(stored[0]), toFloat(stored[1]), toFloat(stored[2]), toFloat(stored[3])};
    int const minLevel = log2OfPowerOfTwo(fp.stride[0]);
    int const level
        = fpnLevel(roi, lm.canonicalScale, lm.canonicalLevel, minLevel, minLevel + fp.levels - 1) - minLevel;
    int const h = fp.height[level];
    int const w = fp.width[level];
    T const* plane = fp.data[level] + (static_cast<long long>(b) * fp.channels + c) * h * w;
    return roiAlignBin(plane, h, w, roi, 1.f / static_cast<float>(fp.stride[level]), p, ph, pw);
}

} // namespace segtrt
