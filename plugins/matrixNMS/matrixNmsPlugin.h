// TensorRT plugin MatrixNMS (version 1): SOLOv2's Matrix NMS with fixed-size outputs. See README.md.
#pragma once

#include "../common/pluginBase.h"
#include "matrixNmsAttributes.h"

#include <utility>

namespace segtrt
{

class MatrixNmsPlugin : public PluginBase<MatrixNmsPlugin>
{
public:
    static constexpr char const* kName = "MatrixNMS";
    using Attributes = MatrixNmsAttributes;

    static std::vector<std::pair<char const*, nvinfer1::PluginFieldType>> fieldNames();
    // The one place the node's attributes are read; throws std::invalid_argument naming a malformed one.
    static Attributes parse(nvinfer1::PluginFieldCollection const* fc);
    static std::string validate(Attributes const& a) { return validateMatrixNms(a, true); }

    explicit MatrixNmsPlugin(Attributes const& attributes);
    std::string checkInputs(TensorShape const* inputs, int32_t nbInputs) const
    {
        return checkMatrixNmsInputs(inputs, nbInputs);
    }
    std::vector<nvinfer1::PluginField> attributeFields() const;

    int32_t getNbOutputs() const noexcept override { return 4; }
    int32_t getOutputDataTypes(nvinfer1::DataType* outputTypes, int32_t nbOutputs, nvinfer1::DataType const* inputTypes,
        int32_t nbInputs) const noexcept override;
    int32_t getOutputShapes(nvinfer1::DimsExprs const* inputs, int32_t nbInputs, nvinfer1::DimsExprs const* shapeInputs,
        int32_t nbShapeInputs, nvinfer1::DimsExprs* outputs, int32_t nbOutputs,
        nvinfer1::IExprBuilder& exprBuilder) noexcept override;
    bool supportsFormatCombination(int32_t pos, nvinfer1::DynamicPluginTensorDesc const* inOut, int32_t nbInputs,
        int32_t nbOutputs) noexcept override;
    int32_t configurePlugin(nvinfer1::DynamicPluginTensorDesc const* in, int32_t nbInputs,
        nvinfer1::DynamicPluginTensorDesc const* out, int32_t nbOutputs) noexcept override;
    size_t getWorkspaceSize(nvinfer1::DynamicPluginTensorDesc const* inputs, int32_t nbInputs,
        nvinfer1::DynamicPluginTensorDesc const* outputs, int32_t nbOutputs) const noexcept override;

    int32_t onShapeChange(nvinfer1::PluginTensorDesc const* in, int32_t nbInputs, nvinfer1::PluginTensorDesc const* out,
        int32_t nbOutputs) noexcept override;
    int32_t enqueue(nvinfer1::PluginTensorDesc const* inputDesc, nvinfer1::PluginTensorDesc const* outputDesc,
        void const* const* inputs, void* const* outputs, void* workspace, cudaStream_t stream) noexcept override;

private:
    Attributes mAttributes;
};

using MatrixNmsCreator = PluginCreatorBase<MatrixNmsPlugin>;

} // namespace segtrt
