"""segtrt: instance segmentation from PyTorch to TensorRT engines on NVIDIA GPUs."""

__version__ = "0.1.0"


class SegtrtError(Exception):
    """An error the user can fix; the CLI prints its message as one line, no traceback."""
