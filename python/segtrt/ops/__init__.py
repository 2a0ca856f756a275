"""CPU twins of segtrt's TensorRT plugins, NumPy in and NumPy out.

They run the same per-element C++ functions as the CUDA kernels (plugins/), compiled for the host into
libsegtrt_cpu_ops.so by `make native`. Used by the tests, and to serve the plugin nodes when the exported
ONNX graph runs in ONNX Runtime on CPU.
"""

from segtrt.ops.matrix_nms import matrix_nms
from segtrt.ops.roi_align import multilevel_roi_align, roi_align

__all__ = ["roi_align", "multilevel_roi_align", "matrix_nms"]
