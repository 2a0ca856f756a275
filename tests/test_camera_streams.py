"""`segtrt run` on real stream servers, all on 127.0.0.1: Debian's GStreamer RTSP server
(tests/streams/rtsp_server.py, under the system python3) and ffmpeg serving HTTP MPEG-TS and sending UDP
MPEG-TS. Streams are segmented; a killed and restarted server reconnects within the same run; a stalled
server holds back no other source; the live page renders in headless Chromium with the stream and the
figures; a stream password appears in no output, log or page."""

import json
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

from segtrt.runtime.camera.bench import STREAM_FPS, ffmpeg_stream, free_port, stop_process

ROOT = Path(__file__).parents[1]
RUN_CAMERA = ROOT / "python" / "run_camera.py"
RTSP_SERVER = ROOT / "tests" / "streams" / "rtsp_server.py"
SYSTEM_PYTHON = "/usr/bin/python3"
CHROMIUM = shutil.which("chromium")
FRAME_HW = (128, 160)
PASSWORD = "s3cretPW"

pytestmark = pytest.mark.skipif(shutil.which("ffmpeg") is None,
                                reason="ffmpeg is not installed (make setup installs it)")


def has_rtsp_server() -> bool:
    probe = ("import gi; gi.require_version('GstRtspServer', '1.0'); from gi.repository import GstRtspServer;"
             "from gi.repository import Gst; Gst.init(None); assert Gst.ElementFactory.find('rtpjpegpay')")
    return Path(SYSTEM_PYTHON).exists() and subprocess.run([SYSTEM_PYTHON, "-c", probe],
                                                           capture_output=True).returncode == 0


needs_rtsp = pytest.mark.skipif(not has_rtsp_server(), reason="GStreamer's RTSP server is not installed (make "
                                "setup installs python3-gi, gir1.2-gst-rtsp-server-1.0, gstreamer1.0-plugins-good)")


@pytest.fixture(scope="module")
def frames(tmp_path_factory) -> Path:
    """The demo video (shapes panning) at the stream rate, demo.mp4, which ffmpeg streams, and its 20 frames
    as 000000.jpg..., which the RTSP server streams; both in a loop. The model is slower than the stream."""
    from segtrt.data.synth import write_demo_video

    folder = tmp_path_factory.mktemp("frames")
    capture = cv2.VideoCapture(str(write_demo_video(folder / "demo.mp4", 20, FRAME_HW, fps=STREAM_FPS)))
    for index in range(20):
        ok, image = capture.read()
        assert ok
        cv2.imwrite(str(folder / f"{index:06d}.jpg"), image)
    return folder


class RtspServer:
    """tests/streams/rtsp_server.py behind a password on a free port: started, killed, stalled (SIGSTOP) and
    resumed by a test. url holds the password."""

    def __init__(self, frames: Path):
        self.frames, self.port = frames, free_port()
        self.url = f"rtsp://bob:{PASSWORD}@127.0.0.1:{self.port}/stream"
        self.process = None

    def start(self) -> None:
        self.process = subprocess.Popen([SYSTEM_PYTHON, str(RTSP_SERVER), "--port", str(self.port), "--frames",
                                         str(self.frames), "--fps", str(STREAM_FPS), "--user", "bob", "--password",
                                         PASSWORD], stdin=subprocess.DEVNULL, stdout=subprocess.PIPE,
                                        stderr=subprocess.DEVNULL, text=True)
        line = self.process.stdout.readline()
        assert line.strip() == "ready", f"the RTSP server did not start: {line!r}"

    def kill(self) -> None:
        self.process.send_signal(signal.SIGCONT)  # a stalled one too
        stop_process(self.process)

    def stall(self) -> None:
        self.process.send_signal(signal.SIGSTOP)

    def resume(self) -> None:
        self.process.send_signal(signal.SIGCONT)


@pytest.fixture
def rtsp(frames):
    server = RtspServer(frames)
    server.start()
    yield server
    server.kill()


@pytest.fixture
def ffmpeg(frames):
    """start(url) starts ffmpeg streaming the demo video to url; each is stopped after the test."""
    processes = []
    yield lambda url: processes.append(ffmpeg_stream(frames / "demo.mp4", url))
    for process in processes:
        stop_process(process)


@pytest.fixture
def run_camera(camera_model):
    """start(out, *args) starts python/run_camera.py on the camera model; one still running after the test
    (a failed one) is killed."""
    processes = []

    def start(out: Path, *args: str) -> subprocess.Popen:
        processes.append(subprocess.Popen([sys.executable, str(RUN_CAMERA), "--model", str(camera_model), "--out",
                                           str(out), *args], stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True))
        return processes[-1]

    yield start
    for process in processes:
        if process.poll() is None:
            process.kill()
            process.communicate()


def read_jsonl(path: Path) -> list[dict]:
    return [json.loads(line) for line in path.read_text().splitlines()] if path.exists() else []


