"""The camera runtime behind `segtrt run` and python/run_camera.py: live, pipelined segmentation of
video files, image folders, cameras and streams, several sources in one process. No torch.

- sources: `--source` kinds, credential redaction, one capture thread per source with its state
  (connecting, live, stalled, reconnecting, ended), latest-frame slots for live sources
- pipeline: the inference thread (batches across sources) and the output thread (video, JSON Lines)
- stats: per-stage latency percentiles, frame age, FPS, the summary table
- run: the `segtrt run` command
"""
