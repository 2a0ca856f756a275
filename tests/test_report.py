"""`segtrt report`: rows measured through the runtime, Markdown, and an HTML page whose plots a real browser
draws; bad input and failing writes leave no partial report.

One shipped model is exported once (portable, SOLOv2) and reported on 8 images. Its second variant is a
TEST-ONLY copy of the FP32 graph whose metadata says int8-mixed, with made-up per-layer sensitivity: it
exercises the report's int8-mixed paths before calibration exists, and is no calibrated result.
"""

import dataclasses
import errno
import json
import re
import shutil
import subprocess
import tempfile
from pathlib import Path
from types import SimpleNamespace

import numpy as np
import pytest

from segtrt import SegtrtError
from segtrt.cli import main as cli_main
from segtrt.report.html import FALLBACK_COLOUR, MODEL_COLOURS, QUANTISED_COLOUR, SIZE_COLOURS
from test_runtime_torch_free import run_without_torch

SHIPPED = Path(__file__).parents[1] / "python" / "segtrt" / "weights" / "solov2_edge.pt"
FIELDS = {"variant", "backend", "mask_ap", "box_ap", "latency_ms", "size_bytes", "precision", "model", "kind",
          "file", "emulated", "note", "boundary_f", "latency_mean_ms", "latency_p50_ms", "latency_p95_ms", "fps",
          "mask_ap_drop", "box_ap_drop", "measured",
          *(f"{kind}_{name}" for kind in ("mask", "box") for name in ("ap50", "ap75", "aps", "apm", "apl"))}
SENSITIVITY = [{"layer": f"backbone.layer{i}.conv", "proxy_error": 0.01 * (i + 1),
                "ap_drop": None if i % 2 else 0.001 * i, "fallback": i == 3} for i in range(4)]
CHROMIUM_FLAGS = ("--headless", "--no-sandbox", "--disable-gpu", "--disable-quic", "--no-first-run",
                  "--disable-background-networking", "--disable-component-update", "--disable-sync",
                  "--hide-scrollbars")


@pytest.fixture(scope="module")
def report(tmp_path_factory):
    """The report of the exported model and its relabelled copy, made in a process where torch cannot load."""
    import onnx

    from segtrt.data.synth import write_dataset
    from segtrt.runtime.model_info import read_info, write_info

    folder = tmp_path_factory.mktemp("report")
    fp32 = folder / "solov2.onnx"
    assert cli_main(["export", "--checkpoint", str(SHIPPED), "--flavour", "portable", "--out", str(fp32)]) == 0
    write_dataset(folder / "val", 8, seed=1000, progress=False)
    model = onnx.load(str(fp32))
    info = read_info(model)
    write_info(model, dataclasses.replace(info, precision="int8-mixed",
                                          calibration={"method": "entropy", "max_ap_drop": 0.003,
                                                       "fp32_mask_ap": 0.61, "mask_ap": 0.6085, "val_images": 50,
                                                       "sensitivity": SENSITIVITY}))
    relabelled = folder / "solov2.relabelled.onnx"
    onnx.save(model, str(relabelled))
    out = folder / "out"
    command = ["report", "--onnx", str(fp32), str(relabelled), "--data", str(folder / "val"), "--out", str(out),
               "--latency-images", "3", "--warmup", "1"]
    result = run_without_torch(f"import sys; from segtrt.cli import main; sys.exit(main({command!r}))")
    assert result.returncode == 0, result.stderr
    return SimpleNamespace(folder=folder, out=out, fp32=fp32, relabelled=relabelled, data=folder / "val",
                           stdout=result.stdout, rows=json.loads((out / "report.json").read_text()))


