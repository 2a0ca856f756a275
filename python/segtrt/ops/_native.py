"""Loads libsegtrt_cpu_ops.so (built by `make native`) and calls its C functions, turning errors into SegtrtError."""

import ctypes
import functools
import os
from pathlib import Path

import numpy as np

from segtrt import SegtrtError

LIBRARY_NAME = "libsegtrt_cpu_ops.so"
_ERROR_SIZE = 512

_f32 = ctypes.POINTER(ctypes.c_float)
_i32 = ctypes.POINTER(ctypes.c_int)
_int, _float, _str = ctypes.c_int, ctypes.c_float, ctypes.c_char_p
_SIGNATURES = {
    "segtrt_validate_multilevel_roi_align": [_int, _int, _i32, _int, _int, _int, _str, _int, _int, _int],
    "segtrt_validate_matrix_nms": [_str, _float, _float, _int, _int, _float, _int],
    "segtrt_roi_align": [_f32, _int, _int, _int, _f32, _i32, _int, _int, _int, _float, _int, _int, _str, _f32],
    "segtrt_multilevel_roi_align": [
        ctypes.POINTER(_f32), _i32, _i32, _int, _int, _int, _f32, _int, _i32, _int,
        _int, _int, _int, _int, _str, _int, _int, _f32,
    ],
    "segtrt_matrix_nms": [
        _f32, _int, _int, _i32, _f32, _str, _float, _float, _int, _int, _float, _i32, _i32, _f32, _i32,
    ],
}


def library_path() -> Path:
    """Where the library is looked for: $SEGTRT_OPS_LIB, else segtrt/ops/_lib/ (where CMake puts it)."""
    override = os.environ.get("SEGTRT_OPS_LIB")
    return Path(override) if override else Path(__file__).parent / "_lib" / LIBRARY_NAME


@functools.cache
def _library() -> ctypes.CDLL:
    path = library_path()
    if not path.is_file():
        raise SegtrtError(
            f"The CPU plugin library {path} is missing: run `make native` (or `cmake -S . -B build && "
            "cmake --build build`) in the repository root, or point SEGTRT_OPS_LIB at libsegtrt_cpu_ops.so."
        )
    lib = ctypes.CDLL(str(path))
    for name, argtypes in _SIGNATURES.items():
        function = getattr(lib, name)
        function.argtypes = [*argtypes, ctypes.c_char_p, ctypes.c_int]
        function.restype = ctypes.c_int
    return lib


def call(name: str, *args) -> None:
    """Calls C function `name`; a non-zero status becomes SegtrtError with the library's sentence."""
    error = ctypes.create_string_buffer(_ERROR_SIZE)
    if getattr(_library(), name)(*args, error, _ERROR_SIZE) != 0:
        raise SegtrtError(error.value.decode() + ".")


def f32(array: np.ndarray):
    """Pointer to a C-contiguous float32 array (the caller keeps the array alive)."""
    return array.ctypes.data_as(_f32)


def i32(array: np.ndarray):
    """Pointer to a C-contiguous int32 array (the caller keeps the array alive)."""
    return array.ctypes.data_as(_i32)


def float32(array, name: str, ndim: int) -> np.ndarray:
    """`array` as C-contiguous float32 with `ndim` dimensions, or SegtrtError naming `name`."""
    out = np.ascontiguousarray(array, dtype=np.float32)
    if out.ndim != ndim:
        raise SegtrtError(f"{name} must have {ndim} dimensions, got shape {out.shape}.")
    return out


def validate_multilevel_roi_align_attributes(
    output_size, strides, sampling_ratio, aligned, mode, canonical_scale, canonical_level, num_feature_maps
) -> None:
    """The MultilevelRoIAlign plugin's own attribute checks (the same C++ code its createPlugin runs)."""
    strides_arr = np.ascontiguousarray(strides, dtype=np.int32)
    call(
        "segtrt_validate_multilevel_roi_align", int(output_size[0]), int(output_size[1]), i32(strides_arr),
        len(strides_arr), int(sampling_ratio), int(aligned), str(mode).encode(), int(canonical_scale),
        int(canonical_level), int(num_feature_maps),
    )


def validate_matrix_nms_attributes(kernel, sigma, mask_threshold, nms_pre, max_num, filter_thr) -> None:
    """The MatrixNMS plugin's own attribute checks (the same C++ code its createPlugin runs)."""
    call(
        "segtrt_validate_matrix_nms", str(kernel).encode(), float(sigma), float(mask_threshold), int(nms_pre),
        int(max_num), float(filter_thr), 1,
    )
