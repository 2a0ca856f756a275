"""The pipelined run: capture threads -> one inference thread -> one output thread, bounded queues between.

    capture (one per source)  letterbox each frame     FrameBuffer (1 frame live, a few for files)
    inference                 batches frames of several sources up to the backend's batch, waiting at
                              most batch_timeout for a batch to fill, so a slow source never holds one
    output                    masks pasted at the original size, drawn with the source's FPS, written: video,
                              JSON Lines, snapshots; the newest drawn frame of each source kept for the window
                              and the live view (segtrt.runtime.camera.live)

Every stage is the runtime's own (to_model_input, run_batch, to_predictions,
draw_instances, coco_results): the camera cannot segment differently from
`segtrt predict`. The output queue is bounded, so a slow disk slows inference
instead of filling memory.
"""

from __future__ import annotations

import json
import queue
import threading
import time
from pathlib import Path

import numpy as np

from segtrt import SegtrtError
from segtrt.runtime.camera.live import LatestFrames, draw_status, status_text
from segtrt.runtime.camera.sources import ENDED, Capture, FrameBuffer, SourceSpec
from segtrt.runtime.camera.stats import SourceStats, latency_table

OUTPUT_QUEUE = 2  # batches segmented but not yet written
DEFAULT_VIDEO_FPS = 10.0  # image folders, and streams that do not say their rate
JPEG_QUALITY = 90


def scoring_detections(outputs: dict, row: int, threshold: float) -> dict:
    """Row `row` of a batch's contract outputs (num_detections [B], the others [B, D, ...]) as a batch of one,
    with only the detections scoring at least `threshold`: masks are pasted for those alone (the model
    gives up to D, mostly low-scored; pasting all of them to drop them after cost more than the drawing)."""
    count = int(outputs["num_detections"][row])
    keep = np.flatnonzero(outputs["scores"][row, :count] >= threshold)
    rows = {name: value[row:row + 1, keep] for name, value in outputs.items() if name != "num_detections"}
    rows["num_detections"] = np.array([len(keep)], outputs["num_detections"].dtype)
    return rows


class SourceOutput:
    """One source's annotated video and JSON Lines (a line per segmented frame, flushed as written:
    an interrupted run leaves only complete lines)."""

    def __init__(self, out: Path, spec: SourceSpec, class_names):
        self.out, self.spec, self.class_names = out, spec, class_names
        self.jsonl_path = out / f"{spec.name}.jsonl"
        self.jsonl = open(self.jsonl_path, "w", encoding="utf-8")
        self.video_path = None
        self.writer = None
        self.size = None

    def draw(self, frame, instances: dict) -> np.ndarray:
        """The frame with its instances drawn, BGR uint8 [h, w, 3] (what OpenCV writes and shows)."""
        import cv2

        from segtrt.runtime.draw import draw_instances

        return cv2.cvtColor(draw_instances(frame.image, instances, self.class_names), cv2.COLOR_RGB2BGR)

    def write(self, frame, drawn: np.ndarray, instances: dict, fps: float | None) -> None:
        """Append the drawn frame to the video and the frame's detections to the JSON Lines."""
        import cv2

        from segtrt.runtime.predict import coco_results

        if self.writer is None:
            self._open_video(drawn.shape[1], drawn.shape[0], fps or DEFAULT_VIDEO_FPS)
        if (drawn.shape[1], drawn.shape[0]) != self.size:  # a stream that came back at another resolution
            drawn = cv2.resize(drawn, self.size, interpolation=cv2.INTER_AREA)
        self.writer.write(drawn)
        line = {"source": self.spec.label, "frame": frame.index, "time": round(frame.wall_time, 3),
                "height": frame.image.shape[0], "width": frame.image.shape[1],
                "detections": coco_results(instances, frame.index, self.spec.name)}
        self.jsonl.write(json.dumps(line) + "\n")
        self.jsonl.flush()

    def _open_video(self, width: int, height: int, fps: float) -> None:
        import cv2

        # OpenCV's own MJPEG writer, not FFmpeg's: FFmpeg's backend opens one capture or writer at a time,
        # so a writer would wait for any stream whose open is waiting for its timeout.
        path = self.out / f"{self.spec.name}.avi"
        writer = cv2.VideoWriter(str(path), cv2.CAP_OPENCV_MJPEG, cv2.VideoWriter_fourcc(*"MJPG"), fps,
                                 (width, height))
        if not writer.isOpened():
            raise SegtrtError(f"cannot write video {path}")
        writer.set(cv2.VIDEOWRITER_PROP_QUALITY, JPEG_QUALITY)
        self.writer, self.video_path, self.size = writer, path, (width, height)

    def close(self) -> None:
        if self.writer is not None:
            self.writer.release()  # writes the index: without it the video does not play
        self.jsonl.close()


