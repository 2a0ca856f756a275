"""`segtrt run` (python/run_camera.py): a generated video runs end to end with its masks drawn where the
JSON Lines put them; SIGINT leaves a readable video, complete JSON Lines and a summary; an unreachable live
source neither holds back a file source nor leaks its password; bad sources are one sentence."""

import json
import signal
import socket
import subprocess
import sys
import threading
import time
from pathlib import Path

import cv2
import numpy as np
import pytest

from segtrt.cli import main as cli_main
from segtrt.runtime.camera.bench import free_port
from segtrt.runtime.camera.live import has_gui, status_strip_height
from segtrt.runtime.camera.sources import FrameBuffer, has_gstreamer, redact
from segtrt.runtime.draw import MASK_OPACITY, class_colour

ROOT = Path(__file__).parents[1]
RUN_CAMERA = ROOT / "python" / "run_camera.py"
FRAME_HW = (128, 160)
STAGES = ("capture", "preprocess", "inference", "postprocess", "total")


def write_video(path: Path, frames: int) -> Path:
    from segtrt.data.synth import write_demo_video

    return write_demo_video(path, frames, FRAME_HW)


def read_video(path: Path) -> list[np.ndarray]:
    capture, frames = cv2.VideoCapture(str(path)), []
    while True:
        ok, frame = capture.read()
        if not ok:
            return frames
        frames.append(frame)


def read_jsonl(path: Path) -> list[dict]:
    return [json.loads(line) for line in path.read_text().splitlines()]


def test_a_video_runs_end_to_end_with_masks_drawn_where_the_json_lines_put_them(camera_model, tmp_path, capsys):
    from pycocotools import mask as mask_utils

    clip = write_video(tmp_path / "clip.mp4", 6)
    out = tmp_path / "out"
    assert cli_main(["run", "--model", str(camera_model), "--source", str(clip), "--out", str(out),
                     "--snapshot-every", "3"]) == 0
    table = capsys.readouterr().out
    assert "clip.mp4" in table and "inference" in table

    summary = json.loads((out / "summary.json").read_text())
    assert {"frames", "fps", "reconnects", "dropped", "corrupt", "latency_ms", "sources"} <= set(summary)
    assert summary["frames"] == 6 and summary["fps"] > 0 and summary["interrupted"] is None
    assert (summary["dropped"], summary["corrupt"], summary["reconnects"]) == (0, 0, 0)  # a file waits, loses none
    for figures in (summary["latency_ms"], summary["sources"][0]["latency_ms"]):
        for stage in STAGES:
            assert 0 <= figures[stage]["p50"] <= figures[stage]["p95"] <= figures[stage]["p99"]
    assert summary["latency_ms"]["total"]["p50"] >= summary["latency_ms"]["inference"]["p50"]
    (source,) = summary["sources"]
    assert source["state"] == "ended" and source["frames"] == 6

    lines = read_jsonl(out / source["jsonl"])
    assert [line["frame"] for line in lines] == list(range(6))
    originals, drawn_frames = read_video(clip), read_video(out / source["video"])
    assert len(drawn_frames) == 6 and drawn_frames[0].shape == (*FRAME_HW, 3)
    checked, strip = 0, status_strip_height(FRAME_HW[0])
    for line, original, drawn in zip(lines, originals, drawn_frames):
        original, drawn = original.astype(np.float32), drawn.astype(np.float32)
        # the status overlay: the source's FPS, in white on a darkened strip
        assert np.median(drawn[:strip]) < np.median(original[:strip]) / 2 and drawn[:strip].max() > 200
        detections = line["detections"]
        masks = np.array([mask_utils.decode(d["segmentation"]).astype(bool) for d in detections]).reshape(
            -1, *FRAME_HW)
        untouched = masks.sum(0) == 0
        untouched[:strip + 2] = False
        for d in detections:  # boxes, outlines and labels are drawn too: keep away from them
            x, y, w, h = (int(v) for v in d["bbox"])
            untouched[max(y - 14, 0): y + h + 4, max(x - 4, 0): x + w + 4] = False
        if untouched.sum() > 100:  # the video codec blurs edges: compare medians, not pixels
            assert np.median(np.abs(drawn[untouched] - original[untouched])) <= 4
        for d, mask in zip(detections, masks):
            inside = cv2.erode((mask & (masks.sum(0) == 1)).astype(np.uint8), np.ones((7, 7), np.uint8)) > 0
            x, y, w, h = (int(v) for v in d["bbox"])
            inside[max(y - 16, 0): y + 4, :] = False  # the label above the box
            inside[:strip + 2] = False
            if inside.sum() < 30:
                continue
            blended = original[inside] * (1 - MASK_OPACITY) + np.array(class_colour(d["category_id"] - 1)[::-1],
                                                                        np.float32) * MASK_OPACITY
            error = np.median(np.abs(drawn[inside] - blended))
            assert error <= 8, (line["frame"], d["category_id"], error)
            # the blend is visible: far from the undrawn frame, close to the drawn colour
            assert error < np.median(np.abs(drawn[inside] - original[inside])) / 2
            checked += 1
    assert checked >= 3
    snapshots = sorted((out / "snapshots").iterdir())
    assert [path.name for path in snapshots] == ["0_clip_000002.jpg", "0_clip_000005.jpg"] and summary["snapshots"] == 2
    for path, drawn in zip(snapshots, (drawn_frames[2], drawn_frames[5])):  # what the video shows at that frame
        assert np.median(np.abs(cv2.imread(str(path)).astype(np.float32) - drawn)) <= 4


