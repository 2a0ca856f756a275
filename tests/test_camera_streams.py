"""`segtrt run` on real stream servers, all on 127.0.0.1: Debian's GStreamer RTSP server
(tests/streams/rtsp_server.py, under the system python3) and ffmpeg serving HTTP MPEG-TS and sending UDP
MPEG-TS. Streams are segmented; a killed and restarted server reconnects within the same run; a stalled
server holds back no other source; the live page renders in headless Chromium with the stream and the
figures; a stream password appears in no output, log or page."""

import json
import os
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import time
import urllib.request
from pathlib import Path

import cv2
import numpy as np
import pytest


ROOT = Path(__file__).parents[1]
RUN_CAMERA = ROOT / "python" / "run_camera.py"
RTSP_SERVER = ROOT / "tests" / "streams" / "rtsp_server.py"
SYSTEM_PYTHON = "/usr/bin/python3"
FFMPEG = shutil.which("ffmpeg")
CHROMIUM = shutil.which("chromium")
FRAME_HW = (128, 160)
STREAM_FPS = 25  # faster than the model here: the live slot drops what inference cannot take
PASSWORD = "s3cretPW"

pytestmark = pytest.mark.skipif(FFMPEG is None, reason="ffmpeg is not installed (make setup installs it)")


def has_rtsp_server() -> bool:
    probe = ("import gi; gi.require_version('GstRtspServer', '1.0'); from gi.repository import GstRtspServer;"
             "from gi.repository import Gst; Gst.init(None); assert Gst.ElementFactory.find('rtpjpegpay')")
    return Path(SYSTEM_PYTHON).exists() and subprocess.run([SYSTEM_PYTHON, "-c", probe],
                                                           capture_output=True).returncode == 0


needs_rtsp = pytest.mark.skipif(not has_rtsp_server(), reason="GStreamer's RTSP server is not installed (make "
                                "setup installs python3-gi, gir1.2-gst-rtsp-server-1.0, gstreamer1.0-plugins-good)")


@pytest.fixture(scope="module")
def frames(tmp_path_factory) -> Path:
    """20 JPEG frames of the demo video (shapes panning), what every server here streams in a loop."""
    from segtrt.data.synth import write_demo_video

    folder = tmp_path_factory.mktemp("frames")
    capture = cv2.VideoCapture(str(write_demo_video(folder / "demo.mp4", 20, FRAME_HW)))
    for index in range(20):
        ok, image = capture.read()
        assert ok
        cv2.imwrite(str(folder / f"{index:06d}.jpg"), image)
    return folder


def free_port(kind=socket.SOCK_STREAM) -> int:
    with socket.socket(socket.AF_INET, kind) as probe:
        probe.bind(("127.0.0.1", 0))
        return probe.getsockname()[1]


class Server:
    """A stream server process: started, killed, stalled (SIGSTOP) and resumed by the test."""

    def __init__(self, command: list[str], ready_line: str | None = None):
        self.command, self.ready_line = command, ready_line
        self.process = None

    def start(self) -> "Server":
        self.process = subprocess.Popen(self.command, stdin=subprocess.DEVNULL, stdout=subprocess.PIPE,
                                        stderr=subprocess.DEVNULL, text=True)
        if self.ready_line is not None:
            line = self.process.stdout.readline()
            assert line.strip() == self.ready_line, f"{self.command[:2]} did not start: {line!r}"
        return self

    def kill(self) -> None:
        if self.process is not None and self.process.poll() is None:
            self.process.send_signal(signal.SIGCONT)
            self.process.kill()
            self.process.wait(timeout=10)

    def stall(self) -> None:
        self.process.send_signal(signal.SIGSTOP)

    def resume(self) -> None:
        self.process.send_signal(signal.SIGCONT)


def rtsp_server(port: int, frames: Path, password: str | None = None) -> Server:
    credentials = ["--user", "bob", "--password", password] if password else []
    return Server([SYSTEM_PYTHON, str(RTSP_SERVER), "--port", str(port), "--frames", str(frames),
                   "--fps", str(STREAM_FPS), *credentials], ready_line="ready")


