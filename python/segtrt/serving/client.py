"""A KServe v2 HTTP client for the Python-backend model, over urllib with binary tensors (no tritonclient).

    detections = infer("http://127.0.0.1:8000", "segtrt", Path("photo.png").read_bytes())
    detections["boxes"]    # [n, 4] float32, original-image pixels; scores [n], labels [n], masks [n, h, w] bool

Binary tensor extension: the request body is a JSON header (its length in the
Inference-Header-Content-Length header) followed by the raw input bytes; outputs asked for as
binary come back the same way, in the order the response's JSON lists them.
"""

from __future__ import annotations

import json
import struct
import time
import urllib.error
import urllib.request

import numpy as np

from segtrt import SegtrtError
from segtrt.runtime.model_info import OUTPUT_NAMES

HEADER_LENGTH = "Inference-Header-Content-Length"
# KServe v2 datatype -> NumPy dtype of the outputs we read
DATATYPES = {"BOOL": np.bool_, "INT32": np.int32, "INT64": np.int64, "FP32": np.float32, "UINT8": np.uint8}


def infer(url: str, model: str, image: bytes, timeout: float = 60.0) -> dict[str, np.ndarray]:
    """One encoded image -> its detections {name: array without the batch dimension}; SegtrtError with the
    server's message on an error response."""
    header = json.dumps({
        "inputs": [{"name": "image", "shape": [1, 1], "datatype": "BYTES",
                    "parameters": {"binary_data_size": 4 + len(image)}}],
        "outputs": [{"name": name, "parameters": {"binary_data": True}} for name in OUTPUT_NAMES],
    }).encode()
    body = header + struct.pack("<I", len(image)) + image
    request = urllib.request.Request(f"{url}/v2/models/{model}/infer", data=body, method="POST", headers={
        "Content-Type": "application/octet-stream", HEADER_LENGTH: str(len(header))})
    try:
        with urllib.request.urlopen(request, timeout=timeout) as response:
            length = response.headers.get(HEADER_LENGTH)
            payload = response.read()
    except urllib.error.HTTPError as error:
        message = error.read().decode(errors="replace")
        try:
            message = json.loads(message)["error"]
        except (ValueError, KeyError):
            pass
        raise SegtrtError(f"{model} at {url} answered {error.code}: {message}") from None
    except (urllib.error.URLError, OSError) as error:
        raise SegtrtError(f"cannot reach {url} ({error})") from None
    return _parse(payload, int(length) if length is not None else len(payload))


def _parse(payload: bytes, header_length: int) -> dict[str, np.ndarray]:
    header = json.loads(payload[:header_length])
    offset, outputs = header_length, {}
    for output in header["outputs"]:
        dtype, shape = DATATYPES[output["datatype"]], output["shape"]
        size = output.get("parameters", {}).get("binary_data_size")
        if size is None:  # sent as JSON (the server may ignore the binary request for some types)
            values = np.asarray(output["data"], dtype)
        else:
            values = np.frombuffer(payload[offset:offset + size], dtype)
            offset += size
        outputs[output["name"]] = values.reshape(shape)[0]
    return outputs


def is_ready(url: str, model: str | None = None, timeout: float = 2.0) -> bool:
    """Whether the server (and `model`, if given) answers ready."""
    path = f"/v2/models/{model}/ready" if model else "/v2/health/ready"
    try:
        with urllib.request.urlopen(f"{url}{path}", timeout=timeout) as response:
            return response.status == 200
    except (urllib.error.URLError, OSError):
        return False


def statistics(url: str, model: str) -> dict:
    """The server's statistics of `model` (inference and execution counts, batch sizes, queue times)."""
    with urllib.request.urlopen(f"{url}/v2/models/{model}/stats", timeout=10) as response:
        (entry,) = json.loads(response.read())["model_stats"]
    return entry


def wait_ready(url: str, model: str | None, seconds: float, alive=lambda: True) -> None:
    """Poll until `model` (None: the server) is ready; SegtrtError after `seconds`, or as soon as alive() is false."""
    what = model or "the server"
    deadline = time.monotonic() + seconds
    while time.monotonic() < deadline:
        if not alive():
            raise SegtrtError(f"the server at {url} exited before {what} was ready")
        if is_ready(url, model):
            return
        time.sleep(0.1)
    raise SegtrtError(f"{what} at {url} was not ready after {seconds:.0f} s")
