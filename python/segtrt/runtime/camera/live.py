"""What a person watches: the FPS overlay drawn on every frame, the newest annotated frame of each source,
and the live view on localhost for headless machines (`segtrt run --live-port PORT`).

The live view is the standard library's HTTP server in daemon threads, bound to 127.0.0.1 only:

    /                  the page: one MJPEG picture per source, and per source its state, FPS, frame age,
                       frames, dropped, corrupt, reconnects and stage latencies (refreshed every second)
    /stats.json        the same figures for machines
    /stream/<n>.mjpg   source n's annotated frames as multipart/x-mixed-replace JPEG (MJPEG)
    /snapshot/<n>.jpg  source n's newest annotated frame

Bounded: at most MAX_CLIENTS connections at a time (others get 503), each stream sends only the newest
frame (a slow client skips frames, it never queues them), a frame is JPEG-encoded once whoever asks.
Only redacted source labels reach the page: a URL's password never does.
"""

from __future__ import annotations

import html
import json
import re
import threading
from http import HTTPStatus
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

import numpy as np

from segtrt import SegtrtError

JPEG_QUALITY = 80
MAX_CLIENTS = 8
FRAME_WAIT_S = 1.0  # a stream re-checks for a stop this often while its source sends nothing
BOUNDARY = "segtrtframe"
OVERLAY_HEIGHT_FRACTION = 0.1  # the status strip's height, of the frame's; at least 12 px


def draw_status(image: np.ndarray, text: str) -> np.ndarray:
    """Image [h, w, 3] (any channel order) with `text` in white on a dark strip across its top, in place."""
    import cv2

    strip = status_strip_height(image.shape[0])
    image[:strip] = image[:strip] // 4
    scale = cv2.getFontScaleFromHeight(cv2.FONT_HERSHEY_SIMPLEX, strip - 4)
    cv2.putText(image, text, (2, strip - 3), cv2.FONT_HERSHEY_SIMPLEX, scale, (255, 255, 255), 1, cv2.LINE_AA)
    return image


def status_strip_height(frame_height: int) -> int:
    """Rows at the top of a frame that the status overlay covers."""
    return max(12, round(frame_height * OVERLAY_HEIGHT_FRACTION))


def status_text(fps: float, age_ms: float | None) -> str:
    """The overlay's words: the source's FPS and the frame's age (capture to inference)."""
    return f"{fps:.1f} fps" + (f"  age {age_ms:.0f} ms" if age_ms is not None else "")


class LatestFrames:
    """The newest annotated frame (BGR uint8 [h, w, 3]) of each source, with a version that counts them.

    Written by the output thread, read by the window, the snapshots key and the live view's streams;
    the JPEG of a version is encoded once, by its first reader.
    """

    def __init__(self, sources: int):
        self.condition = threading.Condition()
        self.images: list[np.ndarray | None] = [None] * sources
        self.versions = [0] * sources
        self.frame_indices = [-1] * sources
        self.jpegs: list[tuple[int, bytes] | None] = [None] * sources

    def put(self, source: int, image: np.ndarray, frame_index: int) -> None:
        with self.condition:
            self.images[source], self.frame_indices[source] = image, frame_index
            self.versions[source] += 1
            self.condition.notify_all()

    def image(self, source: int) -> tuple[int, np.ndarray | None, int]:
        """(version, image or None, its frame number in its source)."""
        with self.condition:
            return self.versions[source], self.images[source], self.frame_indices[source]

    def jpeg(self, source: int, newer_than: int = -1, timeout: float = 0.0) -> tuple[int, bytes | None]:
        """(version, JPEG bytes) of the newest frame, waiting up to `timeout` s for one newer than
        `newer_than`; (version, None) when there is none."""
        import cv2

        with self.condition:
            self.condition.wait_for(lambda: self.versions[source] > newer_than, timeout)
            version, image, cached = self.versions[source], self.images[source], self.jpegs[source]
        if image is None or version <= newer_than:
            return version, None
        if cached is not None and cached[0] == version:
            return cached
        ok, encoded = cv2.imencode(".jpg", image, [cv2.IMWRITE_JPEG_QUALITY, JPEG_QUALITY])
        if not ok:
            return version, None
        self.jpegs[source] = cached = (version, encoded.tobytes())
        return cached