class Pipeline:
    """A run over several sources. start(), then wait until done() or call stop(); then close() and summary()."""

    def __init__(self, backend, specs: list[SourceSpec], out: Path, threshold: float, batch_size: int,
                 batch_timeout_s: float, max_frames: int | None, timeout_ms: int, snapshot_every: int | None = None):
        self.backend, self.specs, self.out = backend, specs, out
        self.threshold, self.batch_size, self.batch_timeout_s = threshold, batch_size, batch_timeout_s
        self.max_frames, self.snapshot_every = max_frames, snapshot_every
        self.latest = LatestFrames(len(specs))
        self.snapshots = 0
        self.stop_event = threading.Event()
        condition = threading.Condition()
        self.condition = condition
        self.buffers = [FrameBuffer(condition, spec.live) for spec in specs]
        self.captures = [Capture(spec, index, backend.info.preprocess, buffer, self.stop_event, timeout_ms)
                         for index, (spec, buffer) in enumerate(zip(specs, self.buffers))]
        self.taken = [0] * len(specs)  # frames each source gave to inference
        self._next_source = 0
        self.stats = [SourceStats() for _ in specs]
        out.mkdir(parents=True, exist_ok=True)
        self.outputs = [SourceOutput(out, spec, backend.info.class_names) for spec in specs]
        self.results: queue.Queue = queue.Queue(maxsize=OUTPUT_QUEUE)
        self.inference = threading.Thread(target=self._infer, name="inference", daemon=True)
        self.writer = threading.Thread(target=self._write, name="output", daemon=True)
        self.started = self.finished = None
        self.stopped_states = None
        self.failure = None  # the error that stopped the inference or output thread

    def start(self) -> None:
        for capture in self.captures:
            if capture.spec.kind == "video":
                capture.open_video()
        self.started = time.monotonic()
        for thread in (*self.captures, self.inference, self.writer):
            thread.start()

    def stop(self) -> None:
        if self.stopped_states is None:  # what the summary reports: each source as the run left it
            self.stopped_states = self.states()
        self.stop_event.set()
        with self.condition:
            self.condition.notify_all()

    def done(self) -> bool:
        return not self.writer.is_alive()

    def close(self) -> None:
        """Stop, let the output thread write what inference already made, release every writer."""
        self.stop()
        self.writer.join()
        self.finished = time.monotonic()
        for output in self.outputs:
            output.close()
        for capture in self.captures:
            capture.join(timeout=0.2)  # one blocked in FFmpeg's read ends with the process

    def _wanted(self, source: int) -> bool:
        return self.max_frames is None or self.taken[source] < self.max_frames

    def _collect(self) -> list | None:
        """The next batch: frames of every source in turn, waiting at most batch_timeout_s once one is in.
        None when the run is over (stopped, or every source ended or reached --max-frames)."""
        batch, deadline = [], None
        with self.condition:
            while not self.stop_event.is_set():
                for offset in range(len(self.buffers)):
                    source = (self._next_source + offset) % len(self.buffers)
                    if len(batch) < self.batch_size and self._wanted(source):
                        frame = self.buffers[source].take()
                        if frame is not None:
                            batch.append(frame)
                            self.taken[source] += 1
                            if not self._wanted(source):
                                self.captures[source].stop()
                self._next_source = (self._next_source + 1) % len(self.buffers)  # no source always first
                open_sources = [i for i, b in enumerate(self.buffers)
                                if self._wanted(i) and (b.frames or not b.closed)]
                if len(batch) == self.batch_size or not open_sources:
                    return batch or None
                now = time.monotonic()
                if batch:
                    deadline = deadline or now + self.batch_timeout_s
                    if now >= deadline:
                        return batch
                    self.condition.wait(deadline - now)
                elif not any(self.buffers[i].frames for i in open_sources):
                    self.condition.wait(0.5)
        return None

    def _infer(self) -> None:
        from segtrt.runtime.inference import run_batch

        try:
            while (batch := self._collect()) is not None:
                started = time.monotonic()
                outputs = run_batch(self.backend, np.concatenate([frame.model_input for frame in batch]))
                self._put((batch, outputs, started, 1000 * (time.monotonic() - started)))
        except Exception as error:  # noqa: BLE001  (reported in the summary; the output thread must still end)
            self.failure = f"inference failed: {type(error).__name__}: {error}"
        finally:
            self.stop()
            self.results.put(None)
            for capture in self.captures:
                capture.stop()

    def _put(self, item) -> None:
        while not self.stop_event.is_set():
            try:
                self.results.put(item, timeout=0.2)
                return
            except queue.Full:
                continue
        self.results.put(item)  # the output thread drains after a stop: what was segmented is written

    def _write(self) -> None:
        from segtrt.runtime.inference import to_predictions

        info = self.backend.info
        try:
            while (item := self.results.get()) is not None:
                batch, outputs, inference_started, inference_ms = item
                for row, frame in enumerate(batch):
                    started = time.monotonic()
                    rows = scoring_detections(outputs, row, self.threshold)
                    prediction = to_predictions(info, [frame.index], rows, [frame.geometry], [frame.image.shape[:2]])[0]
                    written = time.monotonic()
                    source, stats = frame.source, self.stats[frame.source]
                    instances = prediction.instances
                    age_ms = 1000 * (inference_started - frame.captured)
                    drawn = draw_status(self.outputs[source].draw(frame, instances),
                                        status_text(stats.live_fps(), age_ms))
                    self.outputs[source].write(frame, drawn, instances, self.captures[source].fps)
                    self.latest.put(source, drawn, frame.index)
                    done = time.monotonic()
                    stats.record(age_ms, capture=frame.capture_ms, preprocess=frame.preprocess_ms,
                                 inference=inference_ms, postprocess=1000 * (written - started),
                                 output=1000 * (done - written), total=1000 * (done - frame.read_started))
                    if self.snapshot_every and stats.frames % self.snapshot_every == 0:
                        self.snapshot(source)
        except Exception as error:  # noqa: BLE001
            self.failure = self.failure or f"writing outputs failed: {type(error).__name__}: {error}"
            self.stop()
            while self.results.get() is not None:  # let the inference thread finish its put
                pass

    def snapshot(self, source: int) -> Path | None:
        """Write source's newest drawn frame to OUT/snapshots/<name>_<frame>.jpg; None before its first frame."""
        import cv2

        from segtrt.files import atomic_write

        _, image, frame_index = self.latest.image(source)
        if image is None:
            return None
        ok, encoded = cv2.imencode(".jpg", image, [cv2.IMWRITE_JPEG_QUALITY, JPEG_QUALITY])
        if not ok:
            raise SegtrtError(f"cannot encode a snapshot of {self.specs[source].name}")
        path = self.out / "snapshots" / f"{self.specs[source].name}_{frame_index:06d}.jpg"
        atomic_write(path, lambda file: file.write(encoded.tobytes()))
        self.snapshots += 1
        return path

    def states(self) -> list[str]:
        return [ENDED if not self._wanted(i) else capture.current_state() for i, capture in enumerate(self.captures)]

    def summary(self, interrupted: str | None = None) -> dict:
        """What DIR/summary.json holds: totals, per-stage latency_ms p50/p95/p99, and the same per source."""
        seconds = (self.finished or time.monotonic()) - self.started
        sources = []
        states = self.stopped_states or self.states()
        for index, (spec, capture, stats, output) in enumerate(zip(self.specs, self.captures, self.stats,
                                                                    self.outputs)):
            latency, age = latency_table([stats])
            sources.append({
                "source": spec.label, "name": spec.name, "kind": spec.kind, "state": states[index],
                "frames": stats.frames, "fps": round(stats.frames / seconds, 3) if seconds > 0 else 0.0,
                "captured": capture.frames, "dropped": self.buffers[index].dropped, "corrupt": capture.corrupt,
                "reconnects": capture.reconnects, "open_failures": capture.open_failures,
                "latency_ms": latency, "frame_age_ms": age,
                "video": output.video_path.name if output.video_path else None, "jsonl": output.jsonl_path.name,
                "error": capture.error,
            })
        latency, age = latency_table(self.stats)
        frames = sum(s["frames"] for s in sources)
        return {
            "frames": frames, "fps": round(frames / seconds, 3) if seconds > 0 else 0.0,
            "seconds": round(seconds, 3),
            **{key: sum(s[key] for s in sources) for key in ("reconnects", "dropped", "corrupt")},
            "latency_ms": latency, "frame_age_ms": age,
            "model": self.backend.name, "batch_size": self.batch_size, "snapshots": self.snapshots,
            "interrupted": interrupted,
            "error": self.failure, "sources": sources,
        }

    def live_figures(self) -> dict:
        """The figures of now, for the console line and the live view: totals, and per source its label
        (redacted), state, FPS over the last seconds, last frame age, counters and recent stage medians."""
        sources = []
        for index, (spec, state, capture, stats) in enumerate(zip(self.specs, self.states(), self.captures,
                                                                   self.stats)):
            age = stats.last_age_ms()
            sources.append({
                "source": spec.label, "name": spec.name, "state": state, "fps": round(stats.live_fps(), 1),
                "age_ms": round(age) if age is not None else None, "frames": stats.frames,
                "dropped": self.buffers[index].dropped, "corrupt": capture.corrupt, "reconnects": capture.reconnects,
                "latency_p50_ms": stats.recent_medians(),
            })
        return {"model": self.backend.name, "frames": sum(s["frames"] for s in sources), "sources": sources}

    def live_line(self) -> str:
        """One line of live figures for the console."""
        figures = self.live_figures()
        return " | ".join([f"{figures['frames']} frames"] + [
            f"{s['name']} {s['state']} {s['fps']:.1f} fps"
            + (f" age {s['age_ms']} ms" if s["age_ms"] is not None else "") for s in figures["sources"]])
