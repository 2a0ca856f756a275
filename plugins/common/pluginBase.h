// What every segtrt plugin shares: the IPluginV3 capability plumbing, its identity and its serialized fields.
// A plugin derives as `class P : public PluginBase<P>` and provides the build/runtime methods.
#pragma once

#include "pluginFields.h"

#include <string>
#include <vector>

namespace segtrt
{

// Plugins are registered in the empty namespace, so the ONNX parser finds a node of op_type P::kName directly.
constexpr char const* kPluginNamespace = "";
constexpr char const* kPluginVersion = "1";

template <typename Derived>
class PluginBase : public nvinfer1::IPluginV3,
                   public nvinfer1::IPluginV3OneCore,
                   public nvinfer1::IPluginV3OneBuild,
                   public nvinfer1::IPluginV3OneRuntime
{
public:
    nvinfer1::IPluginCapability* getCapabilityInterface(nvinfer1::PluginCapabilityType type) noexcept override
    {
        switch (type)
        {
        case nvinfer1::PluginCapabilityType::kBUILD: return static_cast<nvinfer1::IPluginV3OneBuild*>(this);
        case nvinfer1::PluginCapabilityType::kRUNTIME: return static_cast<nvinfer1::IPluginV3OneRuntime*>(this);
        case nvinfer1::PluginCapabilityType::kCORE: return static_cast<nvinfer1::IPluginV3OneCore*>(this);
        }
        return nullptr;
    }

    nvinfer1::IPluginV3* clone() noexcept override
    {
        try
        {
            return new Derived(static_cast<Derived const&>(*this));
        }
        catch (...)
        {
            return nullptr;
        }
    }

    char const* getPluginName() const noexcept override { return Derived::kName; }
    char const* getPluginVersion() const noexcept override { return kPluginVersion; }
    char const* getPluginNamespace() const noexcept override { return kPluginNamespace; }

    nvinfer1::IPluginV3* attachToContext(nvinfer1::IPluginResourceContext*) noexcept override { return clone(); }

    // The serialized form is the node's attributes, so deserialization goes through the creator's one parser.
    nvinfer1::PluginFieldCollection const* getFieldsToSerialize() noexcept override
    {
        mFields = static_cast<Derived const&>(*this).attributeFields();
        mCollection.nbFields = static_cast<int32_t>(mFields.size());
        mCollection.fields = mFields.data();
        return &mCollection;
    }

protected:
    // Checks the inputs with Derived::checkInputs (shape rules, header-only), logging the problem naming the
    // input; false when they cannot fit. Descs: DimsExprs at shape inference, tensor descriptors later.
    template <typename Descs>
    bool inputsFit(Descs const* inputs, int32_t nbInputs) const noexcept
    {
        try
        {
            std::vector<TensorShape> shapes;
            for (int32_t i = 0; i < nbInputs; ++i)
                shapes.push_back(tensorShape(inputs[i]));
            std::string const problem = static_cast<Derived const&>(*this).checkInputs(shapes.data(), nbInputs);
            if (!problem.empty())
                logPluginError(Derived::kName, problem);
            return problem.empty();
        }
        catch (std::exception const& e)
        {
            logPluginError(Derived::kName, e.what());
        }
        return false;
    }

private:
    std::vector<nvinfer1::PluginField> mFields;
    nvinfer1::PluginFieldCollection mCollection{};
};

// The creator: lists the attribute names and turns a field collection into a plugin through Derived::parse
// (which throws std::invalid_argument naming the attribute) and validation.
template <typename Plugin>
class PluginCreatorBase : public nvinfer1::IPluginCreatorV3One
{
public:
    PluginCreatorBase()
    {
        for (auto const& f : Plugin::fieldNames())
        {
            mFieldNames.emplace_back(f.first, nullptr, f.second, 0);
        }
        mCollection.nbFields = static_cast<int32_t>(mFieldNames.size());
        mCollection.fields = mFieldNames.data();
    }

    char const* getPluginName() const noexcept override { return Plugin::kName; }
    char const* getPluginVersion() const noexcept override { return kPluginVersion; }
    char const* getPluginNamespace() const noexcept override { return kPluginNamespace; }
    nvinfer1::PluginFieldCollection const* getFieldNames() noexcept override { return &mCollection; }

    nvinfer1::IPluginV3* createPlugin(
        char const*, nvinfer1::PluginFieldCollection const* fc, nvinfer1::TensorRTPhase) noexcept override
    {
        try
        {
            auto const attributes = Plugin::parse(fc);
            std::string const problem = Plugin::validate(attributes);
            if (!problem.empty())
            {
                logPluginError(Plugin::kName, problem);
                return nullptr;
            }
            return new Plugin(attributes);
        }
        catch (std::exception const& e)
        {
            logPluginError(Plugin::kName, e.what());
        }
        return nullptr;
    }

private:
    std::vector<nvinfer1::PluginField> mFieldNames;
    nvinfer1::PluginFieldCollection mCollection{};
};

} // namespace segtrt
