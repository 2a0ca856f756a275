"""One report row per model file: its accuracy (the evaluator) and its latency (the backend), measured here.

    files = check_model_files(["m.onnx", "m.int8.onnx"])
    rows = measure_models(files, open_dataset("data/val"), Settings(threads=1))
    rows[1]["mask_ap"], rows[1]["mask_ap_drop"], rows[1]["backend"], rows[1]["note"]

Accuracy is `segtrt.evaluation.coco.evaluate_backend` over the whole set; latency times the backend alone
(one pre-processed image per call, after warm-up), so pre- and post-processing, which every variant
shares, do not blur the differences between precisions. No torch here.
"""

from __future__ import annotations

import os
from dataclasses import dataclass
from pathlib import Path
from time import perf_counter

import numpy as np

from segtrt import SegtrtError
from segtrt.runtime.backends import ENGINE_SUFFIXES, open_backend
from segtrt.runtime.model_info import ModelInfo, read_info

# What each precision's arithmetic is when ONNX Runtime runs it on the CPU: (emulated?, how). TensorRT
# computes FP16 and INT8 in its own kernels; ONNX Runtime here keeps the same rounding points only.
CPU_ARITHMETIC = {
    "fp32": (False, "FP32 as exported"),
    "fp16": (True, "FP16 tensors; ORT's CPU provider computes ops lacking FP16 kernels in FP32 between Casts it "
                   "inserts, not in TensorRT's FP16 kernels"),
    "int8": (True, "TensorRT-style symmetric INT8 Q/DQ: ORT rounds to the INT8 grid at each Q/DQ pair as TensorRT "
                   "does, then computes in its own kernels (float ops after DequantizeLinear, or its INT8 ones where "
                   "it fuses), not TensorRT's"),
    "int8-cpu": (False, "native: ORT's u8/s8 QLinear kernels, the format for CPUs (TensorRT takes the int8 file)"),
    "int8-mixed": (True, "INT8 Q/DQ emulated as for int8; the layers that fell back stay in the graph's float type"),
}

AP_SUFFIXES = ("AP50", "AP75", "APs", "APm", "APl")  # beside AP (mask_ap, box_ap), as evaluation.coco names them


@dataclass(frozen=True)
class Settings:
    """How every model is measured: the same for all rows, so that they compare."""

    provider: str = "cpu"  # ONNX Runtime execution provider (segtrt.runtime.backends.PROVIDERS)
    threads: int = 1
    batch_size: int = 4  # evaluation batch (latency always runs one image per call)
    warmup: int = 5
    latency_images: int | None = None  # None: every evaluation image


@dataclass(frozen=True)
class ModelFile:
    """A model file to report on, checked before anything is measured."""

    path: Path
    info: ModelInfo  # an engine's: the ModelInfo of the ONNX file it was built from
    precision: str  # the ONNX file's segtrt.precision; an engine's as built (legacy flags may add fp16/int8)

    @property
    def is_engine(self) -> bool:
        return self.path.suffix.lower() in ENGINE_SUFFIXES

    @property
    def variant(self) -> str:
        """The precision, with the calibration method when calibration recorded one: "int8 (entropy)"."""
        method = self.info.calibration.get("method")
        return f"{self.precision} ({method})" if method else self.precision


def check_model_files(paths) -> list[ModelFile]:
    """The segtrt metadata of every file (an ONNX file's own, an engine's sidecar), so a bad file among many
    fails before the first one is measured."""
    files = []
    for path in map(Path, paths):
        if not path.is_file():
            raise SegtrtError(f"model file {path} does not exist")
        if path.suffix.lower() in ENGINE_SUFFIXES:
            from segtrt.engine.sidecar import read_sidecar

            sidecar = read_sidecar(path)
            files.append(ModelFile(path, sidecar.info, sidecar.precision))
        elif path.suffix.lower() == ".onnx":
            info = read_info(path)
            files.append(ModelFile(path, info, info.precision))
        else:
            raise SegtrtError(f"{path}: report takes exported .onnx files (any precision) or TensorRT "
                              f".engine/.plan files from `segtrt build`, not {path.suffix or 'a file without suffix'}")
    return files


def open_dataset(data, images=None):
    """The evaluation set (segtrt.data.coco.CocoDataset), refused when it has no images."""
    from segtrt.data.coco import CocoDataset

    dataset = CocoDataset(data, images)
    if not len(dataset):
        raise SegtrtError(f"dataset {data} has no images to evaluate")
    return dataset


def measure_models(files: list[ModelFile], dataset, settings: Settings = Settings()) -> list[dict]:
    """One row per checked model file (check_model_files), in the given order, over a dataset (open_dataset),
    with AP drops against the fp32 row of the same model."""
    backends = [open_model(model, settings) for model in files]  # a file the backend refuses fails first
    rows = []
    for index, (model, backend) in enumerate(zip(files, backends), 1):
        print(f"[{index}/{len(files)}] {model.path.name}: {model.variant}, {model.info.kind} "
              f"{model.info.flavour}", flush=True)
        rows.append(measure_model(model, backend, dataset, settings))
    add_ap_drops(rows)
    return rows


