"""The TensorRT backend: an engine built by `segtrt build` behind the runtime's Backend interface.

    backend = TensorRTBackend("model.engine")     # reads and verifies model.engine.json first
    outputs = backend(images)                     # {"num_detections", "boxes", "scores", "labels", "masks"}

The sidecar is checked before the engine is touched: an engine from another TensorRT version, GPU
or plugin library is refused with the reason and the rebuild command instead of crashing. Buffers
are allocated once for the profile's largest batch: pinned host memory and device memory through
cuda-python (`cuda.bindings.runtime`), one stream, tensors bound by name (TensorRT 10's
set_tensor_address / execute_async_v3, the only execution API 11.x keeps).
"""

from __future__ import annotations

import ctypes
from pathlib import Path

import numpy as np

from segtrt import SegtrtError
from segtrt.engine.machine import (cuda_check, cuda_runtime, current_machine, load_plugin_library, require_cudart,
                                   require_tensorrt)
from segtrt.engine.sidecar import read_sidecar, verify
from segtrt.ops.registry import default_plugin_library
from segtrt.runtime.backends import Backend
from segtrt.runtime.model_info import INPUT_NAME, OUTPUT_NAMES


def _shape(dims) -> tuple[int, ...]:
    """A TensorRT Dims as a tuple (Dims is indexable; the stubs give it no __iter__)."""
    return tuple(int(dims[i]) for i in range(len(dims)))


class _Buffer:
    """One tensor's pinned host array and device allocation, sized for the largest shape it will hold."""

    def __init__(self, dtype: np.dtype, shape: tuple[int, ...]):
        cudart = cuda_runtime()
        self.dtype = np.dtype(dtype)
        self.nbytes = int(np.prod(shape)) * self.dtype.itemsize
        self.host_pointer = cuda_check(cudart.cudaMallocHost(self.nbytes))
        self.device = cuda_check(cudart.cudaMalloc(self.nbytes))
        pointer = ctypes.cast(int(self.host_pointer), ctypes.POINTER(ctypes.c_byte))
        self.host = np.ctypeslib.as_array(pointer, shape=(self.nbytes,)).view(self.dtype)

    def free(self) -> None:
        cudart = cuda_runtime()
        cuda_check(cudart.cudaFree(self.device))
        cuda_check(cudart.cudaFreeHost(self.host_pointer))


class TensorRTBackend(Backend):
    """A segtrt engine (with its ENGINE.json sidecar) on this machine's GPU."""

    def __init__(self, path, plugins: Path | None = None):
        self.path = Path(path)
        self.sidecar = read_sidecar(self.path)
        self.info = self.sidecar.info
        self.name = f"tensorrt-{self.sidecar.precision}"
        require_tensorrt()
        require_cudart()
        import tensorrt as trt
        cudart = cuda_runtime()
        library = (plugins or default_plugin_library()) if self.sidecar.plugin_library else None
        verify(self.path, self.sidecar, current_machine(), library)
        if library is not None:
            load_plugin_library(library)
        self.runtime = trt.Runtime(trt.Logger(trt.Logger.WARNING))
        self.engine = self.runtime.deserialize_cuda_engine(self.path.read_bytes())
        if self.engine is None:
            raise SegtrtError(f"TensorRT could not load engine {self.path} (its log above says why); rebuild it: "
                              f"{self.sidecar.rebuild_command}")
        self.context = self.engine.create_execution_context()
        (profile,) = self.sidecar.profiles
        self.profile = profile
        self.batch_size = None if profile.dynamic else profile.max[0]
        self.stream = cuda_check(cudart.cudaStreamCreate())
        self.context.set_input_shape(INPUT_NAME, list(profile.max))
        self.buffers: dict[str, _Buffer] = {}
        for index in range(self.engine.num_io_tensors):
            name = self.engine.get_tensor_name(index)
            dtype = np.dtype(trt.nptype(self.engine.get_tensor_dtype(name)))
            self.buffers[name] = _Buffer(dtype, _shape(self.context.get_tensor_shape(name)))
            self.context.set_tensor_address(name, int(self.buffers[name].device))
        missing = sorted({INPUT_NAME, *OUTPUT_NAMES} - set(self.buffers))
        if missing:
            raise SegtrtError(f"engine {self.path} lacks the contract tensors {', '.join(missing)}; rebuild it from a "
                              "`segtrt export` ONNX file")

    def __call__(self, images: np.ndarray) -> dict[str, np.ndarray]:
        cudart = cuda_runtime()
        images = np.ascontiguousarray(images, dtype=np.float32)
        low, high = self.profile.min, self.profile.max
        if images.ndim != 4 or images.shape[1:] != high[1:] or not low[0] <= images.shape[0] <= high[0]:
            sizes = ", ".join(map(str, high[1:]))
            raise SegtrtError(f"engine {self.path} takes images [{low[0]}..{high[0]}, {sizes}], "
                              f"not {list(images.shape)}")
        if not self.context.set_input_shape(INPUT_NAME, list(images.shape)):
            raise SegtrtError(f"TensorRT refused the input shape {list(images.shape)} for {self.path}")
        to_device, to_host = cudart.cudaMemcpyKind.cudaMemcpyHostToDevice, cudart.cudaMemcpyKind.cudaMemcpyDeviceToHost
        source = self.buffers[INPUT_NAME]
        source.host[: images.size] = images.reshape(-1)
        cuda_check(cudart.cudaMemcpyAsync(source.device, source.host_pointer, images.nbytes, to_device, self.stream))
        if not self.context.execute_async_v3(int(self.stream)):
            raise SegtrtError(f"TensorRT failed to run {self.path} (its log above says why)")
        shapes = {name: _shape(self.context.get_tensor_shape(name)) for name in OUTPUT_NAMES}
        for name, shape in shapes.items():
            buffer = self.buffers[name]
            count = int(np.prod(shape)) * buffer.dtype.itemsize
            cuda_check(cudart.cudaMemcpyAsync(buffer.host_pointer, buffer.device, count, to_host, self.stream))
        cuda_check(cudart.cudaStreamSynchronize(self.stream))
        return {name: self.buffers[name].host[: int(np.prod(shape))].reshape(shape).copy()
                for name, shape in shapes.items()}

    def close(self) -> None:
        """Free the GPU and pinned memory and the stream (also done when the process ends)."""
        cudart = cuda_runtime()
        for buffer in self.buffers.values():
            buffer.free()
        self.buffers.clear()
        cuda_check(cudart.cudaStreamDestroy(self.stream))