def ffmpeg_stream(frames: Path, target: str) -> Server:
    """ffmpeg looping the frames as MPEG-2 in MPEG-TS at STREAM_FPS: to http://...(it serves one client,
    -listen 1) or udp://... (it sends)."""
    listen = ["-listen", "1"] if target.startswith("http") else []
    return Server([FFMPEG, "-hide_banner", "-loglevel", "error", "-re", "-f", "image2", "-loop", "1",
                   "-framerate", str(STREAM_FPS), "-i", str(frames / "%06d.jpg"), "-c:v", "mpeg2video", "-q:v", "4",
                   "-g", "5", "-f", "mpegts", *listen, target])


def run_camera(model: Path, out: Path, *args: str) -> subprocess.Popen:
    return subprocess.Popen([sys.executable, str(RUN_CAMERA), "--model", str(model), "--out", str(out), *args],
                            stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)


def read_jsonl(path: Path) -> list[dict]:
    return [json.loads(line) for line in path.read_text().splitlines()] if path.exists() else []


def wait_for_lines(path: Path, count: int, process: subprocess.Popen, seconds: float = 40) -> None:
    deadline = time.monotonic() + seconds
    while len(read_jsonl(path)) < count:
        assert process.poll() is None, process.communicate()
        assert time.monotonic() < deadline, f"fewer than {count} frames in {path.name} after {seconds} s"
        time.sleep(0.1)


def finish(process: subprocess.Popen, seconds: float = 60) -> tuple[str, str]:
    try:
        stdout, stderr = process.communicate(timeout=seconds)
    except subprocess.TimeoutExpired:
        process.kill()
        stdout, stderr = process.communicate()
        pytest.fail(f"segtrt run did not end in {seconds} s:\n{stderr[-2000:]}")
    assert process.returncode == 0 and "Traceback" not in stderr, stderr
    return stdout, stderr


def assert_no_password(out: Path, *texts: str) -> None:
    written = [path.read_bytes().decode("latin-1") for path in out.rglob("*") if path.is_file()]
    for text in (*texts, *written, *(path.name for path in out.rglob("*"))):
        assert PASSWORD not in text


@needs_rtsp
def test_rtsp_with_a_password_http_and_udp_streams_are_segmented_in_one_run(camera_model, frames, tmp_path):
    rtsp_port, http_port, udp_port = free_port(), free_port(), free_port(socket.SOCK_DGRAM)
    sources = [f"rtsp://bob:{PASSWORD}@127.0.0.1:{rtsp_port}/stream", f"http://127.0.0.1:{http_port}/live.ts",
               f"udp://127.0.0.1:{udp_port}"]
    servers = [rtsp_server(rtsp_port, frames, PASSWORD).start(),
               ffmpeg_stream(frames, sources[1]).start(),
               ffmpeg_stream(frames, f"{sources[2]}?pkt_size=1316").start()]
    out = tmp_path / "out"
    try:
        process = run_camera(camera_model, out, *(a for s in sources for a in ("--source", s)), "--max-frames", "4",
                             "--timeout-ms", "5000", "--json")
        stdout, stderr = finish(process)
    finally:
        for server in servers:
            server.kill()

    summary = json.loads((out / "summary.json").read_text())
    assert json.loads(stdout) == summary
    assert summary["frames"] == 12 and summary["reconnects"] == 0 and summary["error"] is None
    for source, kind in zip(summary["sources"], ("rtsp", "http", "udp")):
        assert source["source"].startswith(kind) and (source["frames"], source["state"]) == (4, "ended")
        lines = read_jsonl(out / source["jsonl"])
        assert len(lines) == 4 and all((line["height"], line["width"]) == FRAME_HW for line in lines)
        assert sum(len(line["detections"]) for line in lines) >= 1, kind  # the shapes are found in the stream
        assert len(video_frames(out / source["video"])) == 4
    assert summary["sources"][0]["source"] == f"rtsp://bob:***@127.0.0.1:{rtsp_port}/stream"
    assert_no_password(out, stdout, stderr)


