"""The real CUDA kernel files run on the CPU and match the CPU twins bit for bit, under ASan and UBSan.

tests/kernel_emulation/ compiles plugins/*/*.cu as host C++ over a small emulation of CUDA's execution model
(emulation.h: each block's threads are fibers, so __syncthreads and __shared__ behave; the runtime's last-error
semantics; CUB's segmented sort by std::stable_sort) and drive_kernels.cpp runs the cases of issue 15 through the
kernels' own launchers and through the twin's C functions. No GPU and no TensorRT needed; with TensorRT headers
(TENSORRT_ROOT, or the paths CMake searches) the plugin classes are driven as well.
"""

import os
import shutil
import subprocess
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
EMULATION = ROOT / "tests" / "kernel_emulation"
FLAGS = ["-std=c++17", "-O1", "-g", "-fsanitize=address,undefined", "-fno-sanitize-recover=undefined",
         "-fno-omit-frame-pointer", f"-I{EMULATION}"]
KERNELS = ["plugins/matrixNMS/matrixNmsKernel.cu", "plugins/multilevelRoIAlign/multilevelRoIAlignKernel.cu"]
HOST = ["plugins/cpu/segtrtCpuOps.cpp", "tests/kernel_emulation/drive_kernels.cpp"]
PLUGINS = ["plugins/matrixNMS/matrixNmsPlugin.cpp", "plugins/multilevelRoIAlign/multilevelRoIAlignPlugin.cpp",
           "plugins/common/pluginLogger.cpp"]
SANITIZERS = {"ASAN_OPTIONS": "detect_leaks=1", "UBSAN_OPTIONS": "print_stacktrace=1"}


def tensorrt_include():
    """NvInfer.h's folder, searched as CMakeLists.txt does, or None."""
    roots = [Path(os.environ["TENSORRT_ROOT"]) / "include"] if os.environ.get("TENSORRT_ROOT") else []
    for folder in [*roots, Path("/usr/include/aarch64-linux-gnu"), Path("/usr/include/x86_64-linux-gnu"),
                   Path("/usr/include"), Path("/usr/local/include")]:
        if (folder / "NvInfer.h").is_file():
            return folder
    return None


def compile_object(source, output, extra):
    is_kernel = source.endswith(".cu")
    command = ["g++", *FLAGS, *extra, "-c", str(ROOT / source), "-o", str(output)]
    if is_kernel:  # the kernels see the emulation as nvcc's built-ins
        command[1:1] = ["-x", "c++", "-include", str(EMULATION / "emulation.h"), "-D__CUDACC__"]
    return subprocess.run(command, capture_output=True, text=True)


@pytest.fixture(scope="session")
def driver(tmp_path_factory):
    if shutil.which("g++") is None:
        pytest.skip("no g++ on this machine")
    folder = tmp_path_factory.mktemp("kernel_emulation")
    include = tensorrt_include()
    sources = KERNELS + HOST + (PLUGINS if include else [])
    extra = ["-DSEGTRT_WITH_TENSORRT", "-isystem", str(include)] if include else []
    objects = [folder / (Path(s).name + ".o") for s in sources]
    with ThreadPoolExecutor(os.cpu_count() or 2) as pool:
        results = list(pool.map(lambda so: compile_object(so[0], so[1], extra), zip(sources, objects)))
    for source, result in zip(sources, results):
        assert result.returncode == 0, f"{source}:\n{result.stderr}"
    binary = folder / "drive_kernels"
    link = subprocess.run(["g++", "-fsanitize=address,undefined", *map(str, objects), "-o", str(binary)],
                          capture_output=True, text=True)
    assert link.returncode == 0, link.stderr
    return binary, include is not None


def run(driver, group):
    binary, _ = driver
    result = subprocess.run([str(binary), group], capture_output=True, text=True, timeout=300,
                            env={**os.environ, **SANITIZERS})
    report = result.stdout + result.stderr
    assert result.returncode == 0, report[-6000:]
    assert "0 failures" in result.stdout
    assert "runtime error" not in report  # UBSan


def test_kernels_match_twins(driver):
    """RoIAlign: batch 1-3, FP32/FP16 features and rois, sampling 0/2, aligned on/off, avg/max, sizes that are no
    multiple of anything. Matrix NMS: n = 1, 17, 500, 520 with nms_pre 500, masks that fill no whole 64-bit word or
    16-row tile, nms_pre and max_num cuts, ties, FP32/FP16 masks and scores apart, padding, NaN and +Inf scores."""
    run(driver, "kernels")


def test_batch_zero_launches_nothing(driver):
    run(driver, "empty-batch")


def test_launches_report_their_own_status(driver):
    """A pending error of an earlier, unrelated call is neither reported by our launches nor cleared by them."""
    run(driver, "pending-error")


def test_plugin_classes_as_the_parser_and_builder_call_them(driver):
    """createPlugin from the parser's fields, serialise and re-create, getOutputShapes and configurePlugin that
    refuse ill-shaped inputs naming them, supportsFormatCombination with FP16 masks/maps and FP32 scores/rois
    (each input's type free, as TensorRT 11's strongly typed FP16 graphs need), enqueue with exactly
    getWorkspaceSize bytes against the twin."""
    if not driver[1]:
        pytest.skip("no TensorRT headers (set TENSORRT_ROOT to a TensorRT include/ parent); the kernels ran anyway")
    run(driver, "plugins")
