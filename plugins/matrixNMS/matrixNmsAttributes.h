// Attributes of the MatrixNMS node/plugin and their validation, in one place.
// Header-only so the TensorRT plugin and the CPU twin library (and hence the tests) share it.
#pragma once

#include "../common/tensorShape.h"
#include "matrixNmsMath.h"

#include <string>

namespace segtrt
{

struct MatrixNmsAttributes
{
    std::string kernel{"gaussian"};
    float sigma{2.f};
    float maskThreshold{0.5f};
    int nmsPre{-1};     // <= 0: keep every candidate
    int maxNum{100};    // the plugin needs a fixed output size; the CPU twin also allows -1 (no cut)
    float filterThr{-1.f}; // <= 0: no score filter
};

// Empty when the attributes are usable, otherwise one sentence naming the offending attribute.
// fixedSizeOutputs: the TensorRT plugin pads to max_num, so it needs max_num >= 1.
inline std::string validateMatrixNms(MatrixNmsAttributes const& a, bool fixedSizeOutputs)
{
    if (a.kernel != "gaussian" && a.kernel != "linear")
    {
        return "attribute kernel must be \"gaussian\" or \"linear\", got \"" + a.kernel + "\"";
    }
    if (!(a.sigma > 0.f))
    {
        return "attribute sigma must be positive, got " + std::to_string(a.sigma);
    }
    if (!(a.maskThreshold >= 0.f && a.maskThreshold < 1.f))
    {
        return "attribute mask_threshold must be in [0, 1), got " + std::to_string(a.maskThreshold);
    }
    if (a.nmsPre == 0 || a.nmsPre < -1)
    {
        return "attribute nms_pre must be -1 (no cut) or positive, got " + std::to_string(a.nmsPre);
    }
    if (fixedSizeOutputs ? a.maxNum < 1 : (a.maxNum == 0 || a.maxNum < -1))
    {
        return std::string("attribute max_num must be ") + (fixedSizeOutputs ? "positive" : "-1 (no cut) or positive")
            + ", got " + std::to_string(a.maxNum);
    }
    return {};
}

// Inputs masks [B, N, H, W], scores [B, N], labels [B, N]: "" when they fit, else a sentence naming the input.
inline std::string checkMatrixNmsInputs(TensorShape const* inputs, int nbInputs)
{
    if (nbInputs != 3)
        return "expects 3 inputs (masks [B, N, H, W], scores [B, N], labels [B, N]), got " + std::to_string(nbInputs);
    TensorShape const& masks = inputs[0];
    std::string problem = checkRank(masks, 4, "masks", "[B, N, H, W]");
    char const* names[] = {"masks", "scores", "labels"};
    for (int i = 1; i < 3 && problem.empty(); ++i)
    {
        TensorShape const& s = inputs[i];
        problem = checkRank(s, 2, names[i], "[B, N]");
        if (problem.empty())
            problem = checkDim(s, 0, masks.d[0], names[i], "the batch B of masks");
        if (problem.empty())
            problem = checkDim(s, 1, masks.d[1], names[i], "the candidates N of masks");
    }
    return problem;
}

inline NmsKernel nmsKernel(MatrixNmsAttributes const& a)
{
    return a.kernel == "linear" ? NmsKernel::kLinear : NmsKernel::kGaussian;
}

} // namespace segtrt