def video_frames(path: Path) -> list[np.ndarray]:
    capture, images = cv2.VideoCapture(str(path)), []
    while (image := capture.read()[1]) is not None:
        images.append(image)
    return images


@needs_rtsp
def test_a_killed_and_restarted_rtsp_server_reconnects_in_the_same_run(camera_model, frames, tmp_path):
    port = free_port()
    url = f"rtsp://bob:{PASSWORD}@127.0.0.1:{port}/stream"
    server, out = rtsp_server(port, frames, PASSWORD).start(), tmp_path / "out"
    try:
        process = run_camera(camera_model, out, "--source", url, "--max-frames", "12", "--timeout-ms", "1000")
        jsonl = out / f"0_rtsp-127.0.0.1-{port}.jsonl"
        wait_for_lines(jsonl, 3, process)
        server.kill()
        killed = time.time()
        time.sleep(1.0)
        server.start()
        restarted = time.time()
        stdout, stderr = finish(process)
    finally:
        server.kill()

    summary = json.loads((out / "summary.json").read_text())
    (source,) = summary["sources"]
    assert source["reconnects"] >= 1 and source["frames"] == 12 and source["state"] == "ended"
    times = [line["time"] for line in read_jsonl(jsonl)]
    assert len(times) == 12 and times == sorted(times)
    assert not [t for t in times if killed + 0.2 < t < restarted]  # nothing while the server was gone
    assert [t for t in times if t > restarted]  # frames after the restart, in the same process
    assert_no_password(out, stdout, stderr)


@needs_rtsp
def test_a_stalled_rtsp_server_holds_back_neither_an_http_stream_nor_the_live_figures(camera_model, frames,
                                                                                      tmp_path):
    rtsp_port, http_port = free_port(), free_port()
    sources = [f"rtsp://bob:{PASSWORD}@127.0.0.1:{rtsp_port}/stream", f"http://127.0.0.1:{http_port}/live.ts"]
    stalled, other = rtsp_server(rtsp_port, frames, PASSWORD).start(), ffmpeg_stream(frames, sources[1]).start()
    out = tmp_path / "out"
    try:
        process = run_camera(camera_model, out, "--source", sources[0], "--source", sources[1],
                             "--timeout-ms", "1000", "--live-port", "0")
        live_url = read_live_url(process)
        rtsp_jsonl = out / f"0_rtsp-127.0.0.1-{rtsp_port}.jsonl"
        http_jsonl = out / f"1_http-127.0.0.1-{http_port}.jsonl"
        wait_for_lines(rtsp_jsonl, 2, process)
        wait_for_lines(http_jsonl, 2, process)
        stalled.stall()  # the connection stays open and silent: a read waits for its timeout
        stall_started = time.time()
        time.sleep(2.5)
        states = [s["state"] for s in fetch_json(live_url + "stats.json")["sources"]]
        stall_ended = time.time()
        stalled.resume()
        deadline = time.monotonic() + 30
        while not [line for line in read_jsonl(rtsp_jsonl) if line["time"] > stall_ended]:
            assert time.monotonic() < deadline and process.poll() is None, "the resumed server's frames never came"
            time.sleep(0.1)
        process.send_signal(signal.SIGINT)
        stdout, stderr = finish(process)
    finally:
        stalled.kill()
        other.kill()

    summary = json.loads((out / "summary.json").read_text())
    rtsp, http = summary["sources"]
    assert states[0] in ("stalled", "reconnecting") and states[1] == "live"
    in_stall = [[line["time"] for line in read_jsonl(path) if stall_started + 0.2 < line["time"] < stall_ended]
                for path in (rtsp_jsonl, http_jsonl)]
    assert not in_stall[0] and len(in_stall[1]) >= 3  # the HTTP stream went on being segmented
    assert rtsp["reconnects"] >= 1 and http["reconnects"] == 0 and summary["interrupted"] == "SIGINT"
    assert_no_password(out, stdout, stderr)


