"""The CUDA kernels compile for every target GPU architecture, sm_72 (Jetson Xavier) included.

The installed nvcc (CUDA 13) has dropped sm_72, so `make native` compiles the kernels for the other architectures
only. NVRTC 12.x, CUDA's runtime compiler as a library (the pinned `nvidia-cuda-nvrtc-cu12` wheel), still targets
sm_72: this test compiles the device code of each kernel file with it to a CUBIN for every architecture in
CMakeLists.txt's SEGTRT_CUDA_ARCHITECTURES, without a GPU. The host launchers are behind `#ifndef __CUDACC_RTC__`
(NVRTC takes device code only); the kernels and the math they call are the files nvcc builds.
"""

import ctypes
import itertools
import re
from importlib import metadata
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
KERNEL_FILES = ["plugins/multilevelRoIAlign/multilevelRoIAlignKernel.cu", "plugins/matrixNMS/matrixNmsKernel.cu"]
# Template kernels are instantiated by the host launchers with the plugins' two storage types.
STORAGE_TYPES = ["float", "__half"]
# NVRTC has no C or C++ library headers. From them the device code takes only INFINITY (<math.h>; glibc spells it
# __builtin_inff(), which NVRTC lacks) and size_t (<cstddef>; built into NVRTC); the CUDA math functions are
# built into NVRTC as into nvcc.
STAND_IN_HEADERS = {"math.h": "#define INFINITY (__builtin_bit_cast(float, 0x7f800000u))\n", "cstddef": ""}


def architectures():
    """The CMake cache default, the one list of target architectures."""
    text = (ROOT / "CMakeLists.txt").read_text()
    return re.search(r'set\(SEGTRT_CUDA_ARCHITECTURES "([0-9;]+)"', text).group(1).split(";")


def wheel_file(distribution, path):
    try:
        found = Path(metadata.distribution(distribution).locate_file(path))
    except metadata.PackageNotFoundError:
        return None
    return found if found.exists() else None


def load_nvrtc():
    library = wheel_file("nvidia-cuda-nvrtc-cu12", "nvidia/cuda_nvrtc/lib/libnvrtc.so.12")
    headers = wheel_file("nvidia-cuda-runtime-cu12", "nvidia/cuda_runtime/include")  # cuda_fp16.h
    if library is None or headers is None:
        pytest.skip("NVRTC 12 not installed (nvidia-cuda-nvrtc-cu12 and nvidia-cuda-runtime-cu12 in requirements.txt)")
    nvrtc = ctypes.CDLL(str(library))
    p, s, i = ctypes.c_void_p, ctypes.c_char_p, ctypes.c_int
    for name, argtypes in {
        "nvrtcCreateProgram": [ctypes.POINTER(p), s, s, i, ctypes.POINTER(s), ctypes.POINTER(s)],
        "nvrtcAddNameExpression": [p, s],
        "nvrtcCompileProgram": [p, i, ctypes.POINTER(s)],
        "nvrtcGetProgramLogSize": [p, ctypes.POINTER(ctypes.c_size_t)],
        "nvrtcGetProgramLog": [p, s],
        "nvrtcGetCUBINSize": [p, ctypes.POINTER(ctypes.c_size_t)],
        "nvrtcGetCUBIN": [p, s],
        "nvrtcGetLoweredName": [p, s, ctypes.POINTER(s)],
        "nvrtcDestroyProgram": [ctypes.POINTER(p)],
        "nvrtcGetErrorString": [i],
    }.items():
        getattr(nvrtc, name).argtypes = argtypes
        getattr(nvrtc, name).restype = s if name == "nvrtcGetErrorString" else i
    return nvrtc, headers


def kernels(source):
    """Every __global__ function of a file, as the names NVRTC should compile (templates once per combination of
    storage types: each input's type is free)."""
    names = []
    for parameters, name in re.findall(r"(?:template <([^>]*)>\s*)?__global__ void (\w+)", source):
        arity = parameters.count("typename")
        names += [f"segtrt::{name}<{', '.join(c)}>" if arity else f"segtrt::{name}"
                  for c in itertools.product(STORAGE_TYPES, repeat=arity)]
    return names


def strings(items):
    return (ctypes.c_char_p * len(items))(*items)


def compile_device_code(path, arch):
    """(status, log, cubin, {kernel: mangled name}) of NVRTC compiling `path` for sm_`arch`."""
    nvrtc, runtime_headers = load_nvrtc()
    source = path.read_text()
    program = ctypes.c_void_p()
    names = [n.encode() for n in STAND_IN_HEADERS]
    bodies = [b.encode() for b in STAND_IN_HEADERS.values()]
    assert nvrtc.nvrtcCreateProgram(ctypes.byref(program), source.encode(), str(path).encode(), len(names),
                                    strings(bodies), strings(names)) == 0
    try:
        expressions = kernels(source)
        for expression in expressions:  # also instantiates the template kernels, as the launchers do under nvcc
            assert nvrtc.nvrtcAddNameExpression(program, expression.encode()) == 0
        options = [f"--gpu-architecture=sm_{arch}", "-std=c++17", f"-I{runtime_headers}"]
        status = nvrtc.nvrtcCompileProgram(program, len(options), strings([o.encode() for o in options]))
        size = ctypes.c_size_t()
        nvrtc.nvrtcGetProgramLogSize(program, ctypes.byref(size))
        log = ctypes.create_string_buffer(size.value)
        nvrtc.nvrtcGetProgramLog(program, log)
        cubin = b""
        lowered = {}
        if status == 0:
            nvrtc.nvrtcGetCUBINSize(program, ctypes.byref(size))
            buffer = ctypes.create_string_buffer(size.value)
            nvrtc.nvrtcGetCUBIN(program, buffer)
            cubin = buffer.raw
            for expression in expressions:
                name = ctypes.c_char_p()
                assert nvrtc.nvrtcGetLoweredName(program, expression.encode(), ctypes.byref(name)) == 0
                lowered[expression] = name.value
        return nvrtc.nvrtcGetErrorString(status).decode(), log.value.decode(errors="replace"), cubin, lowered
    finally:
        nvrtc.nvrtcDestroyProgram(ctypes.byref(program))


def test_architectures_come_from_cmake():
    assert {"72", "87"} <= set(architectures())


@pytest.mark.parametrize("arch", architectures(), ids=lambda a: f"sm_{a}")
@pytest.mark.parametrize("kernel_file", KERNEL_FILES, ids=lambda f: Path(f).name)
def test_kernels_compile_to_cubin(kernel_file, arch):
    status, log, cubin, lowered = compile_device_code(ROOT / kernel_file, arch)
    assert status == "NVRTC_SUCCESS", log
    assert "error" not in log.lower(), log
    assert cubin[:4] == b"\x7fELF"
    # Every kernel, each template once per storage type, is in the CUBIN as machine code for this architecture.
    assert lowered, "no __global__ function found"
    missing = [kernel for kernel, symbol in lowered.items() if symbol not in cubin]
    assert not missing, f"not in the sm_{arch} CUBIN: {missing}"