def wait_for_lines(path: Path, count: int, process: subprocess.Popen, seconds: float = 60) -> None:
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
def test_rtsp_with_a_password_http_and_udp_streams_are_segmented_in_one_run(run_camera, rtsp, ffmpeg, tmp_path):
    sources = [rtsp.url, f"http://127.0.0.1:{free_port()}/live.ts", f"udp://127.0.0.1:{free_port(socket.SOCK_DGRAM)}"]
    ffmpeg(sources[1])
    ffmpeg(sources[2])
    out = tmp_path / "out"
    process = run_camera(out, *(a for s in sources for a in ("--source", s)), "--max-frames", "4",
                         "--timeout-ms", "5000", "--json")
    stdout, stderr = finish(process)

    summary = json.loads((out / "summary.json").read_text())
    assert json.loads(stdout) == summary
    assert summary["frames"] == 12 and summary["reconnects"] == 0 and summary["error"] is None
    for source, kind in zip(summary["sources"], ("rtsp", "http", "udp")):
        assert source["source"].startswith(kind) and (source["frames"], source["state"]) == (4, "ended")
        lines = read_jsonl(out / source["jsonl"])
        assert len(lines) == 4 and all((line["height"], line["width"]) == FRAME_HW for line in lines)
        assert sum(len(line["detections"]) for line in lines) >= 1, kind  # the shapes are found in the stream
        assert len(video_frames(out / source["video"])) == 4
    assert summary["sources"][0]["source"] == f"rtsp://bob:***@127.0.0.1:{rtsp.port}/stream"
    assert_no_password(out, stdout, stderr)


def video_frames(path: Path) -> list[np.ndarray]:
    capture, images = cv2.VideoCapture(str(path)), []
    while (image := capture.read()[1]) is not None:
        images.append(image)
    return images


@needs_rtsp
def test_a_killed_and_restarted_rtsp_server_reconnects_in_the_same_run(run_camera, rtsp, tmp_path):
    out = tmp_path / "out"
    process = run_camera(out, "--source", rtsp.url, "--max-frames", "12", "--timeout-ms", "1000")
    jsonl = out / f"0_rtsp-127.0.0.1-{rtsp.port}.jsonl"
    wait_for_lines(jsonl, 3, process)
    rtsp.kill()
    killed = time.time()
    time.sleep(1.0)
    rtsp.start()
    restarted = time.time()
    stdout, stderr = finish(process)

    summary = json.loads((out / "summary.json").read_text())
    (source,) = summary["sources"]
    assert source["reconnects"] >= 1 and source["frames"] == 12 and source["state"] == "ended"
    times = [line["time"] for line in read_jsonl(jsonl)]
    assert len(times) == 12 and times == sorted(times)
    assert not [t for t in times if killed + 0.2 < t < restarted]  # nothing while the server was gone
    assert [t for t in times if t > restarted]  # frames after the restart, in the same process
    assert_no_password(out, stdout, stderr)


@needs_rtsp
def test_a_stalled_rtsp_server_holds_back_neither_an_http_stream_nor_the_live_figures(run_camera, rtsp, ffmpeg,
                                                                                      tmp_path):
    http_url, out = f"http://127.0.0.1:{free_port()}/live.ts", tmp_path / "out"
    ffmpeg(http_url)
    process = run_camera(out, "--source", rtsp.url, "--source", http_url, "--timeout-ms", "1000",
                         "--live-port", "0")
    live_url = read_live_url(process)
    rtsp_jsonl = out / f"0_rtsp-127.0.0.1-{rtsp.port}.jsonl"
    http_jsonl = out / f"1_http-{http_url.split('/')[2].replace(':', '-')}.jsonl"
    wait_for_lines(rtsp_jsonl, 2, process)
    wait_for_lines(http_jsonl, 2, process)
    rtsp.stall()  # the connection stays open and silent: a read waits for its timeout
    stall_started = time.time()
    time.sleep(3.0)
    states = [s["state"] for s in fetch_json(live_url + "stats.json")["sources"]]
    stall_ended = time.time()
    rtsp.resume()
    deadline = time.monotonic() + 30
    while not [line for line in read_jsonl(rtsp_jsonl) if line["time"] > stall_ended]:
        assert time.monotonic() < deadline and process.poll() is None, "the resumed server's frames never came"
        time.sleep(0.1)
    process.send_signal(signal.SIGINT)
    stdout, stderr = finish(process)

    summary = json.loads((out / "summary.json").read_text())
    rtsp_summary, http_summary = summary["sources"]
    assert states[0] in ("stalled", "reconnecting") and states[1] == "live"
    in_stall = [[line["time"] for line in read_jsonl(path) if stall_started + 0.2 < line["time"] < stall_ended]
                for path in (rtsp_jsonl, http_jsonl)]
    assert not in_stall[0] and len(in_stall[1]) >= 2  # the HTTP stream went on being segmented
    assert rtsp_summary["reconnects"] >= 1 and http_summary["reconnects"] == 0
    assert summary["interrupted"] == "SIGINT"
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
def test_the_live_page_shows_the_stream_and_its_figures_in_headless_chromium(run_camera, rtsp, tmp_path):
    out = tmp_path / "out"
    process = run_camera(out, "--source", rtsp.url, "--live-port", "0", "--timeout-ms", "3000")
    live_url = read_live_url(process)
    wait_for_lines(out / f"0_rtsp-127.0.0.1-{rtsp.port}.jsonl", 3, process)
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

    (source,) = figures["sources"]
    assert source["state"] == "live" and source["frames"] >= 3 and source["fps"] > 0
    assert f"rtsp://bob:***@127.0.0.1:{rtsp.port}/stream" in dom
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
    (source,) = summary["sources"]
    lines = read_jsonl(out / source["jsonl"])  # each line whole JSON after the SIGINT
    assert summary["interrupted"] == "SIGINT" and len(lines) == source["frames"] >= 3
    assert len(video_frames(out / source["video"])) == len(lines)  # the video was closed: it plays to the end
    assert_no_password(out, stdout, stderr, dom, json.dumps(figures), head.decode("latin-1"))
