"""Where frames come from: `--source` parsed into a kind, and one capture thread per source.

Kinds: a video file or an image folder (every frame is delivered, the thread waits
when inference falls behind: throughput first), and live sources — a camera index,
a V4L2 device, an rtsp/http/udp URL, a GStreamer pipeline — whose thread keeps only
the newest frame (latency first: a frame the model could not take in time is
replaced and counted as dropped, so latency cannot grow with a backlog).

A live source has an explicit state: connecting (first open), live, stalled (no
frame for STALL_SECONDS, or a read failed), reconnecting (reopening with
exponential backoff), ended. Reads of URLs time out after `timeout_ms` (OpenCV's
FFmpeg default is 30 s, after which a stalled RTSP stream bursts its stale frames),
opens after the same but at least MIN_OPEN_TIMEOUT_MS: an open probes about a second
of stream, and a probe cut short by the timeout leaves a capture that says it is open
and fails every read (measured with RTSP and HTTP MPEG-TS at 25 fps: 0.9-1.0 s).
"""

from __future__ import annotations

import os
import re
import threading
import time
from collections import deque
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from segtrt import SegtrtError
from segtrt.runtime.preprocess import ImageGeometry, to_model_input
from segtrt.runtime.sources import IMAGE_SUFFIXES, image_files, read_image

# Before the first capture opens: FFmpeg's own log lines would repeat every failed reconnect on stderr.
os.environ.setdefault("OPENCV_FFMPEG_LOGLEVEL", "-8")

CONNECTING, LIVE, STALLED, RECONNECTING, ENDED = "connecting", "live", "stalled", "reconnecting", "ended"
URL_SCHEMES = ("rtsp", "rtsps", "rtmp", "http", "https", "udp", "tcp", "srt")
DEFAULT_TIMEOUT_MS = 2000
MIN_OPEN_TIMEOUT_MS = 3000
STALL_SECONDS = 2.0
BACKOFF_FIRST_S, BACKOFF_MAX_S = 0.5, 8.0
FILE_READ_AHEAD = 4  # frames a file source decodes ahead of inference

# scheme://user:password@ -> scheme://user:***@, anywhere in a text (a GStreamer pipeline holds URLs too)
_CREDENTIALS = re.compile(r"(?P<head>[A-Za-z][A-Za-z0-9+.-]*://[^/@:\s]*):[^/\s]*@")


def redact(text: str) -> str:
    """`text` with every URL password replaced by ***: what may be printed or written anywhere."""
    return _CREDENTIALS.sub(r"\g<head>:***@", text)


@dataclass(frozen=True)
class SourceSpec:
    """One `--source`. text is as given (it may hold a password: never show it); label is what people see."""

    text: str
    kind: str  # "video", "images", "camera", "url", "gstreamer"
    name: str  # unique in a run, safe as a file name
    files: tuple = ()  # the images of an "images" source

    @property
    def label(self) -> str:
        return redact(self.text)

    @property
    def live(self) -> bool:
        return self.kind in ("camera", "url", "gstreamer")


def parse_source(text: str, index: int) -> SourceSpec:
    """The SourceSpec of a `--source`; SegtrtError (one sentence) for one that cannot be used."""
    import cv2

    label = redact(text)
    scheme = text.split("://", 1)[0].lower() if "://" in text else ""
    if "!" in text:
        if not has_gstreamer():
            raise SegtrtError(
                f"source {label!r} is a GStreamer pipeline, but this OpenCV {cv2.__version__} was built without "
                "GStreamer (cv2.getBuildInformation() says so; PyPI's OpenCV has FFmpeg only, JetPack's has both): "
                "install an OpenCV with GStreamer, or give a camera index, /dev/videoN, a URL or a file"
            )
        return SourceSpec(text, "gstreamer", _name(index, "gstreamer"))
    if re.fullmatch(r"\d+", text):
        return SourceSpec(text, "camera", _name(index, f"camera{text}"))
    if text.startswith("/dev/video"):
        if not Path(text).exists():
            raise SegtrtError(f"camera device {text} does not exist (ls /dev/video* lists the cameras)")
        return SourceSpec(text, "camera", _name(index, Path(text).name))
    if scheme:
        if scheme not in URL_SCHEMES:
            raise SegtrtError(f"source {label!r}: unknown stream scheme {scheme}://; use one of "
                              f"{', '.join(s + '://' for s in URL_SCHEMES)}")
        host = re.sub(r"^[^@/]*@", "", text.split("://", 1)[1]).split("/")[0]
        return SourceSpec(text, "url", _name(index, f"{scheme}-{host}"))
    path = Path(text)
    if path.is_file() and path.suffix.lower() not in IMAGE_SUFFIXES:
        capture = cv2.VideoCapture(text, cv2.CAP_FFMPEG)
        opened = capture.isOpened()
        capture.release()
        if not opened:
            raise SegtrtError(f"cannot open video {text}; the file is corrupt or not a video OpenCV's FFmpeg reads")
        return SourceSpec(text, "video", _name(index, path.stem))
    if path.exists() or any(c in text for c in "*?["):
        files = image_files(text)  # SegtrtError for a folder without images
        return SourceSpec(text, "images", _name(index, path.stem or "images"), tuple(files))
    raise SegtrtError(f"source {label} does not exist; give a video file, an image folder, a camera index, "
                      "/dev/videoN, an rtsp/http/udp URL or a GStreamer pipeline")


