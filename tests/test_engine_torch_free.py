"""segtrt.engine runs where TensorRT, CUDA and PyTorch are missing: every module imports, `build_engine.py --help`
works, and building says in one sentence what is missing and what runs instead."""

import subprocess
import sys
import textwrap
from pathlib import Path

ROOT = Path(__file__).parents[1]
BLOCKED = ("tensorrt", "tensorrt_libs", "tensorrt_bindings", "cuda", "pycuda", "torch", "torchvision")

# Makes importing any BLOCKED package raise, then runs the given code.
BLOCK = textwrap.dedent(f'''
    import sys

    class Block:
        def find_spec(self, name, path=None, target=None):
            if name.split(".")[0] in {BLOCKED!r}:
                raise ImportError(f"No module named {{name!r}} (blocked by the test)")

    sys.meta_path.insert(0, Block())
''')


def run_blocked(code: str) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, "-c", BLOCK + textwrap.dedent(code)], capture_output=True, text=True)


def test_every_engine_module_imports_without_tensorrt_cuda_or_torch():
    result = run_blocked('''
        import importlib, pkgutil
        import segtrt.engine as package
        names = [m.name for m in pkgutil.walk_packages(package.__path__, "segtrt.engine.")]
        for name in names:
            importlib.import_module(name)
        print(" ".join(sorted(names)))
    ''')
    assert result.returncode == 0, result.stderr
    modules = set(result.stdout.split())
    # the walk found the TensorRT-facing modules too, not only the pure ones
    assert {"segtrt.engine.check", "segtrt.engine.build", "segtrt.engine.backend", "segtrt.engine.sidecar"} <= modules


def test_build_engine_help_runs_without_tensorrt():
    result = run_blocked(f'''
        import runpy, sys
        sys.argv = ["build_engine.py", "--help"]
        runpy.run_path({str(ROOT / "python" / "build_engine.py")!r}, run_name="__main__")
    ''')
    assert result.returncode == 0, result.stderr
    assert "--check" in result.stdout and "--plugins" in result.stdout and "--dla-core" in result.stdout


def test_the_blocker_itself_refuses_tensorrt():
    result = run_blocked("import tensorrt")
    assert result.returncode != 0 and "blocked by the test" in result.stderr
