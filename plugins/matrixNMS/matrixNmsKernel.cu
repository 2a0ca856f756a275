// The MatrixNMS kernels: thin grid-stride loops over matrixNmsMath.h, one stage each, batched over images.
#include "../common/cudaLaunch.cuh"
#include "matrixNmsKernel.h"

namespace segtrt
{
namespace
{

#define GRID_STRIDE(i, total)                                                                                          \
    for (long long i = blockIdx.x * static_cast<long long>(blockDim.x) + threadIdx.x; i < (total);                   \
         i += static_cast<long long>(gridDim.x) * blockDim.x)

constexpr int kTile = 16;

// Workspace carved into per-stage arrays; all [B, ...], with n = candidates after nms_pre.
struct Scratch
{
    float* scores;       // [B, N] input scores as FP32
    int* order;          // [B, n] input index of the r-th highest score
    float* sortedScores; // [B, n]
    int* sortedLabels;   // [B, n]
    float* binary;       // [B, n, HW] sorted binary masks
    float* gram;         // [B, n, n]
    float* compensate;   // [B, n]
    float* decayed;      // [B, n]
    size_t bytes;
};

template <typename T>
__global__ void scoresToFloat(T const* scores, long long total, float* out)
{
    GRID_STRIDE(i, total)
    {
        out[i] = toFloat(scores[i]);
    }
}

__global__ void sortByScore(float const* scores, int const* labels, int numMasks, int n, int batch, Scratch w)
{
    GRID_STRIDE(t, static_cast<long long>(batch) * numMasks)
    {
        int const b = static_cast<int>(t / numMasks);
        int const i = static_cast<int>(t % numMasks);
        int const rank = descendingRank(scores + b * numMasks, numMasks, i);
        if (rank < n)
        {
            w.order[b * n + rank] = i;
            w.sortedScores[b * n + rank] = scores[t];
            w.sortedLabels[b * n + rank] = labels[t];
        }
    }
}

template <typename T>
__global__ void gatherBinaryMasks(T const* masks, int numMasks, int n, int maskSize, int batch, float threshold, Scratch w)
{
    GRID_STRIDE(t, static_cast<long long>(batch) * n * maskSize)
    {
        long long const row = t / maskSize; // b * n + r
        int const b = static_cast<int>(row / n);
        long long const source = (static_cast<long long>(b) * numMasks + w.order[row]) * maskSize + t % maskSize;
        w.binary[t] = binarizeMask(toFloat(masks[source]), threshold);
    }
}

// gram[b] = M_b · M_bᵀ with M_b [n, K]; one 16x16 output tile per block, K streamed through shared memory.
__global__ void gramMatrix(float const* binary, int n, int k, float* gram)
{
    __shared__ float rows[kTile][kTile + 1];
    __shared__ float cols[kTile][kTile + 1];
    float const* m = binary + static_cast<long long>(blockIdx.z) * n * k;
    int const i = blockIdx.y * kTile + threadIdx.y;
    int const j = blockIdx.x * kTile + threadIdx.x;
    float acc = 0.f;
    for (int k0 = 0; k0 < k; k0 += kTile)
    {
        int const rowOfTile = blockIdx.y * kTile + threadIdx.y;
        int const colOfTile = blockIdx.x * kTile + threadIdx.y;
        int const kk = k0 + threadIdx.x;
        rows[threadIdx.y][threadIdx.x] = (rowOfTile < n && kk < k) ? m[static_cast<long long>(rowOfTile) * k + kk] : 0.f;
        cols[threadIdx.y][threadIdx.x] = (colOfTile < n && kk < k) ? m[static_cast<long long>(colOfTile) * k + kk] : 0.f;
        __syncthreads();
        for (int q = 0; q < kTile; ++q)
        {
            acc += rows[threadIdx.y][q] * cols[threadIdx.x][q];
        }
        __syncthreads();
    }
    if (i < n && j < n)
    {
        gram[static_cast<long long>(blockIdx.z) * n * n + i * n + j] = acc;
    }
}

__global__ void compensateIous(int n, int batch, Scratch w)
{
    GRID_STRIDE(t, static_cast<long long>(batch) * n)
    {
        int const b = static_cast<int>(t / n);
        w.compensate[t] = compensateIou(w.gram + static_cast<long long>(b) * n * n, w.sortedLabels + b * n, n,
            static_cast<int>(t % n));
    }
}

__global__ void decayScores(int n, int batch, NmsKernel kernel, float sigma, float filterThr, Scratch w)
{
    GRID_STRIDE(t, static_cast<long long>(batch) * n)
    {
        int const b = static_cast<int>(t / n);
        float const coefficient = decayCoefficient(w.gram + static_cast<long long>(b) * n * n, w.sortedLabels + b * n,
            w.compensate + b * n, n, static_cast<int>(t % n), kernel, sigma);
        w.decayed[t] = decayedScore(w.sortedScores[t], coefficient, filterThr);
    }
}

// Padding of every output row: index -1, score 0, label -1.
template <typename T>
__global__ void padOutputs(long long total, int* keep, T* keptScores, int* keptLabels)
{
    GRID_STRIDE(t, total)
    {
        keep[t] = -1;
        keptScores[t] = fromFloat<T>(0.f);
        keptLabels[t] = -1;
    }
}

// Writes the survivors in descending decayed score, at most maxNum per image, and their count.
template <typename T>
__global__ void selectSurvivors(int n, int batch, int maxNum, Scratch w, int* count, int* keep, T* keptScores, int* keptLabels)
{
    GRID_STRIDE(t, static_cast<long long>(batch) * n)
    {
        int const b = static_cast<int>(t / n);
        int const j = static_cast<int>(t % n);
        float const* decayed = w.decayed + b * n;
        int survivors = 0;
        for (int q = 0; q < n; ++q)
        {
            survivors += decayed[q] != kRemovedScore ? 1 : 0;
        }
        int const kept = survivors < maxNum ? survivors : maxNum;
        if (j == 0)
        {
            count[b] = kept;
        }
        int const rank = descendingRank(decayed, n, j);
        if (rank < kept)
        {
            keep[b * maxNum + rank] = w.order[t];
            keptScores[b * maxNum + rank] = fromFloat<T>(decayed[j]);
            keptLabels[b * maxNum + rank] = w.sortedLabels[t];
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

Scratch carve(char* base, MatrixNmsShape const& s, MatrixNmsParams const& p)
{
    size_t const b = s.batch;
    size_t const n = candidates(s, p);
    Scratch w{};
    size_t offset = 0;
    auto take = [&](size_t bytes) {
        char* at = base == nullptr ? nullptr : base + offset;
        offset += align256(bytes);
        return at;
    };
    w.scores = reinterpret_cast<float*>(take(b * s.numMasks * sizeof(float)));
    w.order = reinterpret_cast<int*>(take(b * n * sizeof(int)));
    w.sortedScores = reinterpret_cast<float*>(take(b * n * sizeof(float)));
    w.sortedLabels = reinterpret_cast<int*>(take(b * n * sizeof(int)));
    w.binary = reinterpret_cast<float*>(take(b * n * s.maskSize * sizeof(float)));
    w.gram = reinterpret_cast<float*>(take(b * n * n * sizeof(float)));
    w.compensate = reinterpret_cast<float*>(take(b * n * sizeof(float)));
    w.decayed = reinterpret_cast<float*>(take(b * n * sizeof(float)));
    w.bytes = offset;
    return w;
}

template <typename T>
cudaError_t launch(void const* masks, void const* scores, int const* labels, MatrixNmsShape const& s,
    MatrixNmsParams const& p, int* count, int* keep, void* keptScores, int* keptLabels, void* workspace,
    cudaStream_t stream)
{
    int const n = candidates(s, p);
    Scratch const w = carve(static_cast<char*>(workspace), s, p);
    long long const outputs = static_cast<long long>(s.batch) * p.maxNum;
    T* outScores = static_cast<T*>(keptScores);
    padOutputs<T><<<gridSize(outputs), kThreadsPerBlock, 0, stream>>>(outputs, keep, outScores, keptLabels);
    cudaMemsetAsync(count, 0, s.batch * sizeof(int), stream);
    if (n == 0)
    {
        return cudaGetLastError();
    }
    long long const all = static_cast<long long>(s.batch) * s.numMasks;
    long long const sorted = static_cast<long long>(s.batch) * n;
    scoresToFloat<T><<<gridSize(all), kThreadsPerBlock, 0, stream>>>(static_cast<T const*>(scores), all, w.scores);
    sortByScore<<<gridSize(all), kThreadsPerBlock, 0, stream>>>(w.scores, labels, s.numMasks, n, s.batch, w);
    long long const pixels = sorted * s.maskSize;
    gatherBinaryMasks<T><<<gridSize(pixels), kThreadsPerBlock, 0, stream>>>(
        static_cast<T const*>(masks), s.numMasks, n, s.maskSize, s.batch, p.maskThreshold, w);
    dim3 const tiles((n + kTile - 1) / kTile, (n + kTile - 1) / kTile, s.batch);
    gramMatrix<<<tiles, dim3(kTile, kTile), 0, stream>>>(w.binary, n, s.maskSize, w.gram);
    compensateIous<<<gridSize(sorted), kThreadsPerBlock, 0, stream>>>(n, s.batch, w);
    decayScores<<<gridSize(sorted), kThreadsPerBlock, 0, stream>>>(n, s.batch, p.kernel, p.sigma, p.filterThr, w);
    selectSurvivors<T><<<gridSize(sorted), kThreadsPerBlock, 0, stream>>>(
        n, s.batch, p.maxNum, w, count, keep, outScores, keptLabels);
    return cudaGetLastError();
}

} // namespace

size_t matrixNmsWorkspaceSize(MatrixNmsShape const& shape, MatrixNmsParams const& params)
{
    return carve(nullptr, shape, params).bytes;
}

cudaError_t launchMatrixNms(void const* masks, void const* scores, int const* labels, MatrixNmsShape const& shape,
    MatrixNmsParams const& params, bool fp16, int* count, int* keep, void* keptScores, int* keptLabels,
    void* workspace, cudaStream_t stream)
{
    return fp16 ? launch<__half>(masks, scores, labels, shape, params, count, keep, keptScores, keptLabels, workspace, stream)
                : launch<float>(masks, scores, labels, shape, params, count, keep, keptScores, keptLabels, workspace, stream);
}

#endif // __CUDACC_RTC__

} // namespace segtrt