def has_gstreamer() -> bool:
    import cv2

    return re.search(r"GStreamer:\s*YES", cv2.getBuildInformation()) is not None


def _name(index: int, stem: str) -> str:
    return f"{index}_{re.sub(r'[^A-Za-z0-9._-]+', '-', stem).strip('-.') or 'source'}"


@dataclass
class Frame:
    """One captured frame on its way through the pipeline."""

    source: int  # index of its source
    index: int  # its number in its source, from 0
    image: np.ndarray  # RGB uint8 [h, w, 3]
    model_input: np.ndarray  # [1, 3, H, W] float32
    geometry: ImageGeometry  # where the image lies in model_input, to map detections back
    read_started: float  # time.monotonic() when the read began
    captured: float  # time.monotonic() when the frame was there
    wall_time: float  # time.time() at capture
    capture_ms: float
    preprocess_ms: float


class FrameBuffer:
    """Frames of one source waiting for inference.

    Every source's buffer shares one condition, so the inference thread waits for
    any source at once. A live source's buffer holds one frame and replaces it
    (counting the replaced one as dropped); a file's holds a few and makes the
    capture thread wait.
    """

    def __init__(self, condition: threading.Condition, live: bool):
        self.condition = condition
        self.live = live
        self.capacity = 1 if live else FILE_READ_AHEAD
        self.frames: deque[Frame] = deque()
        self.dropped = 0
        self.closed = False

    def put(self, frame: Frame, stopping) -> None:
        """Add a frame; a file's waits for room until stopping() says the source is stopped."""
        with self.condition:
            while len(self.frames) >= self.capacity and not stopping():
                if self.live:
                    self.frames.popleft()
                    self.dropped += 1
                else:
                    self.condition.wait(0.1)
            if not stopping():
                self.frames.append(frame)
                self.condition.notify_all()

    def take(self) -> Frame | None:
        """The oldest waiting frame or None; the caller holds the condition."""
        if not self.frames:
            return None
        self.condition.notify_all()  # a file's capture thread may wait for room
        return self.frames.popleft()

    def close(self) -> None:
        with self.condition:
            self.closed = True
            self.condition.notify_all()