class LiveServer:
    """The live view on http://127.0.0.1:PORT/ (port 0: any free one; `url` says which).

    The port is taken at construction, so a busy one fails before the run starts; start(latest, figures)
    serves `latest` and what figures() returns (see Pipeline.live_figures).
    """

    def __init__(self, port: int, host: str = "127.0.0.1"):
        self.latest: LatestFrames | None = None
        self.figures = None
        self.stopping = threading.Event()
        self.clients = threading.BoundedSemaphore(MAX_CLIENTS)
        handler = type("Handler", (_Handler,), {"live": self})
        try:
            self.server = ThreadingHTTPServer((host, port), handler)
        except OSError as error:
            raise SegtrtError(f"--live-port {port}: cannot listen on {host}:{port} ({error.strerror})") from None
        self.server.daemon_threads = True  # a browser that keeps a stream open must not hold the exit
        self.url = f"http://{host}:{self.server.server_address[1]}/"
        self.thread = threading.Thread(target=self.server.serve_forever, kwargs={"poll_interval": 0.2},
                                       name="live-view", daemon=True)

    def start(self, latest: LatestFrames, figures) -> None:
        self.latest, self.figures = latest, figures
        self.thread.start()

    def stop(self) -> None:
        self.stopping.set()
        if self.thread.is_alive():
            with self.latest.condition:
                self.latest.condition.notify_all()
            self.server.shutdown()
        self.server.server_close()


def has_gui() -> bool:
    """Whether this OpenCV can open windows (cv2.imshow)."""
    import cv2

    return re.search(r"GUI:\s*NONE", cv2.getBuildInformation()) is None


class Window:
    """One OpenCV window per source, showing its newest drawn frame; refreshed from the main thread (GUI
    toolkits want one thread). Keys: q or Esc stops the run, s writes a snapshot of every source."""

    def __init__(self, latest: LatestFrames, titles: list[str], snapshot):
        self.latest, self.titles, self.snapshot = latest, titles, snapshot
        self.shown = [0] * len(titles)

    @staticmethod
    def check() -> None:
        """SegtrtError (one sentence) where no window can open: an OpenCV without a GUI, or no display."""
        import os
        import sys

        import cv2

        if not has_gui():
            raise SegtrtError(f"--show needs an OpenCV with a GUI, and this OpenCV {cv2.__version__} has none "
                              "(PyPI's opencv-python-headless never has): watch with --live-port PORT instead, or "
                              "install an OpenCV with a GUI (opencv-python, or JetPack's)")
        if sys.platform.startswith("linux") and not (os.environ.get("DISPLAY") or os.environ.get("WAYLAND_DISPLAY")):
            raise SegtrtError("--show needs a display and this session has none (DISPLAY is not set): "
                              "watch with --live-port PORT instead")

    def refresh(self, wait_ms: int) -> str | None:
        """Show what is new, handle keys for up to wait_ms; "q" when the user asked to stop."""
        import cv2

        for source, title in enumerate(self.titles):
            version, image, _ = self.latest.image(source)
            if image is not None and version != self.shown[source]:
                cv2.imshow(title, image)
                self.shown[source] = version
        key = cv2.waitKey(wait_ms) & 0xFF
        if key in (ord("q"), 27):
            return "q"
        if key == ord("s"):
            for source in range(len(self.titles)):
                self.snapshot(source)
        return None

    def close(self) -> None:
        import cv2

        cv2.destroyAllWindows()


