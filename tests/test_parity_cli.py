"""`segtrt parity`: a bare image folder (AP not computed), files under the run folder, exports reused."""

import json
import tempfile
from pathlib import Path

from segtrt.cli import main as cli_main

SHIPPED = Path(__file__).parents[1] / "python" / "segtrt" / "weights" / "solov2_edge.pt"


def test_parity_on_a_folder_reuses_its_exports_and_leaves_nothing_behind(tmp_path, capsys, monkeypatch):
    from segtrt.data.synth import write_dataset

    write_dataset(tmp_path / "data", 2, seed=1000, size=(192, 192), progress=False)
    work = tmp_path / "cwd"
    work.mkdir()
    monkeypatch.chdir(work)
    temp = tmp_path / "tmp"
    temp.mkdir()
    monkeypatch.setattr(tempfile, "tempdir", str(temp))  # where Python's temporary files would go
    run = tmp_path / "run"
    arguments = ["parity", "--checkpoint", str(SHIPPED), "--images", str(tmp_path / "data" / "images"),
                 "--out", str(run), "--threads", "1"]
    assert cli_main(arguments) == 0
    printed = capsys.readouterr().out
    assert "PASS" in printed and "n/a" in printed and "reusing" not in printed
    report = json.loads((run / "parity.json").read_text())
    assert report["images"] == 2
    for row in report["backends"].values():
        assert row["mask_AP"] is None and row["detections"] > 0  # detections compared, AP not computed
    assert all(row["passed"] for name, row in report["backends"].items() if name != "pytorch")
    exports = sorted(run.glob("*.onnx"))
    assert [p.name for p in exports] == ["solov2_edge.portable.onnx", "solov2_edge.trt.onnx"]
    stamps = [p.stat().st_mtime_ns for p in exports]

    assert cli_main(arguments) == 0  # the second run reuses the exports of the same checkpoint
    assert capsys.readouterr().out.count("reusing") == 2
    assert [p.stat().st_mtime_ns for p in exports] == stamps
    assert list(work.iterdir()) == []  # nothing written to the current directory
    assert [p.name for p in temp.iterdir() if not p.name.startswith("torchinductor")] == []  # torch's own cache


def test_parity_with_annotations_reports_ap(tmp_path, capsys):
    from segtrt.data.synth import write_dataset

    write_dataset(tmp_path / "data", 2, seed=1000, size=(192, 192), progress=False)
    assert cli_main(["parity", "--model", "solov2", "--data", str(tmp_path / "data"), "--out", str(tmp_path / "run"),
                     "--images-limit", "1"]) == 0
    report = json.loads((tmp_path / "run" / "parity.json").read_text())
    assert report["images"] == 1
    assert all(isinstance(row["mask_AP"], float) for row in report["backends"].values())
    assert "solov2_edge_seeded.trt.onnx" in report["onnx"]["trt"]
