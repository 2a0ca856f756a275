"""Activation ranges over the calibration images: ONNX Runtime's calibrators, in a session that serves our plugins.

ONNX Runtime's MinMax, Percentile and Entropy calibrators add every tensor to calibrate as a graph output and run
the images through an InferenceSession they create themselves, which knows nothing of our plugin nodes. Here the
one method that creates it is replaced by segtrt's own session (segtrt.runtime.backends.onnxruntime.create_session:
plugin nodes served by their CPU twins), so the trt flavour calibrates as it is, graph unchanged.

    ranges = calibrate_ranges("model.trt.onnx", images, "entropy", op_types=("Conv", "Gemm"))
    ranges["tensor"].range_value   # (low, high) float32

No torch here.
"""

from __future__ import annotations

import contextlib
import io
import logging
import tempfile
from pathlib import Path

from segtrt import SegtrtError
from segtrt.calibration.images import CalibrationImages
from segtrt.runtime.model_info import INPUT_NAME, read_info

METHODS = ("max", "percentile", "entropy")
MIN_RANGE = 1e-6  # smallest activation range kept (see _widen_empty_ranges)
# TensorRT's entropy calibration: a 2048-bin histogram searched for the 128-level clipping of least KL divergence.
# (ONNX Runtime's default of 128 bins for 128 levels leaves one candidate, the full range: entropy becomes max.)
ENTROPY_BINS, ENTROPY_QUANTIZED_BINS = 2048, 128
PERCENTILE = 99.999  # of |x|: ONNX Runtime's default, and TensorRT's usual choice for percentile calibration


def ort_method(method: str):
    """ONNX Runtime's CalibrationMethod for a --method name."""
    from onnxruntime.quantization import CalibrationMethod

    if method not in METHODS:
        raise SegtrtError(f"unknown calibration method {method!r}; choose one of {', '.join(METHODS)}")
    return {"max": CalibrationMethod.MinMax, "percentile": CalibrationMethod.Percentile,
            "entropy": CalibrationMethod.Entropy}[method]


def calibrate_ranges(model_path, images: CalibrationImages, method: str, op_types=None, symmetric: bool = True,
                     threads: int | None = None):
    """onnxruntime.quantization.TensorsData: the range of every float input/output of the nodes of `op_types`
    (None: of every node), computed by `method` over `images` pre-processed from the file's metadata; symmetric
    about 0 for TensorRT's INT8, else the observed (low, high) for u8 activations."""
    from onnxruntime.quantization import calibrate

    info = read_info(model_path)
    base = {"max": calibrate.MinMaxCalibrater, "percentile": calibrate.PercentileCalibrater,
            "entropy": calibrate.EntropyCalibrater}[method]
    options = {"max": {}, "percentile": {"percentile": PERCENTILE, "num_bins": 2048},
               "entropy": {"num_bins": ENTROPY_BINS, "num_quantized_bins": ENTROPY_QUANTIZED_BINS}}[method]

    class SegtrtSessionCalibrater(base):
        def create_inference_session(self):
            from segtrt.runtime.backends.onnxruntime import create_session

            self.infer_session = create_session(self.augmented_model_path, "cpu", threads)

    with tempfile.TemporaryDirectory(prefix="segtrt-calibrate.") as folder:
        calibrater = SegtrtSessionCalibrater(Path(model_path), list(op_types) if op_types else None,
                                             str(Path(folder) / "augmented.onnx"), symmetric=symmetric, **options)
        calibrater.augment_graph()
        calibrater.create_inference_session()
        with quiet_onnxruntime_quantization():
            calibrater.collect_data(_Reader(images.model_inputs(info.preprocess, progress=f"calibrating ({method})")))
            ranges = calibrater.compute_data()
    _widen_empty_ranges(ranges)
    return ranges


def _widen_empty_ranges(ranges) -> None:
    """Give a tensor that was one value on every image (a padding channel, an unused class) a range of at least
    MIN_RANGE around it (in place): a zero range gives a zero scale, and ONNX Runtime's zero point is then NaN."""
    import numpy as np
    from onnxruntime.quantization.calibrate import TensorData

    for name, data in list(ranges.items()):
        low, high = (np.float32(v) for v in data.range_value)
        if high - low < MIN_RANGE:
            ranges[name] = TensorData(lowest=np.float32(min(low, -MIN_RANGE / 2)),
                                      highest=np.float32(max(high, MIN_RANGE / 2)))


def amax(data) -> float:
    """max(|low|, |high|) of one tensor's range (ONNX Runtime keeps them as 0-d or 1-element arrays)."""
    import numpy as np

    return float(np.max(np.abs(np.asarray(data.range_value, dtype=np.float64))))


@contextlib.contextmanager
def quiet_onnxruntime_quantization():
    """Silence ONNX Runtime's quantization chatter (prints and root-logger advice) that our own progress bars and
    summary replace; its errors still raise."""
    root = logging.getLogger()
    level = root.level
    root.setLevel(logging.ERROR)
    try:
        with contextlib.redirect_stdout(io.StringIO()):
            yield
    finally:
        root.setLevel(level)


class _Reader:
    """ONNX Runtime's CalibrationDataReader protocol over model inputs [1, 3, H, W]."""

    def __init__(self, batches):
        self.batches = iter(batches)

    def get_next(self):
        batch = next(self.batches, None)
        return None if batch is None else {INPUT_NAME: batch}