class _Handler(BaseHTTPRequestHandler):
    live: LiveServer
    protocol_version = "HTTP/1.0"  # one request per connection: nothing to keep alive between figures

    def log_message(self, format, *args):  # noqa: A002  (the base class's name) -- no access log on stderr
        pass

    def do_GET(self):  # noqa: N802  (the base class's name)
        if not self.live.clients.acquire(blocking=False):
            self._send(HTTPStatus.SERVICE_UNAVAILABLE, "text/plain", b"too many viewers\n")
            return
        try:
            self._route(self.path.split("?", 1)[0])
        except OSError:  # the viewer went away (broken pipe, reset): nothing to tell anyone
            pass
        finally:
            self.live.clients.release()

    def _route(self, path: str) -> None:
        figures = self.live.figures()
        count = len(figures["sources"])
        if path in ("/", "/index.html"):
            self._send(HTTPStatus.OK, "text/html; charset=utf-8", page(figures).encode())
        elif path == "/stats.json":
            self._send(HTTPStatus.OK, "application/json", json.dumps(figures).encode())
        elif (match := re.fullmatch(r"/(stream|snapshot)/(\d+)\.(mjpg|jpg)", path)) and int(match[2]) < count:
            if match[1] == "stream":
                self._stream(int(match[2]))
            else:
                _, jpeg = self.live.latest.jpeg(int(match[2]))
                if jpeg is None:
                    self._send(HTTPStatus.SERVICE_UNAVAILABLE, "text/plain", b"no frame yet\n")
                else:
                    self._send(HTTPStatus.OK, "image/jpeg", jpeg)
        else:
            self._send(HTTPStatus.NOT_FOUND, "text/plain", b"not found\n")

    def _send(self, status: HTTPStatus, content_type: str, body: bytes) -> None:
        self.send_response(status)
        self.send_header("Content-Type", content_type)
        self.send_header("Content-Length", str(len(body)))
        self.send_header("Cache-Control", "no-store")
        self.end_headers()
        self.wfile.write(body)

    def _stream(self, source: int) -> None:
        self.send_response(HTTPStatus.OK)
        self.send_header("Content-Type", f"multipart/x-mixed-replace; boundary={BOUNDARY}")
        self.send_header("Cache-Control", "no-store")
        self.end_headers()
        version = -1
        while not self.live.stopping.is_set():
            newest, jpeg = self.live.latest.jpeg(source, version, FRAME_WAIT_S)
            if jpeg is None:
                continue
            version = newest
            self.wfile.write(f"--{BOUNDARY}\r\nContent-Type: image/jpeg\r\nContent-Length: {len(jpeg)}\r\n\r\n"
                             .encode() + jpeg + b"\r\n")
            self.wfile.flush()


FIGURE_COLUMNS = (("state", "state"), ("fps", "FPS"), ("age_ms", "frame age ms"), ("frames", "frames"),
                  ("dropped", "dropped"), ("corrupt", "corrupt"), ("reconnects", "reconnects"))


def page(figures: dict) -> str:
    """The live page, its figures filled in (a browser without scripts still sees them once)."""
    cards = []
    for index, source in enumerate(figures["sources"]):
        cells = "".join(f'<tr><th>{title}</th><td id="s{index}-{key}">{html.escape(str(source[key]))}</td></tr>'
                        for key, title in FIGURE_COLUMNS)
        stages = "".join(f'<tr><th>{stage} p50</th><td id="s{index}-latency-{stage}">{value}</td></tr>'
                         for stage, value in source["latency_p50_ms"].items())
        cards.append(f'<section><h2>{html.escape(source["source"])}</h2>'
                     f'<img id="s{index}-video" src="/stream/{index}.mjpg" alt="{html.escape(source["name"])}">'
                     f"<table>{cells}{stages}</table></section>")
    return f"""<!doctype html>
<html><head><meta charset="utf-8"><title>segtrt run: live</title>
<style>
body {{ font: 14px sans-serif; background: #f4f4f4; color: #222; margin: 12px; }}
section {{ display: inline-block; vertical-align: top; margin: 0 12px 12px 0; padding: 8px; background: #fff; }}
h2 {{ font-size: 14px; margin: 0 0 6px; }}
img {{ display: block; width: 480px; max-width: 100%; min-height: 120px; background: #ddd; }}
th {{ text-align: left; font-weight: normal; color: #666; padding-right: 12px; }}
</style></head>
<body><h1 style="font-size:16px">segtrt run: {html.escape(figures["model"])},
<span id="frames">{figures["frames"]}</span> frames</h1>
{"".join(cards)}
<script>
async function refresh() {{
  try {{
    const figures = await (await fetch("/stats.json", {{cache: "no-store"}})).json();
    document.getElementById("frames").textContent = figures.frames;
    figures.sources.forEach((source, index) => {{
      for (const key of {json.dumps([key for key, _ in FIGURE_COLUMNS])})
        document.getElementById(`s${{index}}-${{key}}`).textContent = source[key];
      for (const [stage, value] of Object.entries(source.latency_p50_ms))
        document.getElementById(`s${{index}}-latency-${{stage}}`).textContent = value;
    }});
  }} catch (error) {{ document.getElementById("frames").textContent = "(run ended)"; }}
}}
setInterval(refresh, 1000);
</script></body></html>
"""