def test_rows_carry_every_field_measured_through_the_runtime(report):
    from segtrt.evaluation.coco import evaluate_backend
    from segtrt.runtime.backends import open_backend

    fp32, mixed = report.rows
    assert all(FIELDS <= set(row) for row in report.rows)
    assert (fp32["variant"], fp32["precision"]) == ("fp32", "fp32")
    assert (mixed["variant"], mixed["precision"]) == ("int8-mixed (entropy)", "int8-mixed")
    assert fp32["model"] == mixed["model"] and fp32["model"].startswith("solov2 portable ")
    assert {row["backend"] for row in report.rows} == {"onnxruntime-cpu"}
    assert not fp32["emulated"] and mixed["emulated"] and "Q/DQ" in mixed["note"]
    assert mixed["calibration"]["sensitivity"] == SENSITIVITY
    expected = evaluate_backend(open_backend(report.fp32), report.data, progress=False)
    assert fp32["mask_ap"] == pytest.approx(expected["segm"]["AP"]) and fp32["mask_ap"] > 0.2
    assert fp32["box_apl"] == pytest.approx(expected["bbox"]["APl"])
    assert fp32["boundary_f"] == pytest.approx(expected["boundary_f"])
    assert fp32["mask_ap_drop"] == 0.0 and mixed["mask_ap_drop"] == pytest.approx(0.0)  # the same graph
    for row in report.rows:
        assert 0 < row["latency_p50_ms"] <= row["latency_p95_ms"] and row["latency_ms"] == row["latency_p50_ms"]
        assert row["fps"] == pytest.approx(1000 / row["latency_mean_ms"])
        assert row["measured"]["latency_images"] == 3 and row["measured"]["threads"] == 1
        assert row["measured"]["eval_images"] == 8
    assert fp32["size_bytes"] == report.fp32.stat().st_size


def test_markdown_has_the_command_every_row_and_the_sensitivity_table(report):
    text = (report.out / "report.md").read_text()
    assert f"segtrt report --onnx {report.fp32} {report.relabelled}" in text
    summary = [line for line in text.splitlines() if line.startswith("| solov2 portable")]
    assert len(summary) == 4  # summary and size tables, one line per variant each
    assert "| int8-mixed (entropy) | onnxruntime-cpu |" in text and "emulated: INT8 Q/DQ" in text
    assert f"| {report.rows[0]['mask_ap']:.3f} | +0.0000 |" in text
    for entry in SENSITIVITY:
        assert f"| {entry['layer']} | {entry['proxy_error']:.4g} |" in text
    assert ("1 of 4 layers fell back to float to keep the mask AP drop within 0.003 (calibration measured mask AP "
            "0.6085 against FP32's 0.6100 on 50 images of its own)") in text
    assert "Accuracy, latency and size per variant" in report.stdout  # the summary on the console too


def screenshot(html: Path, png: Path, width: int = 1600, height: int = 1800) -> np.ndarray:
    """RGB [height, width, 3] of the page as headless Chromium (Debian's) draws it."""
    import cv2

    chromium = shutil.which("chromium") or "/usr/bin/chromium"
    assert Path(chromium).exists(), "Debian's chromium is needed for the browser test (make setup installs it)"
    with tempfile.TemporaryDirectory() as profile:
        result = subprocess.run([chromium, *CHROMIUM_FLAGS, f"--user-data-dir={profile}", f"--screenshot={png}",
                                 f"--window-size={width},{height}", html.resolve().as_uri()],
                                capture_output=True, text=True, timeout=120)
    assert result.returncode == 0 and png.is_file(), result.stderr[-2000:]
    return cv2.imread(str(png))[:, :, ::-1]


def marks(image: np.ndarray, colour: str, min_area: int = 120) -> list[dict]:
    """Connected regions of exactly `colour` (what a plot fills its marks with) of at least min_area pixels
    (the legends' 10x10 swatches are smaller): {"area", "x", "y", "w", "h"}."""
    import cv2

    rgb = np.array([int(colour[i:i + 2], 16) for i in (1, 3, 5)])
    mask = (np.abs(image.astype(int) - rgb).max(-1) <= 2).astype(np.uint8)
    count, _, stats, _ = cv2.connectedComponentsWithStats(mask, connectivity=4)
    found = [dict(zip(("x", "y", "w", "h", "area"), map(int, stats[i]))) for i in range(1, count)]
    return sorted((m for m in found if m["area"] >= min_area), key=lambda m: m["x"])


