// Attributes of the MultilevelRoIAlign node/plugin and their validation, in one place.
// Header-only so the TensorRT plugin and the CPU twin library (and hence the tests) share it.
#pragma once

#include "../common/tensorShape.h"
#include "roiAlignMath.h"

#include <string>
#include <vector>

namespace segtrt
{

struct MultilevelRoIAlignAttributes
{
    int outputHeight{7};
    int outputWidth{7};
    std::vector<int> featureStrides{4, 8, 16, 32};
    int samplingRatio{0};
    int aligned{1};
    std::string mode{"avg"};
    int canonicalScale{224};
    int canonicalLevel{4};
};

// Empty when the attributes are usable, otherwise one sentence naming the offending attribute.
inline std::string validateMultilevelRoIAlign(MultilevelRoIAlignAttributes const& a)
{
    if (a.outputHeight <= 0 || a.outputWidth <= 0)
    {
        return "attribute output_height/output_width must be positive, got " + std::to_string(a.outputHeight) + "x"
            + std::to_string(a.outputWidth);
    }
    if (a.samplingRatio < 0)
    {
        return "attribute sampling_ratio must be >= 0 (0 = adaptive), got " + std::to_string(a.samplingRatio);
    }
    if (a.aligned != 0 && a.aligned != 1)
    {
        return "attribute aligned must be 0 or 1, got " + std::to_string(a.aligned);
    }
    if (a.mode != "avg" && a.mode != "max")
    {
        return "attribute mode must be \"avg\" or \"max\", got \"" + a.mode + "\"";
    }
    if (a.canonicalScale <= 0 || a.canonicalLevel <= 0)
    {
        return "attributes canonical_scale and canonical_level must be positive";
    }
    if (a.featureStrides.empty() || static_cast<int>(a.featureStrides.size()) > kMaxLevels)
    {
        return "attribute feature_strides must list 1 to " + std::to_string(kMaxLevels) + " strides, got "
            + std::to_string(a.featureStrides.size());
    }
    for (size_t i = 0; i < a.featureStrides.size(); ++i)
    {
        int const s = a.featureStrides[i];
        bool const powerOfTwo = s > 0 && (s & (s - 1)) == 0;
        bool const doubles = i == 0 || s == 2 * a.featureStrides[i - 1];
        if (!powerOfTwo || !doubles)
        {
            return "attribute feature_strides must be consecutive powers of two in increasing order (like 4,8,16,32), "
                   "got "
                + std::to_string(s) + " at position " + std::to_string(i);
        }
    }
    return {};
}

// The plugin's inputs are rois then one feature map per stride; anything else is a wiring error.
inline std::string validateMultilevelRoIAlignInputs(MultilevelRoIAlignAttributes const& a, int numFeatureMaps)
{
    if (numFeatureMaps != static_cast<int>(a.featureStrides.size()))
    {
        return "attribute feature_strides lists " + std::to_string(a.featureStrides.size())
            + " strides but the node has " + std::to_string(numFeatureMaps) + " feature maps";
    }
    return {};
}

// Inputs rois [B, R, 4] then one map [B, C, H_l, W_l] per stride: "" when they fit, else a sentence naming the
// input.
inline std::string checkMultilevelRoIAlignInputs(
    MultilevelRoIAlignAttributes const& a, TensorShape const* inputs, int nbInputs)
{
    std::string problem = validateMultilevelRoIAlignInputs(a, nbInputs - 1);
    if (problem.empty())
        problem = checkRank(inputs[0], 3, "rois", "[B, R, 4]");
    if (problem.empty())
        problem = checkDim(inputs[0], 2, 4, "rois", "the 4 box coordinates");
    for (int i = 1; i < nbInputs && problem.empty(); ++i)
    {
        std::string const name = "features[" + std::to_string(i - 1) + "]";
        problem = checkRank(inputs[i], 4, name, "[B, C, H, W]");
        if (problem.empty())
            problem = checkDim(inputs[i], 0, inputs[0].d[0], name, "the batch B of rois");
        if (problem.empty())
            problem = checkDim(inputs[i], 1, inputs[1].d[1], name, "the channels C of features[0]");
    }
    return problem;
}

inline RoiAlignParams roiAlignParams(MultilevelRoIAlignAttributes const& a)
{
    return {a.outputHeight, a.outputWidth, a.samplingRatio, a.aligned != 0,
        a.mode == "max" ? PoolMode::kMax : PoolMode::kAvg};
}

} // namespace segtrt
