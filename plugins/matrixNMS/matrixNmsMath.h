// Per-element math of Matrix NMS (SOLOv2; semantics of mmdetection's mask_matrix_nms), shared by the CUDA
// kernels and the CPU twin. All functions work on candidates already sorted by descending score, with
// gram[n, n] = masks · masksᵀ of the binary masks (so gram's diagonal holds the mask areas).
#pragma once

#include "../common/hostDevice.h"

#include <math.h>

namespace segtrt
{

enum class NmsKernel : int
{
    kGaussian = 0,
    kLinear = 1,
};

// Score given to candidates that filter_thr removed; ranks below every real score.
constexpr float kRemovedScore = -INFINITY;

SEGTRT_HD float binarizeMask(float v, float threshold)
{
    return v > threshold ? 1.f : 0.f;
}

// Position of keys[i] in a stable descending sort of keys[0..n): larger first, ties by index.
SEGTRT_HD int descendingRank(float const* keys, int n, int i)
{
    float const ki = keys[i];
    int rank = 0;
    for (int j = 0; j < n; ++j)
    {
        float const kj = keys[j];
        rank += (kj > ki || (kj == ki && j < i)) ? 1 : 0;
    }
    return rank;
}

SEGTRT_HD float maskIou(float const* gram, int n, int i, int j)
{
    float const inter = gram[i * n + j];
    return inter / (gram[i * n + i] + gram[j * n + j] - inter);
}

// IoU of candidate j with higher-scored candidate i of the same class; 0 for every other pair.
SEGTRT_HD float decayIou(float const* gram, int const* labels, int n, int i, int j)
{
    return (i < j && labels[i] == labels[j]) ? maskIou(gram, n, i, j) : 0.f;
}

// How much candidate i was itself suppressed: its largest IoU with a higher-scored same-class candidate.
SEGTRT_HD float compensateIou(float const* gram, int const* labels, int n, int i)
{
    float m = 0.f;
    for (int k = 0; k < i; ++k)
    {
        m = fmaxf(m, decayIou(gram, labels, n, k, i));
    }
    return m;
}

// Score multiplier of candidate j: min over i of f(decay_iou[i, j]) / f(compensate_iou[i]).
SEGTRT_HD float decayCoefficient(
    float const* gram, int const* labels, float const* compensate, int n, int j, NmsKernel kernel, float sigma)
{
    float coefficient = INFINITY;
    for (int i = 0; i < n; ++i)
    {
        float const d = decayIou(gram, labels, n, i, j);
        float const c = compensate[i];
        float const ratio = kernel == NmsKernel::kGaussian ? expf(-sigma * (d * d)) / expf(-sigma * (c * c))
                                                           : (1.f - d) / (1.f - c);
        coefficient = nanMin(coefficient, ratio);
    }
    return coefficient;
}

// Decayed score of sorted candidate j, or kRemovedScore when filter_thr (if > 0) removes it.
SEGTRT_HD float decayedScore(float sortedScore, float coefficient, float filterThr)
{
    float const s = sortedScore * coefficient;
    return (filterThr > 0.f && !(s >= filterThr)) ? kRemovedScore : s;
}

} // namespace segtrt
