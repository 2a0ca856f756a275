// Input shapes as plain integers (-1: not known yet), so both plugins' shape rules are header-only checks that
// compile without TensorRT, run at build time (getOutputShapes, configurePlugin) and again on concrete shapes.
#pragma once

#include <cstdint>
#include <string>

namespace segtrt
{

constexpr int kMaxTensorRank = 8;

struct TensorShape
{
    int nbDims;
    int64_t d[kMaxTensorRank];
};

inline std::string describe(TensorShape const& s)
{
    std::string text = "[";
    for (int k = 0; k < s.nbDims; ++k)
    {
        text += (k ? ", " : "") + (s.d[k] < 0 ? std::string("?") : std::to_string(s.d[k]));
    }
    return text + "]";
}

// "" when input `name` has rank `rank`, else the sentence that says so.
inline std::string checkRank(TensorShape const& s, int rank, std::string const& name, char const* layout)
{
    if (s.nbDims == rank)
        return {};
    return "input " + name + " must be " + layout + ", got rank " + std::to_string(s.nbDims) + " " + describe(s);
}

// "" unless dimension k of input `name` is known, differs from `expected` (when known too), and so cannot match.
inline std::string checkDim(TensorShape const& s, int k, int64_t expected, std::string const& name, char const* what)
{
    if (s.d[k] < 0 || expected < 0 || s.d[k] == expected)
        return {};
    return "input " + name + " " + describe(s) + ": dimension " + std::to_string(k) + " must be " + what + " = "
        + std::to_string(expected) + ", got " + std::to_string(s.d[k]);
}

} // namespace segtrt
