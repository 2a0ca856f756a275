// Reading ONNX-node attributes from a TensorRT PluginFieldCollection, and logging plugin errors.
#pragma once

#include "NvInferRuntime.h"
#include "tensorShape.h"

#include <cstdint>
#include <stdexcept>
#include <string>
#include <vector>

namespace segtrt
{

// The logger TensorRT hands over through setLoggerFinder (nullptr until then).
nvinfer1::ILogger* pluginLogger() noexcept;
void setPluginLoggerFinder(nvinfer1::ILoggerFinder* finder) noexcept;

// Reports a rejected attribute or shape: through TensorRT's logger when known, else on stderr.
void logPluginError(char const* pluginName, std::string const& message) noexcept;

// One attribute as integers; the ONNX parser may pass INT32 or INT64 data.
inline std::vector<int> fieldInts(nvinfer1::PluginField const& f)
{
    std::vector<int> out(static_cast<size_t>(f.length));
    for (int32_t i = 0; i < f.length; ++i)
    {
        if (f.type == nvinfer1::PluginFieldType::kINT64)
            out[i] = static_cast<int>(static_cast<int64_t const*>(f.data)[i]);
        else if (f.type == nvinfer1::PluginFieldType::kINT32)
            out[i] = static_cast<int32_t const*>(f.data)[i];
        else
            throw std::invalid_argument(std::string("attribute ") + f.name + " must be an integer");
    }
    return out;
}

inline int fieldInt(nvinfer1::PluginField const& f)
{
    std::vector<int> const v = fieldInts(f);
    if (v.size() != 1)
        throw std::invalid_argument(std::string("attribute ") + f.name + " must be a single integer");
    return v[0];
}

inline float fieldFloat(nvinfer1::PluginField const& f)
{
    if (f.length == 1 && f.type == nvinfer1::PluginFieldType::kFLOAT32)
        return *static_cast<float const*>(f.data);
    if (f.length == 1 && f.type == nvinfer1::PluginFieldType::kFLOAT64)
        return static_cast<float>(*static_cast<double const*>(f.data));
    throw std::invalid_argument(std::string("attribute ") + f.name + " must be a single float");
}

// String attributes arrive as kCHAR with a length, not always NUL-terminated.
inline std::string fieldString(nvinfer1::PluginField const& f)
{
    if (f.type != nvinfer1::PluginFieldType::kCHAR)
        throw std::invalid_argument(std::string("attribute ") + f.name + " must be a string");
    std::string s(static_cast<char const*>(f.data), static_cast<size_t>(f.length));
    return s.substr(0, s.find('\0'));
}

// TensorRT's shapes as the header-only checks take them: dimensions not known yet (symbolic, or -1) are -1.
inline TensorShape tensorShape(nvinfer1::Dims const& dims)
{
    TensorShape s{dims.nbDims < kMaxTensorRank ? dims.nbDims : kMaxTensorRank, {}};
    for (int k = 0; k < s.nbDims; ++k)
        s.d[k] = dims.d[k];
    return s;
}

inline TensorShape tensorShape(nvinfer1::DimsExprs const& dims)
{
    TensorShape s{dims.nbDims < kMaxTensorRank ? dims.nbDims : kMaxTensorRank, {}};
    for (int k = 0; k < s.nbDims; ++k)
        s.d[k] = dims.d[k]->isConstant() ? dims.d[k]->getConstantValue() : -1;
    return s;
}

inline TensorShape tensorShape(nvinfer1::DynamicPluginTensorDesc const& desc)
{
    return tensorShape(desc.desc.dims);
}

inline TensorShape tensorShape(nvinfer1::PluginTensorDesc const& desc)
{
    return tensorShape(desc.dims);
}

} // namespace segtrt
