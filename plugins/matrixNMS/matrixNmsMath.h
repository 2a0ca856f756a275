// Per-element math of Matrix NMS (SOLOv2; semantics of mmdetection's mask_matrix_nms), shared by the CUDA
// kernels and the CPU twin. After the sort by score, candidates are positions 0..n-1 and their binary masks are
// bit rows; `inter` [n, n] holds pixel counts: mask intersections above the diagonal, mask areas on it (the
// lower triangle is never computed nor read).
//
// Degenerate input has one meaning everywhere (kernel, twin, the portable graph in models/matrix_nms.py):
// a score that is not > 0 (the SOLO graphs' padding, 0, and NaN) is not a candidate: it is sorted after every
// candidate, suppresses nothing and is never returned. +Inf is a score like any other. Two empty masks do not
// overlap (IoU 0). A decayed score that is NaN (linear kernel on identical masks: 0/0, or +Inf x 0) is dropped.
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

// Sort key and decayed score of whatever takes no part; ranks below every real score.
constexpr float kRemovedScore = -INFINITY;

SEGTRT_HD bool isCandidate(float score)
{
    return score > 0.f;
}

// What both sorts order by, descending and stable (ties by index).
SEGTRT_HD float sortKey(float score)
{
    return isCandidate(score) ? score : kRemovedScore;
}

// Binary masks are rows of 64-pixel words: pixel p in bit p % 64 of word p / 64, the last word zero-padded.
using MaskWord = unsigned long long;
constexpr int kMaskWordBits = 64;

SEGTRT_HD int maskWords(int maskSize)
{
    return (maskSize + kMaskWordBits - 1) / kMaskWordBits;
}

// Word `word` of a binarised mask row (a pixel is in the mask when > threshold).
template <typename T>
SEGTRT_HD MaskWord packMaskWord(T const* mask, int maskSize, int word, float threshold)
{
    int const begin = word * kMaskWordBits;
    int const end = maskSize - begin < kMaskWordBits ? maskSize : begin + kMaskWordBits;
    MaskWord bits = 0;
    for (int p = begin; p < end; ++p)
    {
        bits |= static_cast<MaskWord>(toFloat(mask[p]) > threshold ? 1 : 0) << (p - begin);
    }
    return bits;
}

// Pixels two words have in common.
SEGTRT_HD int commonPixels(MaskWord a, MaskWord b)
{
#if defined(__CUDA_ARCH__)
    return __popcll(a & b);
#else
    return __builtin_popcountll(a & b);
#endif
}

SEGTRT_HD float maskIou(int intersection, int areaI, int areaJ)
{
    int const unionArea = areaI + areaJ - intersection;
    return unionArea > 0 ? static_cast<float>(intersection) / static_cast<float>(unionArea) : 0.f;
}

SEGTRT_HD long long pairIndex(int n, int i, int j)
{
    return static_cast<long long>(i) * n + j;
}

// IoU of candidate j with higher-scored i when i suppresses j (i a candidate, same class); 0 otherwise.
SEGTRT_HD float decayIou(int const* inter, float const* sortedScores, int const* labels, int n, int i, int j)
{
    bool const suppresses = i < j && labels[i] == labels[j] && isCandidate(sortedScores[i]);
    return suppresses ? maskIou(inter[pairIndex(n, i, j)], inter[pairIndex(n, i, i)], inter[pairIndex(n, j, j)]) : 0.f;
}

// How much candidate i was itself suppressed: its largest IoU with a higher-scored suppressor.
SEGTRT_HD float compensateIou(int const* inter, float const* sortedScores, int const* labels, int n, int i)
{
    float m = 0.f;
    for (int k = 0; k < i; ++k)
    {
        m = fmaxf(m, decayIou(inter, sortedScores, labels, n, k, i));
    }
    return m;
}

// Score multiplier of candidate j: min over i of f(decay_iou[i, j]) / f(compensate_iou[i]). Pairs where i does not
// suppress j give f(0) / f(c_i) >= 1, and i = 0 gives f(d) / f(0) <= 1, so only suppressors i < j are visited.
SEGTRT_HD float decayCoefficient(int const* inter, float const* sortedScores, int const* labels,
    float const* compensate, int n, int j, NmsKernel kernel, float sigma)
{
    float coefficient = 1.f;
    for (int i = 0; i < j; ++i)
    {
        if (labels[i] != labels[j] || !isCandidate(sortedScores[i]))
        {
            continue;
        }
        float const d = decayIou(inter, sortedScores, labels, n, i, j);
        float const c = compensate[i];
        float const ratio = kernel == NmsKernel::kGaussian ? expf(-sigma * (d * d)) / expf(-sigma * (c * c))
                                                           : (1.f - d) / (1.f - c);
        coefficient = nanMin(coefficient, ratio);
    }
    return coefficient;
}

// Decayed score of sorted candidate j, or kRemovedScore when j takes no part, the product is NaN, or filter_thr
// (if > 0) removes it.
SEGTRT_HD float decayedScore(float sortedScore, float coefficient, float filterThr)
{
    float const s = sortedScore * coefficient;
    bool const removed = !isCandidate(sortedScore) || s != s || (filterThr > 0.f && !(s >= filterThr));
    return removed ? kRemovedScore : s;
}

} // namespace segtrt