def check_plots(image: np.ndarray, rows: list[dict]) -> None:
    """The three plots are drawn, in order down the page, and their marks are the data's."""
    points = [m for m in marks(image, MODEL_COLOURS[0]) if m["area"] < 0.9 * m["w"] * m["h"]]  # round, not swatch
    assert points, "no point of the AP-latency scatter plot"
    bars = {name: marks(image, colour, 150) for name, colour in SIZE_COLOURS}
    for (name, found), key in zip(bars.items(), ("mask_aps", "mask_apm", "mask_apl")):
        values = [row[key] for row in rows if row[key] >= 0]
        assert len(found) == len(values), f"{len(found)} {name} bars for {len(values)} variants"
        for bar, value in zip(found, values):  # heights proportional to AP on one baseline
            assert bar["y"] + bar["h"] == pytest.approx(found[0]["y"] + found[0]["h"], abs=1)
            assert bar["h"] / found[0]["h"] == pytest.approx(value / values[0], rel=0.03)
    kept, fallback = marks(image, QUANTISED_COLOUR), marks(image, FALLBACK_COLOUR)
    assert (len(kept), len(fallback)) == (3, 1), "per-layer sensitivity bars"
    widths = sorted(m["w"] for m in kept + fallback)
    assert widths == pytest.approx([widths[-1] * (i + 1) / 4 for i in range(4)], rel=0.05)  # proxy 0.01..0.04
    size_top = min(m["y"] for found in bars.values() for m in found)
    size_bottom = max(m["y"] + m["h"] for found in bars.values() for m in found)
    assert max(m["y"] + m["h"] for m in points) < size_top
    assert size_bottom < min(m["y"] for m in kept + fallback)


def test_html_report_draws_its_plots_in_a_real_browser(report, tmp_path):
    html = (report.out / "report.html").read_text()
    assert not re.search(r"(src|href)=\"(https?:)?//", html)  # self-contained: nothing to fetch
    check_plots(screenshot(report.out / "report.html", tmp_path / "page.png"), report.rows)


def test_the_plot_check_fails_on_a_page_whose_plots_are_missing(report, tmp_path):
    broken = tmp_path / "broken.html"
    broken.write_text(re.sub(r"<svg.*?</svg>", "", (report.out / "report.html").read_text(), flags=re.S))
    with pytest.raises(AssertionError):
        check_plots(screenshot(broken, tmp_path / "broken.png"), report.rows)


def report_files(folder: Path) -> list[str]:
    return sorted(p.name for p in folder.iterdir()) if folder.exists() else []


def test_an_onnx_file_without_segtrt_metadata_is_one_line_and_writes_nothing(report, tmp_path, capsys):
    import onnx
    from onnx import TensorProto, helper

    plain = tmp_path / "plain.onnx"
    value = helper.make_tensor_value_info("x", TensorProto.FLOAT, [1])
    onnx.save(helper.make_model(helper.make_graph([helper.make_node("Identity", ["x"], ["y"])], "g", [value],
                                                  [helper.make_tensor_value_info("y", TensorProto.FLOAT, [1])])),
              str(plain))
    out = tmp_path / "out"
    assert cli_main(["report", "--onnx", str(report.fp32), str(plain), "--data", str(report.data),
                     "--out", str(out)]) == 2
    error = capsys.readouterr().err.strip()
    assert len(error.splitlines()) == 1 and "no segtrt metadata" in error and error.startswith("segtrt report:")
    assert report_files(out) == []


def graph_onnx_runtime_refuses(report, path: Path) -> None:
    """The shipped model's segtrt metadata on a graph whose node reads a tensor nobody makes."""
    import onnx
    from onnx import TensorProto, helper

    from segtrt.runtime.model_info import read_info, write_info

    value = helper.make_tensor_value_info("images", TensorProto.FLOAT, [1])
    model = helper.make_model(helper.make_graph([helper.make_node("Add", ["images", "missing"], ["boxes"])], "g",
                                                [value], [helper.make_tensor_value_info("boxes", TensorProto.FLOAT,
                                                                                        [1])]))
    write_info(model, read_info(report.fp32))
    onnx.save(model, str(path))


