"""A Jetson deploys without PyTorch: nothing under segtrt.runtime (nor the CPU twins, the evaluator, the report)
imports torch, and predicting with an exported model works in a process where `import torch` fails."""

import subprocess
import sys
import textwrap
from pathlib import Path

import pytest

SHIPPED = Path(__file__).parents[1] / "python" / "segtrt" / "weights" / "solov2_edge.pt"
TORCH_FREE_PACKAGES = ("segtrt.runtime", "segtrt.ops", "segtrt.evaluation", "segtrt.report")

# Makes `import torch` (and torchvision) raise, then runs the given code.
BLOCK_TORCH = textwrap.dedent('''
    import sys

    class BlockTorch:
        def find_spec(self, name, path=None, target=None):
            if name.split(".")[0] in ("torch", "torchvision"):
                raise ImportError(f"{name} imported where segtrt must run without torch")

    sys.meta_path.insert(0, BlockTorch())
''')


def run_without_torch(code: str) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, "-c", BLOCK_TORCH + textwrap.dedent(code)], capture_output=True, text=True)


def test_every_runtime_module_imports_without_torch():
    result = run_without_torch(f'''
        import importlib, pkgutil
        names = []
        for package_name in {TORCH_FREE_PACKAGES!r}:
            package = importlib.import_module(package_name)
            names += [m.name for m in pkgutil.walk_packages(package.__path__, package_name + ".")]
        for name in names:
            importlib.import_module(name)
        print(len(names), "modules")
    ''')
    assert result.returncode == 0, result.stderr
    assert int(result.stdout.split()[0]) >= 10  # the walk found the package's modules, not nothing


def test_cli_help_and_predict_with_an_onnx_file_run_without_torch(tmp_path):
    from segtrt.cli import main as cli_main

    assert cli_main(["export", "--checkpoint", str(SHIPPED), "--flavour", "trt",
                     "--out", str(tmp_path / "model.onnx")]) == 0
    from segtrt.data.synth import write_dataset

    write_dataset(tmp_path / "data", 2, seed=1000, size=(192, 192), progress=False)
    result = run_without_torch(f'''
        from segtrt.cli import main
        assert main(["predict", "--model", {str(tmp_path / "model.onnx")!r},
                     "--source", {str(tmp_path / "data" / "images")!r}, "--out", {str(tmp_path / "out")!r}]) == 0
    ''')
    assert result.returncode == 0, result.stderr
    assert (tmp_path / "out" / "predictions.json").stat().st_size > 2
    assert len(list((tmp_path / "out").glob("*.png"))) == 2

    result = run_without_torch("from segtrt.cli import main; main(['--help'])")
    assert "predict" in result.stdout, result.stderr


def test_a_checkpoint_without_torch_is_one_clear_sentence(tmp_path):
    import cv2
    import numpy as np

    cv2.imwrite(str(tmp_path / "image.png"), np.zeros((32, 32, 3), np.uint8))
    result = run_without_torch(f'''
        import sys
        from segtrt.cli import main
        sys.exit(main(["predict", "--model", {str(SHIPPED)!r}, "--source", {str(tmp_path)!r},
                       "--out", {str(tmp_path / "out")!r}]))
    ''')
    assert result.returncode == 2
    assert "needs PyTorch" in result.stderr and "Traceback" not in result.stderr
    assert len(result.stderr.strip().splitlines()) == 1


@pytest.mark.parametrize("module", ["segtrt.runtime.postprocess"])
def test_the_check_fails_when_a_runtime_module_imports_torch(module):
    """The blocker itself works: the same import, with torch imported first, is refused."""
    result = run_without_torch(f"import torch\nimport {module}")
    assert result.returncode != 0 and "must run without torch" in result.stderr


def test_run_camera_help_runs_without_torch():
    """python/run_camera.py, the promised entry point, as a Jetson without PyTorch starts it."""
    script = Path(__file__).parents[1] / "python" / "run_camera.py"
    result = run_without_torch(f'''
        import runpy, sys
        sys.path.insert(0, {str(script.parent)!r})  # what `python python/run_camera.py` puts first
        sys.argv = [{str(script)!r}, "--help"]
        runpy.run_path({str(script)!r}, run_name="__main__")
    ''')
    assert result.returncode == 0, result.stderr
    assert "--source" in result.stdout and "--max-frames" in result.stdout and "--json" in result.stdout
