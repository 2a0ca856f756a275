"""The native build (`make native`): CUDA kernels compiled for every configured GPU architecture nvcc supports."""

import os
import re
import subprocess
from pathlib import Path

import pytest

# SEGTRT_BUILD_DIR: check another build tree (e.g. one configured with -DTENSORRT_ROOT).
BUILD = Path(os.environ.get("SEGTRT_BUILD_DIR", Path(__file__).resolve().parents[1] / "build"))


def cmake_cache():
    cache = BUILD / "CMakeCache.txt"
    if not cache.is_file():
        pytest.skip("no build/ directory: run `make native` first")
    return dict(re.findall(r"^([A-Za-z_]+):[A-Z]+=(.*)$", cache.read_text(), re.M))


def test_kernels_hold_device_code_for_every_configured_architecture():
    cache = cmake_cache()
    if not cache.get("CMAKE_CUDA_COMPILER"):
        pytest.skip("CMake found no nvcc on this machine")
    wanted = cache["SEGTRT_CUDA_ARCHITECTURES"].split(";")
    nvcc_archs = subprocess.run([cache["CMAKE_CUDA_COMPILER"], "--list-gpu-arch"], capture_output=True, text=True).stdout
    # Toolkits drop old targets (CUDA 13 has no sm_72); CMake says so in its status line and compiles the rest
    # (tests/test_kernels_nvrtc.py compiles all of them with NVRTC 12).
    supported = [arch for arch in wanted if f"compute_{arch}" in nvcc_archs]
    archive = (BUILD / "libsegtrt_kernels.a").read_bytes()
    compiled = [arch for arch in wanted if f"sm_{arch}".encode() in archive]
    assert compiled == supported
    assert len(compiled) >= 5


def test_cpu_twin_library_is_where_segtrt_ops_looks():
    cmake_cache()
    from segtrt.ops import _native

    assert _native.library_path().is_file()


def test_plugin_library_exports_only_the_entry_points():
    """TensorRT looks up getCreators and setLoggerFinder; every other exported C++ symbol could bind to another
    library's (plugins/exports.map)."""
    cmake_cache()
    library = BUILD / "libsegtrt_plugins.so"
    if not library.is_file():
        pytest.skip("no libsegtrt_plugins.so in this build (configure with -DTENSORRT_ROOT)")
    symbols = subprocess.run(["nm", "-D", "--defined-only", str(library)], capture_output=True, text=True, check=True)
    names = {line.split()[-1] for line in symbols.stdout.splitlines() if line.strip()}
    assert names == {"getCreators", "setLoggerFinder"}
