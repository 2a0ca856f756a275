// Entry points TensorRT looks up when it loads libsegtrt_plugins.so dynamically
// (IPluginRegistry::loadLibrary, trt.get_plugin_registry().load_library(), trtexec --dynamicPlugins).
#include "matrixNMS/matrixNmsPlugin.h"
#include "multilevelRoIAlign/multilevelRoIAlignPlugin.h"

extern "C" TENSORRTAPI nvinfer1::IPluginCreatorInterface* const* getCreators(int32_t& nbCreators)
{
    static segtrt::MultilevelRoIAlignCreator sRoiAlign;
    static segtrt::MatrixNmsCreator sMatrixNms;
    static nvinfer1::IPluginCreatorInterface* const sCreators[] = {&sRoiAlign, &sMatrixNms};
    nbCreators = 2;
    return sCreators;
}

extern "C" TENSORRTAPI void setLoggerFinder(nvinfer1::ILoggerFinder* finder)
{
    segtrt::setPluginLoggerFinder(finder);
}
