"""The TensorRT 10 calibration cache: implicit INT8 on JetPack (TensorRT 10.x still has calibrators; 11 does not).

The text format TensorRT's IInt8EntropyCalibrator2 reads back from `readCalibrationCache`:

    TRT-100300-EntropyCalibration2
    images: 3f010204
    /backbone/conv1/Conv_output_0: 3c8a5b3e

one line per tensor (ONNX tensor names, which TensorRT's ONNX parser keeps as its tensor names), the value the
big-endian hex of the float32 scale amax / 127. The header carries TensorRT's version number,
major * 10000 + minor * 100 + patch (NV_TENSORRT_VERSION since 10.0): TensorRT discards a cache whose header is
not its own and recalibrates, so the version must be the one that builds. The scales are the ones --method
computed (the header names the calibrator class that reads them, whatever the method).

No torch here.
"""

from __future__ import annotations

import re
import struct

from segtrt import SegtrtError

DEFAULT_TENSORRT_VERSION = "10.3.0"  # JetPack 6's TensorRT
INT8_MAX = 127
TINY_AMAX = 1e-8  # a tensor that was always 0 still needs a positive scale


def version_number(version: str) -> int:
    """TensorRT's NV_TENSORRT_VERSION of "10.3.0" (100300); SegtrtError for a version outside 10.x."""
    match = re.fullmatch(r"(\d+)\.(\d+)(?:\.(\d+))?(?:\.\d+)*", version)
    if not match or int(match.group(1)) != 10:
        raise SegtrtError(f"--trt-version {version!r}: give the TensorRT 10.x version that will build, e.g. "
                          f"{DEFAULT_TENSORRT_VERSION} (TensorRT 11 has no INT8 calibrators)")
    major, minor, patch = (int(match.group(i) or 0) for i in (1, 2, 3))
    return major * 10000 + minor * 100 + patch


def cache_text(amax: dict[str, float], version: str = DEFAULT_TENSORRT_VERSION) -> str:
    """The cache of per-tensor absolute maxima {tensor name: amax}."""
    lines = [f"TRT-{version_number(version)}-EntropyCalibration2"]
    for name, value in amax.items():
        scale = max(float(value), TINY_AMAX) / INT8_MAX
        lines.append(f"{name}: {struct.pack('>f', scale).hex()}")
    return "\n".join(lines) + "\n"


def parse_cache(text: str) -> tuple[int, dict[str, float]]:
    """(version number, {tensor: scale}) of a cache's text; SegtrtError if it is not one."""
    lines = text.splitlines()
    header = re.fullmatch(r"TRT-(\d+)-EntropyCalibration2", lines[0] if lines else "")
    if not header:
        raise SegtrtError("not a TensorRT EntropyCalibration2 cache: its first line must be "
                          "TRT-<version>-EntropyCalibration2")
    scales = {}
    for line in lines[1:]:
        name, _, value = line.rpartition(": ")
        scales[name] = struct.unpack(">f", bytes.fromhex(value))[0]
    return int(header.group(1)), scales


def amax_of(ranges) -> dict[str, float]:
    """{tensor: max(|low|, |high|)} of ONNX Runtime TensorsData, in its order."""
    from segtrt.calibration.ranges import amax

    return {name: amax(data) for name, data in ranges.items()}
