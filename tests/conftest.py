"""Fixtures shared by test files."""

from pathlib import Path

import pytest

SOLOV2_EDGE = Path(__file__).parents[1] / "python" / "segtrt" / "weights" / "solov2_edge.pt"


@pytest.fixture(scope="session")
def camera_model(tmp_path_factory) -> Path:
    """The shipped SOLOv2 edge model exported portable at 128x128: the quickest to export and run here, for the
    camera tests (tests/test_camera*.py), which test the pipeline, not the model. Exported once per session."""
    from segtrt.cli import main as cli_main

    path = tmp_path_factory.mktemp("camera_model") / "solov2_edge.onnx"
    assert cli_main(["export", "--checkpoint", str(SOLOV2_EDGE), "--flavour", "portable", "--input-size", "128", "128",
                     "--out", str(path)]) == 0
    return path
