"""The figures of a run: per-stage latency percentiles, frame age, FPS, counters, per source and in all.

Latencies are kept over the last WINDOW frames of each source (bounded: a run of
days must not grow), so percentiles describe the recent past of a long run and
the whole of a short one.
"""

from __future__ import annotations

import threading
import time
from collections import deque
from itertools import islice

import numpy as np

STAGES = ("capture", "preprocess", "inference", "postprocess", "output", "total")
WINDOW = 10_000
RATE_WINDOW_S = 3.0  # the live FPS is the rate over the last seconds
LIVE_SAMPLES = 100  # the live view's latencies are medians of the last frames


class SourceStats:
    """Latencies (ms) and output times of one source's segmented frames.

    Written by the output thread; the live view reads it from its own threads, under `lock`.
    """

    def __init__(self):
        self.lock = threading.Lock()
        self.latency = {stage: deque(maxlen=WINDOW) for stage in STAGES}
        self.frame_age = deque(maxlen=WINDOW)
        self.recent = deque()  # output times within RATE_WINDOW_S, for the live FPS
        self.frames = 0

    def record(self, frame_age_ms: float, **stage_ms: float) -> None:
        now = time.monotonic()
        with self.lock:
            for stage, value in stage_ms.items():
                self.latency[stage].append(value)
            self.frame_age.append(frame_age_ms)
            self.frames += 1
            self.recent.append(now)
            while self.recent and now - self.recent[0] > RATE_WINDOW_S:
                self.recent.popleft()

    def live_fps(self) -> float:
        with self.lock:
            if len(self.recent) < 2:
                return 0.0
            return (len(self.recent) - 1) / max(self.recent[-1] - self.recent[0], 1e-9)

    def last_age_ms(self) -> float | None:
        with self.lock:
            return self.frame_age[-1] if self.frame_age else None

    def recent_medians(self) -> dict:
        """{stage: median ms over the last LIVE_SAMPLES frames, or None}: what the live view shows."""
        with self.lock:
            samples = {stage: list(islice(reversed(values), LIVE_SAMPLES)) for stage, values in self.latency.items()}
        return {stage: round(float(np.median(values)), 1) if values else None for stage, values in samples.items()}


def percentiles(values) -> dict | None:
    """{"p50", "p95", "p99"} of a sample, rounded to 0.1 ms; None for no sample."""
    if len(values) == 0:
        return None
    p50, p95, p99 = np.percentile(np.asarray(values, dtype=np.float64), [50, 95, 99])
    return {"p50": round(float(p50), 1), "p95": round(float(p95), 1), "p99": round(float(p99), 1)}


def latency_table(stats: list[SourceStats]) -> tuple[dict, dict | None]:
    """(per-stage percentiles, frame-age percentiles) over the given sources' samples together."""
    latency = {stage: percentiles([v for s in stats for v in s.latency[stage]]) for stage in STAGES}
    return latency, percentiles([v for s in stats for v in s.frame_age])


def format_summary(summary: dict) -> str:
    """The final table a person reads: one row per source, then the stage latencies."""
    rows = [("source", "state", "frames", "fps", "dropped", "corrupt", "reconnects", "age p95 ms")]
    for source in summary["sources"]:
        age = source["frame_age_ms"]
        rows.append((source["source"], source["state"], str(source["frames"]), f"{source['fps']:.2f}",
                     str(source["dropped"]), str(source["corrupt"]), str(source["reconnects"]),
                     f"{age['p95']:.0f}" if age else "-"))
    rows.append(("all", "", str(summary["frames"]), f"{summary['fps']:.2f}", str(summary["dropped"]),
                 str(summary["corrupt"]), str(summary["reconnects"]), ""))
    lines = _table(rows)
    lines += ["", *_table([("latency ms", "p50", "p95", "p99")] + [
        (stage, *(f"{figures[key]:.1f}" for key in ("p50", "p95", "p99")))
        for stage, figures in summary["latency_ms"].items() if figures
    ])]
    for source in summary["sources"]:
        if source.get("error"):
            lines.append(f"{source['source']}: {source['error']}")
    return "\n".join(lines)


def _table(rows) -> list[str]:
    widths = [max(len(row[column]) for row in rows) for column in range(len(rows[0]))]
    return ["  ".join(cell.ljust(width) if column == 0 else cell.rjust(width)
                      for column, (cell, width) in enumerate(zip(row, widths))).rstrip() for row in rows]