def test_sigint_leaves_complete_outputs_and_an_unreachable_password_url_neither_stalls_nor_leaks(camera_model,
                                                                                               tmp_path):
    clip = write_video(tmp_path / "long.mp4", 80)
    url = f"udp://bob:s3cret@127.0.0.1:{free_port(socket.SOCK_DGRAM)}"
    out = tmp_path / "out"
    # A 60 s open timeout: if the file source waited for the stream, no file frame could come before it.
    process = subprocess.Popen([sys.executable, str(RUN_CAMERA), "--model", str(camera_model),
                                "--source", str(clip),
                                "--source", url, "--out", str(out), "--timeout-ms", "60000"],
                               stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    jsonl = out / "0_long.jsonl"
    deadline = time.monotonic() + 50
    while time.monotonic() < deadline and process.poll() is None:
        if jsonl.exists() and len(jsonl.read_text().splitlines()) >= 3:
            break
        time.sleep(0.1)
    assert process.poll() is None, process.communicate()
    process.send_signal(signal.SIGINT)
    stdout, stderr = process.communicate(timeout=15)
    assert process.returncode == 0, stderr
    assert "Traceback" not in stderr

    summary = json.loads((out / "summary.json").read_text())
    assert summary["interrupted"] == "SIGINT"
    file_source, stream = summary["sources"]
    lines = read_jsonl(out / file_source["jsonl"])  # every line complete JSON
    assert 3 <= file_source["frames"] == len(lines) < 80
    assert [line["frame"] for line in lines] == list(range(len(lines)))
    assert len(read_video(out / file_source["video"])) == len(lines)  # the video was closed: it plays
    assert stream["state"] == "connecting" and stream["open_failures"] == 0 and stream["frames"] == 0
    assert stream["source"] == redact(url) == url.replace("s3cret", "***")

    written = [path.name for path in out.iterdir()] + [path.read_bytes().decode("latin-1") for path in out.iterdir()]
    for text in (stdout, stderr, *written):
        assert "s3cret" not in text
    assert "bob:***@" in stdout


def test_bad_sources_are_one_sentence(camera_model, tmp_path, capsys):
    def error_of(*sources, options=()) -> str:
        args = ["run", "--model", str(camera_model), "--out", str(tmp_path / "out"), *options]
        assert cli_main(args + [arg for source in sources for arg in ("--source", source)]) == 2
        err = capsys.readouterr().err
        assert len(err.strip().splitlines()) == 1, err
        return err

    assert "does not exist" in error_of(str(tmp_path / "missing.mp4"))
    (tmp_path / "broken.mp4").write_bytes(b"not a video")
    assert "cannot open video" in error_of(str(tmp_path / "broken.mp4"))
    assert "unknown stream scheme" in error_of("ftp://user:pw@host/x")
    assert "pw" not in error_of("ftp://user:pw@host/x")
    if not has_gstreamer():
        assert "without GStreamer" in error_of("videotestsrc ! videoconvert ! appsink")
    clip = str(write_video(tmp_path / "clip.mp4", 2))
    if not has_gui():
        assert "has none (PyPI's opencv-python-headless never has)" in error_of(clip, options=["--show"])
    with socket.socket() as busy:
        busy.bind(("127.0.0.1", 0))
        busy.listen()
        assert "cannot listen" in error_of(clip, options=["--live-port", str(busy.getsockname()[1])])
    assert not (tmp_path / "out").exists()


def test_the_window_shows_each_new_frame_s_writes_snapshots_and_q_stops(camera_model, tmp_path, monkeypatch):
    # This OpenCV has no GUI: the window's calls are stood in for, to check what the run does with them.
    import segtrt.runtime.camera.live as live

    shown, keys = [], []

    def wait_key(_ms):
        if len(shown) >= 2 and not keys:
            keys.append("s")
            return ord("s")
        if len(shown) >= 3:
            keys.append("q")
            return ord("q")
        time.sleep(0.01)
        return -1

    monkeypatch.setattr(live, "has_gui", lambda: True)
    monkeypatch.setenv("DISPLAY", ":99")
    monkeypatch.setattr(cv2, "imshow", lambda title, image: shown.append((title, image.shape)))
    monkeypatch.setattr(cv2, "waitKey", wait_key)
    monkeypatch.setattr(cv2, "destroyAllWindows", lambda: None)
    clip, out = write_video(tmp_path / "clip.mp4", 40), tmp_path / "out"
    assert cli_main(["run", "--model", str(camera_model), "--source", str(clip), "--out", str(out), "--show"]) == 0
    summary = json.loads((out / "summary.json").read_text())
    assert keys == ["s", "q"] and summary["interrupted"] == "q" and 3 <= summary["frames"] < 40
    assert {title for title, _ in shown} == {str(clip)} and shown[0][1] == (*FRAME_HW, 3)
    assert len(list((out / "snapshots").glob("0_clip_*.jpg"))) == 1 == summary["snapshots"]


def test_an_image_folder_with_a_corrupt_image_skips_and_counts_it(camera_model, tmp_path):
    from segtrt.data.synth import write_dataset

    write_dataset(tmp_path / "data", 2, seed=3, size=FRAME_HW, progress=False)
    (tmp_path / "data" / "images" / "000001_broken.png").write_bytes(b"not a png")
    out = tmp_path / "out"
    assert cli_main(["run", "--model", str(camera_model), "--source", str(tmp_path / "data" / "images"),
                     "--out", str(out), "--json"]) == 0
    summary = json.loads((out / "summary.json").read_text())
    assert (summary["frames"], summary["corrupt"]) == (2, 1)
    assert len(read_jsonl(out / summary["sources"][0]["jsonl"])) == 2


def test_the_demo_video_pans_across_scenes_of_shapes(tmp_path):
    from segtrt.data.synth import DEMO_PAN_PX, DEMO_SCENE_FRAMES

    frames = read_video(write_video(tmp_path / "demo.mp4", DEMO_SCENE_FRAMES + 2))
    assert len(frames) == DEMO_SCENE_FRAMES + 2 and frames[0].shape == (*FRAME_HW, 3)
    assert [p.name for p in tmp_path.iterdir()] == ["demo.mp4"]  # no temporary left beside it
    first, second = (frame.astype(np.float32) for frame in frames[:2])
    panned = np.median(np.abs(second[:, :-DEMO_PAN_PX] - first[:, DEMO_PAN_PX:]))
    assert panned < np.median(np.abs(second - first)) / 2  # the next frame is this one moved by DEMO_PAN_PX
    cut = np.median(np.abs(frames[DEMO_SCENE_FRAMES].astype(np.float32) - frames[DEMO_SCENE_FRAMES - 1]))
    assert cut > 10  # a new scene


def test_only_detections_above_the_threshold_are_kept_for_pasting_whatever_their_order():
    from segtrt.runtime.camera.pipeline import scoring_detections

    scores = np.array([[0.2, 0.9, 0.5, 0.95], [0.8, 0.1, 0.0, 0.0]], np.float32)  # row 0: 3 real, 1 padding
    outputs = {"num_detections": np.array([3, 1], np.int64), "scores": scores,
               "boxes": np.arange(32, dtype=np.float32).reshape(2, 4, 4), "labels": np.array([[0, 1, 2, 3]] * 2),
               "masks": np.arange(2 * 4 * 2 * 2, dtype=np.float32).reshape(2, 4, 2, 2)}
    kept = scoring_detections(outputs, 0, 0.5)
    assert kept["num_detections"].tolist() == [2] and np.array_equal(kept["scores"], scores[:1, 1:3])
    assert kept["labels"].tolist() == [[1, 2]] and np.array_equal(kept["masks"][0], outputs["masks"][0, 1:3])
    assert np.array_equal(kept["boxes"][0], outputs["boxes"][0, 1:3])
    assert scoring_detections(outputs, 1, 0.9)["num_detections"].tolist() == [0]


def test_credentials_are_redacted_wherever_they_sit():
    assert redact("rtsp://admin:p4ss@cam.local:554/h264") == "rtsp://admin:***@cam.local:554/h264"
    assert redact("rtsp://admin:p@ss@10.0.0.2/x") == "rtsp://admin:***@10.0.0.2/x"  # an unescaped @ in it
    assert redact("rtspsrc location=rtsp://u:secret@h/s ! decodebin") == "rtspsrc location=rtsp://u:***@h/s ! decodebin"
    assert redact("http://host:8080/path?a=b") == "http://host:8080/path?a=b"  # a port is no password


def test_a_live_slot_keeps_the_newest_frame_and_a_file_buffer_waits():
    condition = threading.Condition()
    live = FrameBuffer(condition, live=True)
    for index in range(5):
        live.put(index, lambda: False)
    with condition:
        assert live.take() == 4 and live.take() is None
    assert live.dropped == 4

    file_buffer, stopped = FrameBuffer(condition, live=False), threading.Event()
    filler = threading.Thread(target=lambda: [file_buffer.put(i, stopped.is_set) for i in range(20)])
    filler.start()
    time.sleep(0.3)
    assert filler.is_alive() and len(file_buffer.frames) == file_buffer.capacity  # waiting for room
    capacity = file_buffer.capacity
    with condition:
        taken = [file_buffer.take() for _ in range(capacity)]
    time.sleep(0.3)
    with condition:
        refilled = list(file_buffer.frames)
    stopped.set()
    filler.join(timeout=2)
    assert not filler.is_alive() and file_buffer.dropped == 0
    assert taken == list(range(capacity)) and refilled == list(range(capacity, 2 * capacity))  # in order, none lost
