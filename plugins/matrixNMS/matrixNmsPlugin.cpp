#include "matrixNmsPlugin.h"

#include "matrixNmsKernel.h"

using namespace nvinfer1;

namespace segtrt
{
namespace
{

// Inputs masks [B, N, H, W], scores [B, N], labels [B, N]; outputs count, keep, scores, labels.
enum Tensor : int32_t
{
    kMasks = 0,
    kScores,
    kLabels,
    kCount,
    kKeep,
    kKeptScores,
    kKeptLabels,
};

MatrixNmsShape shapeOf(Dims const& masks)
{
    return {static_cast<int>(masks.d[0]), static_cast<int>(masks.d[1]), static_cast<int>(masks.d[2] * masks.d[3])};
}

} // namespace

std::vector<std::pair<char const*, PluginFieldType>> MatrixNmsPlugin::fieldNames()
{
    return {{"kernel", PluginFieldType::kCHAR}, {"sigma", PluginFieldType::kFLOAT32},
        {"mask_threshold", PluginFieldType::kFLOAT32}, {"nms_pre", PluginFieldType::kINT32},
        {"max_num", PluginFieldType::kINT32}, {"filter_thr", PluginFieldType::kFLOAT32}};
}

MatrixNmsPlugin::Attributes MatrixNmsPlugin::parse(PluginFieldCollection const* fc)
{
    Attributes a;
    for (int32_t i = 0; fc != nullptr && i < fc->nbFields; ++i)
    {
        PluginField const& f = fc->fields[i];
        std::string const name = f.name;
        if (name == "kernel")
            a.kernel = fieldString(f);
        else if (name == "sigma")
            a.sigma = fieldFloat(f);
        else if (name == "mask_threshold")
            a.maskThreshold = fieldFloat(f);
        else if (name == "nms_pre")
            a.nmsPre = fieldInt(f);
        else if (name == "max_num")
            a.maxNum = fieldInt(f);
        else if (name == "filter_thr")
            a.filterThr = fieldFloat(f);
        else
            throw std::invalid_argument("unknown attribute " + name);
    }
    return a;
}

MatrixNmsPlugin::MatrixNmsPlugin(Attributes const& attributes)
    : mAttributes(attributes)
{
}

std::vector<PluginField> MatrixNmsPlugin::attributeFields() const
{
    Attributes const& a = mAttributes;
    return {PluginField("kernel", a.kernel.c_str(), PluginFieldType::kCHAR, static_cast<int32_t>(a.kernel.size())),
        PluginField("sigma", &a.sigma, PluginFieldType::kFLOAT32, 1),
        PluginField("mask_threshold", &a.maskThreshold, PluginFieldType::kFLOAT32, 1),
        PluginField("nms_pre", &a.nmsPre, PluginFieldType::kINT32, 1),
        PluginField("max_num", &a.maxNum, PluginFieldType::kINT32, 1),
        PluginField("filter_thr", &a.filterThr, PluginFieldType::kFLOAT32, 1)};
}

int32_t MatrixNmsPlugin::getOutputDataTypes(
    DataType* outputTypes, int32_t, DataType const* inputTypes, int32_t) const noexcept
{
    outputTypes[kCount - kCount] = DataType::kINT32;
    outputTypes[kKeep - kCount] = DataType::kINT32;
    outputTypes[kKeptScores - kCount] = inputTypes[kScores];
    outputTypes[kKeptLabels - kCount] = DataType::kINT32;
    return 0;
}

int32_t MatrixNmsPlugin::getOutputShapes(DimsExprs const* inputs, int32_t nbInputs, DimsExprs const*, int32_t,
    DimsExprs* outputs, int32_t, IExprBuilder& exprBuilder) noexcept
{
    if (!inputsFit(inputs, nbInputs))
        return -1;
    IDimensionExpr const* batch = inputs[kMasks].d[0];
    IDimensionExpr const* maxNum = exprBuilder.constant(mAttributes.maxNum);
    outputs[0].nbDims = 1;
    outputs[0].d[0] = batch;
    for (int32_t o = 1; o < 4; ++o)
    {
        outputs[o].nbDims = 2;
        outputs[o].d[0] = batch;
        outputs[o].d[1] = maxNum;
    }
    return 0;
}

bool MatrixNmsPlugin::supportsFormatCombination(
    int32_t pos, DynamicPluginTensorDesc const* inOut, int32_t, int32_t) noexcept
{
    PluginTensorDesc const& d = inOut[pos].desc;
    if (d.format != TensorFormat::kLINEAR)
        return false;
    switch (pos)
    {
    case kMasks:
    case kScores: return d.type == DataType::kFLOAT || d.type == DataType::kHALF; // each free, computed in FP32
    case kKeptScores: return d.type == inOut[kScores].desc.type;
    default: return d.type == DataType::kINT32; // labels, count, keep, kept labels
    }
}

int32_t MatrixNmsPlugin::configurePlugin(
    DynamicPluginTensorDesc const* in, int32_t nbInputs, DynamicPluginTensorDesc const*, int32_t) noexcept
{
    return inputsFit(in, nbInputs) ? 0 : -1;
}

size_t MatrixNmsPlugin::getWorkspaceSize(
    DynamicPluginTensorDesc const* inputs, int32_t, DynamicPluginTensorDesc const*, int32_t) const noexcept
{
    MatrixNmsParams params{nmsKernel(mAttributes), mAttributes.sigma, mAttributes.maskThreshold, mAttributes.nmsPre,
        mAttributes.maxNum, mAttributes.filterThr};
    return matrixNmsWorkspaceSize(shapeOf(inputs[kMasks].max), params);
}

int32_t MatrixNmsPlugin::onShapeChange(
    PluginTensorDesc const* in, int32_t nbInputs, PluginTensorDesc const*, int32_t) noexcept
{
    return inputsFit(in, nbInputs) ? 0 : -1;
}

int32_t MatrixNmsPlugin::enqueue(PluginTensorDesc const* inputDesc, PluginTensorDesc const*, void const* const* inputs,
    void* const* outputs, void* workspace, cudaStream_t stream) noexcept
{
    MatrixNmsParams params{nmsKernel(mAttributes), mAttributes.sigma, mAttributes.maskThreshold, mAttributes.nmsPre,
        mAttributes.maxNum, mAttributes.filterThr};
    cudaError_t const status = launchMatrixNms(inputs[kMasks], inputDesc[kMasks].type == DataType::kHALF,
        inputs[kScores], inputDesc[kScores].type == DataType::kHALF, static_cast<int const*>(inputs[kLabels]),
        shapeOf(inputDesc[kMasks].dims), params, static_cast<int*>(outputs[0]), static_cast<int*>(outputs[1]),
        outputs[2], static_cast<int*>(outputs[3]), workspace, stream);
    return status == cudaSuccess ? 0 : -1;
}

} // namespace segtrt