def read_live_url(process: subprocess.Popen) -> str:
    line = process.stderr.readline()
    assert line.startswith("live view: http://127.0.0.1:"), line
    return line.split(": ", 1)[1].strip()


def fetch_json(url: str) -> dict:
    with urllib.request.urlopen(url, timeout=5) as response:
        return json.loads(response.read())


def chromium(*args: str) -> subprocess.CompletedProcess:
    with tempfile.TemporaryDirectory() as profile:
        return subprocess.run([CHROMIUM, "--headless", "--no-sandbox", "--disable-gpu", "--disable-quic",
                               "--no-first-run", "--disable-background-networking", "--disable-component-update",
                               "--disable-sync", f"--user-data-dir={profile}", *args],
                              capture_output=True, text=True, timeout=60)


@needs_rtsp
@pytest.mark.skipif(CHROMIUM is None, reason="chromium is not installed (make setup installs it)")
def test_the_live_page_shows_the_stream_and_its_figures_in_headless_chromium(camera_model, frames, tmp_path):
    port = free_port()
    url = f"rtsp://bob:{PASSWORD}@127.0.0.1:{port}/stream"
    server, out = rtsp_server(port, frames, PASSWORD).start(), tmp_path / "out"
    try:
        process = run_camera(camera_model, out, "--source", url, "--live-port", "0", "--timeout-ms", "3000")
        live_url = read_live_url(process)
        wait_for_lines(out / f"0_rtsp-127.0.0.1-{port}.jsonl", 3, process)
        # the page refreshes its figures every second: wait 2.5 s (--timeout stops loading the endless stream)
        dom = chromium("--dump-dom", "--timeout=2500", live_url).stdout
        shot = tmp_path / "live.png"
        chromium("--screenshot=" + str(shot), "--window-size=800,700", "--timeout=2500", live_url)
        figures = fetch_json(live_url + "stats.json")
        with urllib.request.urlopen(live_url + "stream/0.mjpg", timeout=5) as response:
            assert response.headers["Content-Type"].startswith("multipart/x-mixed-replace")
            head = response.read(4096)
        process.send_signal(signal.SIGINT)
        stdout, stderr = finish(process)
    finally:
        server.kill()

    (source,) = figures["sources"]
    assert source["state"] == "live" and source["frames"] >= 3 and source["fps"] > 0
    assert f"rtsp://bob:***@127.0.0.1:{port}/stream" in dom
    for key in ("state", "fps", "age_ms", "frames", "dropped", "reconnects", "latency-inference"):
        assert f'id="s0-{key}"' in dom
    cell = lambda key: dom.split(f'id="s0-{key}">', 1)[1].split("<", 1)[0]  # noqa: E731
    assert cell("state") == "live" and 3 <= int(cell("frames")) <= source["frames"]
    assert float(cell("fps")) > 0 and float(cell("latency-inference")) > 0
    assert '<img id="s0-video" src="/stream/0.mjpg"' in dom
    assert b"Content-Type: image/jpeg" in head and b"\xff\xd8" in head  # a JPEG follows the part header

    # The picture: the demo frames and the drawn masks are saturated colours, the page is grey and white.
    page = cv2.imread(str(shot))
    saturation = cv2.cvtColor(page, cv2.COLOR_BGR2HSV)[..., 1]
    rows, columns = np.nonzero(saturation > 80)
    assert len(rows) > 0.5 * FRAME_HW[0] * FRAME_HW[1]  # the frame is drawn (at least its size shown)
    assert rows.min() < 150 and columns.min() < 60  # where the page puts the first source's picture

    summary = json.loads((out / "summary.json").read_text())
    assert summary["interrupted"] == "SIGINT"
    assert_no_password(out, stdout, stderr, dom, json.dumps(figures), head.decode("latin-1"))
