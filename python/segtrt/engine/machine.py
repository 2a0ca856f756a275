"""TensorRT and CUDA on this machine: one clear sentence when they are missing, and the machine facts
(TensorRT version, GPU name, compute capability) that an engine's sidecar records and is checked against.

Callers run `require_tensorrt()` and then import tensorrt themselves inside the function
(`import tensorrt as trt`), so that pyright types every call against tensorrt-stubs; CUDA calls go
through `cuda_runtime()`.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

from segtrt import SegtrtError
from segtrt.engine.sidecar import Machine

CPU_PATH = ("check the ONNX file with `segtrt build --onnx FILE --check` and run it with ONNX Runtime "
            "(`segtrt predict --model FILE`)")


def require_tensorrt() -> None:
    """SegtrtError naming what is missing and the CPU path, unless TensorRT's Python package works here."""
    try:
        import tensorrt as trt
    except ImportError as error:
        raise SegtrtError(f"this needs TensorRT's Python package, which is missing here ({error}); install TensorRT "
                          f"10.x or 11.x (JetPack ships it) on a machine with an NVIDIA GPU, or {CPU_PATH}") from None
    if not hasattr(trt, "Builder"):  # type stubs (tensorrt-stubs) make `import tensorrt` succeed with nothing in it
        raise SegtrtError(f"the `tensorrt` package found here ({list(getattr(trt, '__path__', []))}) has no library, "
                          f"only type stubs; install TensorRT itself on a GPU machine, or {CPU_PATH}")


def cuda_runtime() -> Any:
    """cuda-python's runtime bindings, `cuda.bindings.runtime` (compiled, without type stubs: typed as Any here)."""
    from cuda.bindings import runtime  # pyright: ignore[reportAttributeAccessIssue]

    return runtime


def require_cudart() -> None:
    """SegtrtError unless cuda-python's runtime bindings import here."""
    try:
        cuda_runtime()
    except ImportError as error:
        raise SegtrtError(f"this needs cuda-python's runtime bindings ({error}); pip install cuda-bindings on a "
                          f"machine with an NVIDIA driver, or {CPU_PATH}") from None


def cuda_check(result) -> Any:
    """Unpack a cuda-python call's (error, *values) tuple; SegtrtError naming the CUDA error."""
    cudart = cuda_runtime()
    error, *values = result if isinstance(result, tuple) else (result,)
    if error != cudart.cudaError_t.cudaSuccess:
        _, name = cudart.cudaGetErrorName(error)
        raise SegtrtError(f"CUDA call failed with {name.decode() if isinstance(name, bytes) else name}; this needs "
                          f"an NVIDIA GPU and driver, or {CPU_PATH}")
    if not values:
        return None
    return values[0] if len(values) == 1 else tuple(values)


def current_machine() -> Machine:
    """This machine's TensorRT version and current GPU."""
    require_tensorrt()
    require_cudart()
    import tensorrt as trt

    cudart = cuda_runtime()
    device = cuda_check(cudart.cudaGetDevice())
    properties = cuda_check(cudart.cudaGetDeviceProperties(device))
    name = properties.name
    name = (name.decode() if isinstance(name, bytes) else str(name)).split("\x00")[0]
    return Machine(str(trt.__version__), name, f"{properties.major}.{properties.minor}")


def load_plugin_library(path: Path) -> None:
    """Register segtrt's plugin creators with TensorRT's plugin registry (SegtrtError if the file is not there)."""
    import tensorrt as trt

    if not path.is_file():
        raise SegtrtError(f"segtrt's plugin library is not at {path}: build it with `make native` on this machine "
                          "(TENSORRT_ROOT pointing at TensorRT) or pass --plugins")
    trt.get_plugin_registry().load_library(str(path))