class Capture(threading.Thread):
    """The capture thread of one source: reads, validates and letterboxes frames into its FrameBuffer.

    Counters (read by other threads, written only here): frames (delivered),
    corrupt (empty or undecodable frames, skipped), reconnects (reopened after a
    loss), open_failures. `error` is the sentence that ended a source early.
    """

    def __init__(self, spec: SourceSpec, index: int, preprocess, buffer: FrameBuffer, stop: threading.Event,
                 timeout_ms: int = DEFAULT_TIMEOUT_MS):
        super().__init__(name=f"capture-{spec.name}", daemon=True)  # a read blocked in FFmpeg must not hold exit
        self.spec, self.source_index, self.preprocess, self.buffer = spec, index, preprocess, buffer
        self.stop_event = threading.Event()
        self.run_stop = stop
        self.timeout_ms = timeout_ms
        self.state = CONNECTING
        self.frames = self.corrupt = self.reconnects = self.open_failures = 0
        self.fps = None  # the source's own frame rate, where it says
        self.error = None
        self.last_frame_at = time.monotonic()
        self.video = None

    def open_video(self) -> None:
        """Open a video file now, in the calling thread. OpenCV's FFmpeg backend opens one capture at a
        time (a global lock): a file opened while a stream's open waits for its timeout would wait too."""
        self.video = self._open()

    def stop(self) -> None:
        self.stop_event.set()

    def stopping(self) -> bool:
        return self.stop_event.is_set() or self.run_stop.is_set()

    def current_state(self) -> str:
        """The state, with a live source that has sent nothing for STALL_SECONDS shown as stalled
        (a UDP read blocks until the sender returns, so the thread cannot say so itself)."""
        if self.state == LIVE and time.monotonic() - self.last_frame_at > STALL_SECONDS:
            return STALLED
        return self.state

    def run(self) -> None:
        try:
            if self.spec.kind == "images":
                self._run_images()
            elif self.spec.live:
                self._run_live()
            else:
                capture = self.video or self._open()
                self.state = LIVE
                self._read_until_failure(capture)
                capture.release()
        except Exception as error:  # noqa: BLE001  (a dead thread would leave its source silently frozen)
            self.error = redact(f"{type(error).__name__}: {error}")
        finally:
            self.state = ENDED
            self.buffer.close()

    def _run_images(self) -> None:
        self.state = LIVE
        for path in self.spec.files:
            if self.stopping():
                return
            started = time.monotonic()
            try:
                image = read_image(path)
            except SegtrtError:
                self.corrupt += 1
                continue
            self._deliver(image, started)

    def _run_live(self) -> None:
        backoff = BACKOFF_FIRST_S
        while not self.stopping():
            capture = self._open()
            if not capture.isOpened():
                capture.release()
                self.open_failures += 1
                self.stop_event.wait(backoff)
                backoff = min(2 * backoff, BACKOFF_MAX_S)
                continue
            if self.state == RECONNECTING:
                self.reconnects += 1
            self.state, self.last_frame_at = LIVE, time.monotonic()
            if self._read_until_failure(capture):
                backoff = BACKOFF_FIRST_S
            capture.release()
            if not self.stopping():
                self.state = RECONNECTING

    def _open(self):
        import cv2

        cv2.utils.logging.setLogLevel(cv2.utils.logging.LOG_LEVEL_ERROR)  # a warning per failed reconnect

        kind, text = self.spec.kind, self.spec.text
        if kind == "gstreamer":
            capture = cv2.VideoCapture(text, cv2.CAP_GSTREAMER)
        elif kind == "camera":
            capture = cv2.VideoCapture(int(text) if text.isdigit() else text)
        elif kind == "url":
            capture = cv2.VideoCapture(text, cv2.CAP_FFMPEG, [
                cv2.CAP_PROP_OPEN_TIMEOUT_MSEC, max(self.timeout_ms, MIN_OPEN_TIMEOUT_MS),
                cv2.CAP_PROP_READ_TIMEOUT_MSEC, self.timeout_ms])
        else:
            capture = cv2.VideoCapture(text, cv2.CAP_FFMPEG)
            if not capture.isOpened():
                raise SegtrtError(f"cannot open video {text}")
        fps = capture.get(cv2.CAP_PROP_FPS) if capture.isOpened() else 0.0
        if 0 < fps < 1000:
            self.fps = fps
        return capture

    def _read_until_failure(self, capture) -> bool:
        """Deliver frames until a read fails or the source is stopped; True when a frame came."""
        delivered = False
        while not self.stopping():
            started = time.monotonic()
            ok, image = capture.read()
            if not ok:
                return delivered
            if image is None or image.ndim != 3 or image.shape[2] != 3 or image.size == 0:
                self.corrupt += 1
                continue
            self._deliver(image[..., ::-1], started)
            delivered = True
        return delivered

    def _deliver(self, image: np.ndarray, started: float) -> None:
        captured = time.monotonic()
        self.last_frame_at = captured
        image = np.ascontiguousarray(image)
        model_input, geometries = to_model_input([image], self.preprocess)
        frame = Frame(self.source_index, self.frames, image, model_input, geometries[0], started, captured, time.time(),
                      1000 * (captured - started), 1000 * (time.monotonic() - captured))
        self.frames += 1
        self.buffer.put(frame, self.stopping)
