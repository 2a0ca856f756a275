// Stand-in for CUB's segmented radix sort in the emulated-kernel test build: the same contract (keys descending,
// stable, values along, one segment per [begin, end) offset pair, scratch size query with a null scratch) by
// std::stable_sort. It proves the kernels call it right; CUB itself is exercised by `make gpu-check`.
#pragma once

#include "../../emulation.h"

#include <algorithm>
#include <numeric>
#include <vector>

namespace cub
{
struct DeviceSegmentedRadixSort
{
    template <typename KeyT, typename ValueT, typename BeginOffsetIteratorT, typename EndOffsetIteratorT>
    static cudaError_t SortPairsDescending(void* d_temp_storage, size_t& temp_storage_bytes, KeyT const* d_keys_in,
        KeyT* d_keys_out, ValueT const* d_values_in, ValueT* d_values_out, int num_items, int num_segments,
        BeginOffsetIteratorT d_begin_offsets, EndOffsetIteratorT d_end_offsets, int = 0, int = sizeof(KeyT) * 8,
        cudaStream_t = 0)
    {
        if (d_temp_storage == nullptr)
        {
            temp_storage_bytes = 1; // CUB wants scratch; a non-zero size keeps the carving honest
            return cudaSuccess;
        }
        if (num_items < 0 || num_segments < 0)
            return cuda_emu::fail(cudaErrorInvalidValue);
        cuda_emu::touch(d_temp_storage, temp_storage_bytes);
        for (int s = 0; s < num_segments; ++s)
        {
            int const begin = d_begin_offsets[s];
            int const end = d_end_offsets[s];
            std::vector<int> order(end - begin);
            std::iota(order.begin(), order.end(), begin);
            std::stable_sort(order.begin(), order.end(), [&](int a, int b) { return d_keys_in[a] > d_keys_in[b]; });
            for (int r = 0; r < end - begin; ++r)
            {
                d_keys_out[begin + r] = d_keys_in[order[r]];
                d_values_out[begin + r] = d_values_in[order[r]];
            }
        }
        return cudaSuccess;
    }
};
} // namespace cub