@pytest.mark.parametrize("case", ["missing data", "out under a file", "engine without sidecar", "invalid graph"])
def test_bad_input_is_one_line_before_anything_is_measured(case, report, tmp_path, capsys):
    (tmp_path / "file").write_text("")
    (tmp_path / "model.engine").write_bytes(b"\0")
    onnx, data, out = [str(report.fp32)], str(report.data), tmp_path / "out"
    if case == "missing data":
        data = str(tmp_path / "no-such-set")
    elif case == "out under a file":
        out = tmp_path / "file" / "out"
    elif case == "engine without sidecar":
        onnx.append(str(tmp_path / "model.engine"))
    else:
        graph_onnx_runtime_refuses(report, tmp_path / "invalid.onnx")
        onnx.append(str(tmp_path / "invalid.onnx"))
    assert cli_main(["report", "--onnx", *onnx, "--data", data, "--out", str(out)]) == 2
    captured = capsys.readouterr()
    expected = {"missing data": "does not exist", "out under a file": "cannot create the report folder",
                "engine without sidecar": "has no sidecar", "invalid graph": "cannot load"}[case]
    assert len(captured.err.strip().splitlines()) == 1 and expected in captured.err
    assert "[1/" not in captured.out  # refused before the first model ran
    assert report_files(out) == []


def test_a_failing_write_changes_no_report_file(report, tmp_path, monkeypatch):
    """A full disk on the second of the three files: the previous report stays whole, no temp file remains."""
    import os

    from segtrt.report.cli import REPORT_FILES, write_report

    out = tmp_path / "out"
    write_report(report.rows[:1], out)
    before = {name: (out / name).read_bytes() for name in REPORT_FILES}
    calls = []

    def full_disk(descriptor):
        calls.append(descriptor)
        if len(calls) == 2:
            raise OSError(errno.ENOSPC, "No space left on device")

    monkeypatch.setattr(os, "fsync", full_disk)
    with pytest.raises(SegtrtError, match="No space left on device.*nothing was written"):
        write_report(report.rows, out)
    assert report_files(out) == sorted(REPORT_FILES)
    assert {name: (out / name).read_bytes() for name in REPORT_FILES} == before


def test_ap_drops_compare_with_the_fp32_row_of_the_same_model():
    from segtrt.report.measure import add_ap_drops

    rows = [{"model": "a", "precision": "int8", "mask_ap": 0.48, "box_ap": 0.50},
            {"model": "a", "precision": "fp32", "mask_ap": 0.50, "box_ap": 0.55},
            {"model": "b", "precision": "fp16", "mask_ap": 0.40, "box_ap": 0.41}]
    add_ap_drops(rows)
    assert rows[0]["mask_ap_drop"] == pytest.approx(0.02) and rows[0]["box_ap_drop"] == pytest.approx(0.05)
    assert rows[1]["mask_ap_drop"] == 0.0
    assert rows[2]["mask_ap_drop"] is None and rows[2]["box_ap_drop"] is None  # model b has no fp32 row


def test_latency_times_the_backend_alone_after_warm_up(report, monkeypatch):
    from segtrt.report import measure
    from segtrt.runtime.backends import Backend
    from segtrt.runtime.model_info import read_info

    clock = [0.0]
    monkeypatch.setattr(measure, "perf_counter", lambda: clock[0])

    class Clocked(Backend):
        """Takes 2 ms on warm-up calls, then 20, 40, 60 ms (of the patched clock): the timings are the last three."""

        def __init__(self):
            self.info, self.name, self.calls = read_info(report.fp32), "clocked", 0

        def __call__(self, images):
            self.calls += 1
            clock[0] += 0.002 if self.calls <= 2 else 0.02 * (self.calls - 2)
            return {"num_detections": np.zeros(len(images), np.int32)}

    backend = Clocked()
    timings = measure.time_backend(backend, measure.open_dataset(report.data), warmup=2, count=3)
    assert backend.calls == 5 and timings["count"] == 3
    assert timings["p50"] == pytest.approx(40) and timings["mean"] == pytest.approx(40)  # warm-up in: 20, 25
    assert timings["p95"] == pytest.approx(58)
