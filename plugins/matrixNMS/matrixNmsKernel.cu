// The MatrixNMS kernels: thin loops over matrixNmsMath.h, one stage each, batched over images; the two sorts are
// CUB's segmented radix sort (stable, one segment per image).
#include "../common/cudaLaunch.cuh"
#include "matrixNmsKernel.h"

#ifndef __CUDACC_RTC__
#include <cub/device/device_segmented_radix_sort.cuh>
#endif

namespace segtrt
{
namespace
{

#define GRID_STRIDE(i, total)                                                                                          \
    for (long long i = blockIdx.x * static_cast<long long>(blockDim.x) + threadIdx.x; i < (total);                   \
         i += static_cast<long long>(gridDim.x) * blockDim.x)

// Intersection tiles: kTile x kTile candidate pairs per block, mask words streamed kTile at a time.
constexpr int kTile = 16;

// Workspace carved into per-stage arrays, with n = candidates after nms_pre.
struct Scratch
{
    int* offsets;        // [B + 1] b * N: the images' segments of the input candidates
    int* sortedOffsets;  // [B + 1] b * n: the images' segments after the nms_pre cut
    float* keys;         // [B, N] sortKey of the scores
    int* indices;        // [B, N] 0..N-1 in each image
    float* sortedKeys;   // [B, N] descending
    int* order;          // [B, N] input index of the r-th highest key
    float* sortedScores; // [B, n] the first n sorted keys
    int* sortedLabels;   // [B, n]
    MaskWord* bits;      // [B, n, words] sorted binary masks
    int* inter;          // [B, n, n] upper triangle: intersections, diagonal: areas
    float* compensate;   // [B, n]
    float* decayed;      // [B, n]
    int* positions;      // [B, n] 0..n-1 in each image
    float* rankedScores; // [B, n] decayed, descending
    int* ranked;         // [B, n] sorted position of the r-th highest decayed score
    void* sortScratch;
    size_t sortScratchBytes;
    size_t bytes;
};

template <typename T>
__global__ void prepareSort(T const* scores, int batch, int numMasks, int n, Scratch w)
{
    long long const all = static_cast<long long>(batch) * numMasks;
    GRID_STRIDE(t, all > batch ? all : batch + 1)
    {
        if (t < all)
        {
            w.keys[t] = sortKey(toFloat(scores[t]));
            w.indices[t] = static_cast<int>(t % numMasks);
        }
        if (t <= batch)
        {
            w.offsets[t] = static_cast<int>(t) * numMasks;
            w.sortedOffsets[t] = static_cast<int>(t) * n;
        }
    }
}

__global__ void gatherCandidates(int const* labels, int batch, int numMasks, int n, Scratch w)
{
    GRID_STRIDE(t, static_cast<long long>(batch) * n)
    {
        int const b = static_cast<int>(t / n);
        int const r = static_cast<int>(t % n);
        long long const sorted = static_cast<long long>(b) * numMasks + r;
        w.sortedScores[t] = w.sortedKeys[sorted];
        w.sortedLabels[t] = labels[static_cast<long long>(b) * numMasks + w.order[sorted]];
        w.positions[t] = r;
    }
}

template <typename T>
__global__ void packMasks(T const* masks, int batch, int numMasks, int n, int maskSize, float threshold, Scratch w)
{
    int const words = maskWords(maskSize);
    GRID_STRIDE(t, static_cast<long long>(batch) * n * words)
    {
        long long const row = t / words; // b * n + r
        int const b = static_cast<int>(row / n);
        int const r = static_cast<int>(row % n);
        int const input = w.order[static_cast<long long>(b) * numMasks + r];
        T const* mask = masks + (static_cast<long long>(b) * numMasks + input) * maskSize;
        w.bits[t] = packMaskWord(mask, maskSize, static_cast<int>(t % words), threshold);
    }
}

// inter[b][i, j] for i <= j, by tiles on and above the diagonal (the others return at once).
__global__ void intersections(MaskWord const* bits, int n, int words, int* inter)
{
    if (blockIdx.x < blockIdx.y)
    {
        return;
    }
    __shared__ MaskWord rows[kTile][kTile + 1];
    __shared__ MaskWord cols[kTile][kTile + 1];
    MaskWord const* m = bits + static_cast<long long>(blockIdx.z) * n * words;
    int const i = blockIdx.y * kTile + threadIdx.y;
    int const j = blockIdx.x * kTile + threadIdx.x;
    int const colOfTile = blockIdx.x * kTile + threadIdx.y;
    int common = 0;
    for (int w0 = 0; w0 < words; w0 += kTile)
    {
        int const w = w0 + threadIdx.x;
        rows[threadIdx.y][threadIdx.x] = (i < n && w < words) ? m[static_cast<long long>(i) * words + w] : 0;
        cols[threadIdx.y][threadIdx.x] = (colOfTile < n && w < words) ? m[static_cast<long long>(colOfTile) * words + w] : 0;
        __syncthreads();
        for (int q = 0; q < kTile; ++q)
        {
            common += commonPixels(rows[threadIdx.y][q], cols[threadIdx.x][q]);
        }
        __syncthreads();
    }
    if (i < n && j < n && i <= j)
    {
        inter[static_cast<long long>(blockIdx.z) * n * n + pairIndex(n, i, j)] = common;
    }
}

__global__ void compensateIous(int batch, int n, Scratch w)
{
    GRID_STRIDE(t, static_cast<long long>(batch) * n)
    {
        int const b = static_cast<int>(t / n);
        w.compensate[t] = compensateIou(w.inter + static_cast<long long>(b) * n * n, w.sortedScores + b * n,
            w.sortedLabels + b * n, n, static_cast<int>(t % n));
    }
}

__global__ void decayScores(int batch, int n, NmsKernel kernel, float sigma, float filterThr, Scratch w)
{
    GRID_STRIDE(t, static_cast<long long>(batch) * n)
    {
        int const b = static_cast<int>(t / n);
        float const coefficient = decayCoefficient(w.inter + static_cast<long long>(b) * n * n, w.sortedScores + b * n,
            w.sortedLabels + b * n, w.compensate + b * n, n, static_cast<int>(t % n), kernel, sigma);
        w.decayed[t] = decayedScore(w.sortedScores[t], coefficient, filterThr);
    }
}

// Every output slot: the r-th survivor by decayed score, or padding (index -1, score 0, label -1); and the count,
// written by the one slot where the survivors end (removed candidates sort last, so survivors are a prefix).
template <typename T>
__global__ void writeOutputs(int batch, int numMasks, int n, int maxNum, Scratch w, int* count, int* keep,
    T* keptScores, int* keptLabels)
{
    int const slots = n < maxNum ? n : maxNum;
    GRID_STRIDE(t, static_cast<long long>(batch) * maxNum)
    {
        int const b = static_cast<int>(t / maxNum);
        int const r = static_cast<int>(t % maxNum);
        float const* ranked = w.rankedScores + static_cast<long long>(b) * n;
        bool const kept = r < slots && ranked[r] != kRemovedScore;
        if (kept)
        {
            int const q = w.ranked[static_cast<long long>(b) * n + r];
            keep[t] = w.order[static_cast<long long>(b) * numMasks + q];
            keptScores[t] = fromFloat<T>(ranked[r]);
            keptLabels[t] = w.sortedLabels[static_cast<long long>(b) * n + q];
        }
        else
        {
            keep[t] = -1;
            keptScores[t] = fromFloat<T>(0.f);
            keptLabels[t] = -1;
        }
        if (r == 0 && !kept)
        {
            count[b] = 0;
        }
        if (kept && (r + 1 == slots || ranked[r + 1] == kRemovedScore))
        {
            count[b] = r + 1;
        }
    }
}

} // namespace

// Host side: the launches. NVRTC compiles device code only (tests/test_kernels_nvrtc.py compiles the kernels above
// with it for every target architecture, including those the installed nvcc has dropped), so it skips this part.
#ifndef __CUDACC_RTC__
namespace
{

size_t align256(size_t bytes)
{
    return (bytes + 255) / 256 * 256;
}

int candidates(MatrixNmsShape const& s, MatrixNmsParams const& p)
{
    return (p.nmsPre > 0 && s.numMasks > p.nmsPre) ? p.nmsPre : s.numMasks;
}

// Both sorts: keys descending, values along, one segment per image.
cudaError_t sortSegments(void* scratch, size_t& scratchBytes, float const* keysIn, float* keysOut,
    int const* valuesIn, int* valuesOut, int items, int segments, int const* offsets, cudaStream_t stream)
{
    return cub::DeviceSegmentedRadixSort::SortPairsDescending(scratch, scratchBytes, keysIn, keysOut, valuesIn,
        valuesOut, items, segments, offsets, offsets + 1, 0, static_cast<int>(sizeof(float) * 8), stream);
}

Scratch carve(char* base, MatrixNmsShape const& s, MatrixNmsParams const& p)
{
    size_t const b = s.batch;
    size_t const all = b * s.numMasks;
    size_t const n = candidates(s, p);
    Scratch w{};
    size_t offset = 0;
    auto take = [&](size_t bytes) {
        char* at = base == nullptr ? nullptr : base + offset;
        offset += align256(bytes);
        return at;
    };
    w.offsets = reinterpret_cast<int*>(take((b + 1) * sizeof(int)));
    w.sortedOffsets = reinterpret_cast<int*>(take((b + 1) * sizeof(int)));
    w.keys = reinterpret_cast<float*>(take(all * sizeof(float)));
    w.indices = reinterpret_cast<int*>(take(all * sizeof(int)));
    w.sortedKeys = reinterpret_cast<float*>(take(all * sizeof(float)));
    w.order = reinterpret_cast<int*>(take(all * sizeof(int)));
    w.sortedScores = reinterpret_cast<float*>(take(b * n * sizeof(float)));
    w.sortedLabels = reinterpret_cast<int*>(take(b * n * sizeof(int)));
    w.bits = reinterpret_cast<MaskWord*>(take(b * n * maskWords(s.maskSize) * sizeof(MaskWord)));
    w.inter = reinterpret_cast<int*>(take(b * n * n * sizeof(int)));
    w.compensate = reinterpret_cast<float*>(take(b * n * sizeof(float)));
    w.decayed = reinterpret_cast<float*>(take(b * n * sizeof(float)));
    w.positions = reinterpret_cast<int*>(take(b * n * sizeof(int)));
    w.rankedScores = reinterpret_cast<float*>(take(b * n * sizeof(float)));
    w.ranked = reinterpret_cast<int*>(take(b * n * sizeof(int)));
    size_t byScore = 0;
    size_t byDecay = 0;
    sortSegments(nullptr, byScore, nullptr, nullptr, nullptr, nullptr, static_cast<int>(all), s.batch, nullptr, 0);
    sortSegments(nullptr, byDecay, nullptr, nullptr, nullptr, nullptr, static_cast<int>(b * n), s.batch, nullptr, 0);
    w.sortScratchBytes = byScore > byDecay ? byScore : byDecay;
    w.sortScratch = take(w.sortScratchBytes);
    w.bytes = offset;
    return w;
}

template <typename TM, typename TS>
cudaError_t launch(void const* masks, void const* scores, int const* labels, MatrixNmsShape const& s,
    MatrixNmsParams const& p, int* count, int* keep, void* keptScores, int* keptLabels, void* workspace,
    cudaStream_t stream)
{
    if (s.batch == 0)
    {
        return cudaSuccess; // no outputs, and a zero grid would be an invalid launch
    }
    int const n = candidates(s, p);
    Scratch w = carve(static_cast<char*>(workspace), s, p);
    TS* outScores = static_cast<TS*>(keptScores);
    long long const sorted = static_cast<long long>(s.batch) * n;
    if (n > 0)
    {
        long long const all = static_cast<long long>(s.batch) * s.numMasks;
        int const words = maskWords(s.maskSize);
        SEGTRT_CUDA_TRY(launchGridStride(prepareSort<TS>, all > s.batch ? all : s.batch + 1, stream,
            static_cast<TS const*>(scores), s.batch, s.numMasks, n, w));
        SEGTRT_CUDA_TRY(sortSegments(w.sortScratch, w.sortScratchBytes, w.keys, w.sortedKeys, w.indices, w.order,
            static_cast<int>(all), s.batch, w.offsets, stream));
        SEGTRT_CUDA_TRY(launchGridStride(gatherCandidates, sorted, stream, labels, s.batch, s.numMasks, n, w));
        SEGTRT_CUDA_TRY(launchGridStride(packMasks<TM>, sorted * words, stream, static_cast<TM const*>(masks),
            s.batch, s.numMasks, n, s.maskSize, p.maskThreshold, w));
        unsigned const tiles = static_cast<unsigned>((n + kTile - 1) / kTile);
        SEGTRT_CUDA_TRY(launchKernel(intersections, dim3(tiles, tiles, static_cast<unsigned>(s.batch)),
            dim3(kTile, kTile), stream, w.bits, n, words, w.inter));
        SEGTRT_CUDA_TRY(launchGridStride(compensateIous, sorted, stream, s.batch, n, w));
        SEGTRT_CUDA_TRY(
            launchGridStride(decayScores, sorted, stream, s.batch, n, p.kernel, p.sigma, p.filterThr, w));
        SEGTRT_CUDA_TRY(sortSegments(w.sortScratch, w.sortScratchBytes, w.decayed, w.rankedScores, w.positions,
            w.ranked, static_cast<int>(sorted), s.batch, w.sortedOffsets, stream));
    }
    return launchGridStride(writeOutputs<TS>, static_cast<long long>(s.batch) * p.maxNum, stream, s.batch,
        s.numMasks, n, p.maxNum, w, count, keep, outScores, keptLabels);
}

// The four storage combinations, masks' type first.
template <typename TM>
cudaError_t launchForMasks(void const* masks, void const* scores, bool scoresHalf, int const* labels,
    MatrixNmsShape const& s, MatrixNmsParams const& p, int* count, int* keep, void* keptScores, int* keptLabels,
    void* workspace, cudaStream_t stream)
{
    return scoresHalf
        ? launch<TM, __half>(masks, scores, labels, s, p, count, keep, keptScores, keptLabels, workspace, stream)
        : launch<TM, float>(masks, scores, labels, s, p, count, keep, keptScores, keptLabels, workspace, stream);
}

} // namespace

size_t matrixNmsWorkspaceSize(MatrixNmsShape const& shape, MatrixNmsParams const& params)
{
    return carve(nullptr, shape, params).bytes;
}

cudaError_t launchMatrixNms(void const* masks, bool masksHalf, void const* scores, bool scoresHalf, int const* labels,
    MatrixNmsShape const& shape, MatrixNmsParams const& params, int* count, int* keep, void* keptScores,
    int* keptLabels, void* workspace, cudaStream_t stream)
{
    return masksHalf ? launchForMasks<__half>(masks, scores, scoresHalf, labels, shape, params, count, keep,
                           keptScores, keptLabels, workspace, stream)
                     : launchForMasks<float>(masks, scores, scoresHalf, labels, shape, params, count, keep,
                           keptScores, keptLabels, workspace, stream);
}

#endif // __CUDACC_RTC__

} // namespace segtrt
