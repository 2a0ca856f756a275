"""`segtrt demo`, the README's main command: the whole pipeline end to end, here on one model and a few images."""

import json

from segtrt.cli import main


def test_demo_runs_the_whole_pipeline(tmp_path, capsys):
    out = tmp_path / "demo"
    assert main(["demo", "--out", str(out), "--models", "solov2_edge", "--val-images", "4",
                 "--calib-images", "4", "--frames", "4", "--latency-images", "2"]) == 0
    printed = capsys.readouterr().out
    for command in ("segtrt export", "segtrt calibrate", "segtrt build", "segtrt report", "segtrt run"):
        assert f"$ {command}" in printed  # every stage is shown as the command a user would type

    rows = json.loads((out / "report" / "report.json").read_text())
    precisions = sorted(row["precision"] for row in rows)
    assert precisions == ["fp16", "fp32", "fp32", "int8", "int8-cpu"]  # trt + portable exports, three variants
    assert all(0.0 <= row["mask_ap"] <= 1.0 and row["latency_ms"] > 0 for row in rows)
    assert (out / "report" / "report.html").stat().st_size > 0

    summary = json.loads((out / "camera" / "solov2_edge" / "summary.json").read_text())
    assert summary["frames"] == 4
    assert list((out / "camera" / "solov2_edge").glob("*.avi"))
    assert "report.html" in printed and "summary.json" in printed  # it says where its outputs are