def open_model(model: ModelFile, settings: Settings):
    """The backend of a checked model file; a file its runtime cannot load is one SegtrtError naming it."""
    try:
        return open_backend(model.path, settings.provider, settings.threads)
    except SegtrtError:
        raise
    except Exception as error:  # ONNX Runtime's InvalidGraph, Fail, ... (or TensorRT's) for a file it refuses
        reason = str(error).strip().splitlines()[0] if str(error).strip() else type(error).__name__
        raise SegtrtError(f"cannot load {model.path} ({reason})") from None


def measure_model(model: ModelFile, backend, dataset, settings: Settings) -> dict:
    """The report row of one model file run by its backend (see README "Accuracy vs precision report")."""
    from segtrt.evaluation.coco import evaluate_backend

    label = f"eval {model.variant}"
    metrics = evaluate_backend(backend, dataset.annotation_file, images=dataset.image_dir,
                               batch_size=settings.batch_size, progress=label)
    timings = time_backend(backend, dataset, settings.warmup, settings.latency_images,
                           progress=f"time {model.variant}")
    backend_name, emulated, note = arithmetic(model, settings.provider)
    info = model.info
    row = {
        "variant": model.variant,
        "precision": model.precision,
        "model": model_label(info),
        "kind": info.kind,
        "flavour": info.flavour,
        "source_sha256": info.source,
        "file": model.path.name,
        "path": str(model.path),
        "size_bytes": model.path.stat().st_size,
        "backend": backend_name,
        "emulated": emulated,
        "note": note,
        "mask_ap": metrics["segm"]["AP"],
        "box_ap": metrics["bbox"]["AP"],
        **{f"mask_{name.lower()}": metrics["segm"][name] for name in AP_SUFFIXES},
        **{f"box_{name.lower()}": metrics["bbox"][name] for name in AP_SUFFIXES},
        "boundary_f": metrics["boundary_f"],
        "latency_ms": timings["p50"],
        "latency_mean_ms": timings["mean"],
        "latency_p50_ms": timings["p50"],
        "latency_p95_ms": timings["p95"],
        "fps": 1000.0 / timings["mean"],
        "calibration": info.calibration,
        "measured": {
            "eval_images": len(dataset),
            "data": str(dataset.annotation_file),
            "latency_images": timings["count"],
            "warmup": settings.warmup,
            "threads": settings.threads,
            "batch_size": settings.batch_size,
            "latency_scope": "backend call only, one pre-processed image per call (pre/post-processing excluded)",
            "provider": settings.provider,
            "cpu_cores": os.cpu_count(),
        },
    }
    return row


def time_backend(backend, dataset, warmup: int, count: int | None, progress: str | None = None) -> dict:
    """Per-image latency of `backend` over the first `count` images of `dataset` (all when None; the set
    repeats when it has fewer), after `warmup` untimed calls. Returns {"mean", "p50", "p95"} in ms and
    "count". Each image is decoded and letterboxed before its timer starts."""
    from tqdm import tqdm

    from segtrt.runtime.inference import run_batch
    from segtrt.runtime.preprocess import to_model_input

    def model_input(index: int):
        image = dataset.load_image(dataset.image_ids[index % len(dataset)])
        return to_model_input([image], backend.info.preprocess)[0]

    count = len(dataset) if count is None else count
    first = model_input(0)
    for _ in range(warmup):
        run_batch(backend, first)
    timings = []
    for index in tqdm(range(count), desc=progress, unit="image", disable=progress is None):
        batch = model_input(index)
        start = perf_counter()
        run_batch(backend, batch)
        timings.append((perf_counter() - start) * 1000.0)
    return {"mean": float(np.mean(timings)), "p50": float(np.percentile(timings, 50)),
            "p95": float(np.percentile(timings, 95)), "count": count}


def arithmetic(model: ModelFile, provider: str) -> tuple[str, bool, str]:
    """(backend, emulated?, how) of a model file measured with `provider`: an engine and ONNX Runtime's
    TensorRT provider run TensorRT's own kernels (real); the CPU provider emulates FP16 and TensorRT INT8."""
    if model.is_engine:
        return "tensorrt", False, f"real: TensorRT engine on this GPU, built from the {model.info.precision} ONNX"
    if provider == "tensorrt":
        return "onnxruntime-tensorrt", False, "real: TensorRT kernels through ONNX Runtime's TensorRT provider"
    emulated, how = CPU_ARITHMETIC[model.info.precision]
    if provider == "cuda":  # CUDA kernels run FP16 natively; INT8 Q/DQ is still not TensorRT's arithmetic
        emulated = model.info.precision in ("int8", "int8-mixed")
        how = how if emulated else f"{model.info.precision} in ONNX Runtime's CUDA kernels, not TensorRT's"
    return f"onnxruntime-{provider}", emulated, how


def model_label(info) -> str:
    """Which trained model a row belongs to: its kind, flavour and checkpoint hash (what groups the rows)."""
    return f"{info.kind} {info.flavour}" + (f" {info.source[:8]}" if info.source else "")


def add_ap_drops(rows: list[dict]) -> None:
    """Set mask_ap_drop / box_ap_drop (fp32 AP minus the row's: positive is a loss) against the first fp32 row
    of the same model (kind, flavour, checkpoint); None where the model has no fp32 row."""
    reference = {}
    for row in rows:
        if row["precision"] == "fp32":
            reference.setdefault(row["model"], row)
    for row in rows:
        fp32 = reference.get(row["model"])
        for metric in ("mask_ap", "box_ap"):
            row[f"{metric}_drop"] = fp32[metric] - row[metric] if fp32 is not None else None
