#include "multilevelRoIAlignPlugin.h"

#include "multilevelRoIAlignKernel.h"

using namespace nvinfer1;

namespace segtrt
{

std::vector<std::pair<char const*, PluginFieldType>> MultilevelRoIAlignPlugin::fieldNames()
{
    return {{"output_height", PluginFieldType::kINT32}, {"output_width", PluginFieldType::kINT32},
        {"feature_strides", PluginFieldType::kINT32}, {"sampling_ratio", PluginFieldType::kINT32},
        {"aligned", PluginFieldType::kINT32}, {"mode", PluginFieldType::kCHAR},
        {"canonical_scale", PluginFieldType::kINT32}, {"canonical_level", PluginFieldType::kINT32}};
}

MultilevelRoIAlignPlugin::Attributes MultilevelRoIAlignPlugin::parse(PluginFieldCollection const* fc)
{
    Attributes a;
    for (int32_t i = 0; fc != nullptr && i < fc->nbFields; ++i)
    {
        PluginField const& f = fc->fields[i];
        std::string const name = f.name;
        if (name == "output_height")
            a.outputHeight = fieldInt(f);
        else if (name == "output_width")
            a.outputWidth = fieldInt(f);
        else if (name == "feature_strides")
            a.featureStrides = fieldInts(f);
        else if (name == "sampling_ratio")
            a.samplingRatio = fieldInt(f);
        else if (name == "aligned")
            a.aligned = fieldInt(f);
        else if (name == "mode")
            a.mode = fieldString(f);
        else if (name == "canonical_scale")
            a.canonicalScale = fieldInt(f);
        else if (name == "canonical_level")
            a.canonicalLevel = fieldInt(f);
        else
            throw std::invalid_argument("unknown attribute " + name);
    }
    return a;
}

MultilevelRoIAlignPlugin::MultilevelRoIAlignPlugin(Attributes const& attributes)
    : mAttributes(attributes)
{
}

std::vector<PluginField> MultilevelRoIAlignPlugin::attributeFields() const
{
    Attributes const& a = mAttributes;
    return {PluginField("output_height", &a.outputHeight, PluginFieldType::kINT32, 1),
        PluginField("output_width", &a.outputWidth, PluginFieldType::kINT32, 1),
        PluginField("feature_strides", a.featureStrides.data(), PluginFieldType::kINT32,
            static_cast<int32_t>(a.featureStrides.size())),
        PluginField("sampling_ratio", &a.samplingRatio, PluginFieldType::kINT32, 1),
        PluginField("aligned", &a.aligned, PluginFieldType::kINT32, 1),
        PluginField("mode", a.mode.c_str(), PluginFieldType::kCHAR, static_cast<int32_t>(a.mode.size())),
        PluginField("canonical_scale", &a.canonicalScale, PluginFieldType::kINT32, 1),
        PluginField("canonical_level", &a.canonicalLevel, PluginFieldType::kINT32, 1)};
}

int32_t MultilevelRoIAlignPlugin::getOutputDataTypes(
    DataType* outputTypes, int32_t, DataType const* inputTypes, int32_t nbInputs) const noexcept
{
    if (nbInputs < 2)
        return -1;
    outputTypes[0] = inputTypes[1]; // pooled features keep the feature maps' type
    return 0;
}

int32_t MultilevelRoIAlignPlugin::getOutputShapes(DimsExprs const* inputs, int32_t nbInputs, DimsExprs const*, int32_t,
    DimsExprs* outputs, int32_t, IExprBuilder& exprBuilder) noexcept
{
    if (!inputsFit(inputs, nbInputs))
        return -1;
    outputs[0].nbDims = 5;
    outputs[0].d[0] = inputs[0].d[0];
    outputs[0].d[1] = inputs[0].d[1];
    outputs[0].d[2] = inputs[1].d[1];
    outputs[0].d[3] = exprBuilder.constant(mAttributes.outputHeight);
    outputs[0].d[4] = exprBuilder.constant(mAttributes.outputWidth);
    return 0;
}

bool MultilevelRoIAlignPlugin::supportsFormatCombination(
    int32_t pos, DynamicPluginTensorDesc const* inOut, int32_t, int32_t) noexcept
{
    PluginTensorDesc const& d = inOut[pos].desc;
    if (d.format != TensorFormat::kLINEAR)
        return false;
    if (pos <= 1) // rois and the first map: each FP32 or FP16, computed in FP32
        return d.type == DataType::kFLOAT || d.type == DataType::kHALF;
    return d.type == inOut[1].desc.type; // the other maps and the output follow the first map
}

int32_t MultilevelRoIAlignPlugin::configurePlugin(
    DynamicPluginTensorDesc const* in, int32_t nbInputs, DynamicPluginTensorDesc const*, int32_t) noexcept
{
    return inputsFit(in, nbInputs) ? 0 : -1;
}

int32_t MultilevelRoIAlignPlugin::onShapeChange(
    PluginTensorDesc const* in, int32_t nbInputs, PluginTensorDesc const*, int32_t) noexcept
{
    return inputsFit(in, nbInputs) ? 0 : -1;
}

int32_t MultilevelRoIAlignPlugin::enqueue(PluginTensorDesc const* inputDesc, PluginTensorDesc const*,
    void const* const* inputs, void* const* outputs, void*, cudaStream_t stream) noexcept
{
    MultilevelRoIAlignShape shape{};
    shape.batch = static_cast<int>(inputDesc[0].dims.d[0]);
    shape.numRois = static_cast<int>(inputDesc[0].dims.d[1]);
    shape.channels = static_cast<int>(inputDesc[1].dims.d[1]);
    shape.levels = static_cast<int>(mAttributes.featureStrides.size());
    for (int l = 0; l < shape.levels; ++l)
    {
        shape.height[l] = static_cast<int>(inputDesc[1 + l].dims.d[2]);
        shape.width[l] = static_cast<int>(inputDesc[1 + l].dims.d[3]);
        shape.stride[l] = mAttributes.featureStrides[l];
    }
    LevelMapping const levelMapping{static_cast<float>(mAttributes.canonicalScale), mAttributes.canonicalLevel};
    cudaError_t const status = launchMultilevelRoIAlign(inputs + 1, inputDesc[1].type == DataType::kHALF, inputs[0],
        inputDesc[0].type == DataType::kHALF, shape, levelMapping, roiAlignParams(mAttributes), outputs[0], stream);
    return status == cudaSuccess ? 0 : -1;
}

} // namespace segtrt
