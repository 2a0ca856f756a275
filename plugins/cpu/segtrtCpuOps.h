// C API of libsegtrt_cpu_ops.so, the CPU twins of the TensorRT plugins (used by python/segtrt/ops via ctypes).
// Every function returns 0 on success and 1 on a bad argument, writing one sentence into error[errorSize].
#pragma once

extern "C"
{
    // Same checks as the MultilevelRoIAlign plugin's createPlugin (and its input-count check).
    int segtrt_validate_multilevel_roi_align(int outputHeight, int outputWidth, int const* strides, int numStrides,
        int samplingRatio, int aligned, char const* mode, int canonicalScale, int canonicalLevel, int numFeatureMaps,
        char* error, int errorSize);

    // Same checks as the MatrixNMS plugin's createPlugin when fixedSizeOutputs is 1.
    int segtrt_validate_matrix_nms(char const* kernel, float sigma, float maskThreshold, int nmsPre, int maxNum,
        float filterThr, int fixedSizeOutputs, char* error, int errorSize);

    // input [N, C, H, W], rois [R, 4] (x1, y1, x2, y2), batchIndices [R] -> output [R, C, oh, ow].
    int segtrt_roi_align(float const* input, int channels, int height, int width, float const* rois,
        int const* batchIndices, int numRois, int outputHeight, int outputWidth, float spatialScale, int samplingRatio,
        int aligned, char const* mode, float* output, char* error, int errorSize);

    // features[l] [B, C, heights[l], widths[l]], rois [B, R, 4] in input pixels -> output [B, R, C, oh, ow].
    int segtrt_multilevel_roi_align(float const* const* features, int const* heights, int const* widths,
        int numFeatureMaps, int batch, int channels, float const* rois, int numRois, int const* strides,
        int numStrides, int outputHeight, int outputWidth, int samplingRatio, int aligned, char const* mode,
        int canonicalScale, int canonicalLevel, float* output, char* error, int errorSize);

    // masks [N, maskSize] (binarised with > maskThreshold), labels [N], scores [N]. Writes *count and, in
    // mmdetection's return order, keepIndices/keptScores/keptLabels (capacity N each).
    int segtrt_matrix_nms(float const* masks, int numMasks, int maskSize, int const* labels, float const* scores,
        char const* kernel, float sigma, float maskThreshold, int nmsPre, int maxNum, float filterThr, int* count,
        int* keepIndices, float* keptScores, int* keptLabels, char* error, int errorSize);
}
