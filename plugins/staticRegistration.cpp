// Registers both creators with TensorRT's global registry when a program that links libsegtrt_plugins_static.a
// (whole-archive) starts. Kept out of libsegtrt_plugins.so so that loading it dynamically registers each once.
#include "matrixNMS/matrixNmsPlugin.h"
#include "multilevelRoIAlign/multilevelRoIAlignPlugin.h"

#include "NvInfer.h"

namespace segtrt
{
REGISTER_TENSORRT_PLUGIN(MultilevelRoIAlignCreator);
REGISTER_TENSORRT_PLUGIN(MatrixNmsCreator);
} // namespace segtrt
