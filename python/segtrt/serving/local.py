"""A tritonserver on 127.0.0.1 for a segtrt model repository, from the nvidia-pytriton wheel's own copy.

    with LocalTriton("runs/triton-repo", ["segtrt"]) as server:         # waits until the models are ready
        infer(server.url, "segtrt", image_bytes)

    python -m segtrt.serving.local runs/triton-repo                     # serve until Ctrl-C

nvidia-pytriton 0.7 bundles tritonserver 2.51 with the Python backend only (no onnxruntime or TensorRT
backend), running on CPU. It wants numpy<2, so it lives in its own venv (.venv-triton, `make
triton-venv`, requirements-triton.txt) beside segtrt's. Three things make its server run outside
pytriton (DESIGN.md): a backend folder with the Python-backend stub built for that venv's Python; the
stub's libpython (the venv interpreter's own, not the system's) on LD_LIBRARY_PATH, else loading a
model fails on an `_thread.RLock` error; and the venv's bin/ first on PATH, from which the stub's
embedded interpreter takes its prefix, hence the venv's site-packages. That interpreter ignores
PYTHONPATH (measured: sys.flags.ignore_environment is 1 in the stub), so segtrt's python/ folder reaches
it through a .pth file in the venv's site-packages, which `make triton-venv` writes. The server is
always stopped (terminate, then kill) when the block ends, and its log is kept for error messages.
"""

from __future__ import annotations

import argparse
import os
import signal
import socket
import subprocess
import sys
import tempfile
from pathlib import Path
from typing import Sequence

from segtrt import SegtrtError
from segtrt.serving.client import wait_ready

ROOT = Path(__file__).resolve().parents[3]
DEFAULT_VENV = ROOT / ".venv-triton"
SEGTRT_PYTHON = ROOT / "python"
READY_SECONDS = 120.0


def free_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return probe.getsockname()[1]


class LocalTriton:
    """tritonserver from `venv` serving `repository` over HTTP on 127.0.0.1 (gRPC and metrics off)."""

    def __init__(self, repository, models: Sequence[str] = (), venv=DEFAULT_VENV, port: int | None = None,
                 ready_seconds: float = READY_SECONDS):
        """models: the models to load (all of the repository's when empty)."""
        self.repository = Path(repository).resolve()
        self.models = tuple(models)
        self.venv = Path(venv)
        self.port = port
        self.ready_seconds = ready_seconds
        self.process: subprocess.Popen | None = None
        self.log_path: Path | None = None
        self._workdir: tempfile.TemporaryDirectory | None = None

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    def _venv_facts(self) -> tuple[str, Path, Path]:
        """(Python version "3.11", the interpreter's libpython folder, site-packages) of the triton venv."""
        python = self.venv / "bin" / "python"
        if not python.exists():
            raise SegtrtError(f"no Triton venv at {self.venv}: make it with `make triton-venv` "
                              "(nvidia-pytriton's tritonserver needs numpy<2, so it has its own venv)")
        # -I: as the stub's interpreter, without PYTHONPATH; the venv's .pth files still apply
        code = ("import sys, sysconfig, site; print(f'{sys.version_info[0]}.{sys.version_info[1]}'); "
                "print(sysconfig.get_config_var('LIBDIR')); print(site.getsitepackages()[0]); import segtrt; "
                "print(segtrt.__file__)")
        result = subprocess.run([str(python), "-I", "-c", code], capture_output=True, text=True)
        lines = result.stdout.split("\n")
        if result.returncode != 0 or len(lines) < 4:
            raise SegtrtError(f"segtrt does not import in {self.venv} ({result.stderr.strip().splitlines()[-1:]}); "
                              "rebuild it with `make triton-venv`")
        version, libdir, site_packages, segtrt_file = lines[:4]
        if Path(segtrt_file).resolve().parents[1] != SEGTRT_PYTHON:
            raise SegtrtError(f"{self.venv} imports segtrt from {Path(segtrt_file).parents[1]}, not this checkout's "
                              f"{SEGTRT_PYTHON}; rebuild it with `make triton-venv`")
        return version, Path(libdir), Path(site_packages)

    def start(self) -> "LocalTriton":
        version, libdir, site_packages = self._venv_facts()
        distribution = site_packages / "pytriton" / "tritonserver"
        server = distribution / "bin" / "tritonserver"
        stub = distribution / "python_backend_stubs" / version / "triton_python_backend_stub"
        if not server.is_file() or not stub.is_file():
            raise SegtrtError(f"{self.venv} has no tritonserver with a Python {version} stub "
                              f"({server}); rebuild it with `make triton-venv`")
        self._workdir = tempfile.TemporaryDirectory(prefix="segtrt-triton-")
        work = Path(self._workdir.name)
        backend = work / "backends" / "python"
        backend.mkdir(parents=True)
        for item in (distribution / "backends" / "python").iterdir():
            if item.is_file():
                (backend / item.name).symlink_to(item)
        (backend / "triton_python_backend_stub").symlink_to(stub)
        libraries = [str(libdir), str(site_packages / "nvidia_pytriton.libs")]
        environment = dict(os.environ)
        environment["LD_LIBRARY_PATH"] = ":".join(libraries + [p for p in [environment.get("LD_LIBRARY_PATH")] if p])
        environment["PATH"] = f"{self.venv / 'bin'}:{environment.get('PATH', '')}"
        self.port = self.port or free_port()
        self.log_path = work / "tritonserver.log"
        command = [str(server), f"--model-repository={self.repository}", f"--backend-directory={work / 'backends'}",
                   "--http-address=127.0.0.1", f"--http-port={self.port}", "--allow-grpc=false",
                   "--allow-metrics=false", "--exit-on-error=true", "--log-verbose=0"]
        if self.models:  # only these: the wheel's server has no onnxruntime or TensorRT backend for the others
            command += ["--model-control-mode=explicit", *(f"--load-model={model}" for model in self.models)]
        with open(self.log_path, "wb") as log:
            self.process = subprocess.Popen(command, stdout=log, stderr=subprocess.STDOUT, env=environment,
                                            start_new_session=True)
        process = self.process
        try:
            for model in self.models or (None,):
                wait_ready(self.url, model, self.ready_seconds, alive=lambda: process.poll() is None)
        except SegtrtError as error:
            log_tail = self.log_tail()
            self.stop()
            raise SegtrtError(f"{error}; tritonserver's log ends: {log_tail}") from None
        return self

    def log_tail(self, lines: int = 5) -> str:
        if self.log_path is None or not self.log_path.is_file():
            return "(no log)"
        return " | ".join(self.log_path.read_text(errors="replace").strip().splitlines()[-lines:])

    def stop(self) -> None:
        """Terminate the server (its whole process group: the Python-backend stubs too), kill after 15 s."""
        if self.process is not None and self.process.poll() is None:
            os.killpg(self.process.pid, signal.SIGTERM)
            try:
                self.process.wait(timeout=15)
            except subprocess.TimeoutExpired:
                os.killpg(self.process.pid, signal.SIGKILL)
                self.process.wait()
        self.process = None
        if self._workdir is not None:
            self._workdir.cleanup()
            self._workdir = None

    def __enter__(self) -> "LocalTriton":
        return self.start()

    def __exit__(self, *exc) -> None:
        self.stop()


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(prog="python -m segtrt.serving.local", description=__doc__.split("\n")[0])
    parser.add_argument("repository", type=Path, help="model repository from `segtrt triton-repo`")
    parser.add_argument("--model", action="append", dest="models", metavar="NAME",
                        help="a Python-backend model to load, repeatable (default segtrt; the wheel's server has no "
                             "onnxruntime or TensorRT backend)")
    parser.add_argument("--port", type=int, default=8000, help="HTTP port on 127.0.0.1 (default 8000)")
    parser.add_argument("--venv", type=Path, default=DEFAULT_VENV, help=f"the Triton venv (default {DEFAULT_VENV})")
    args = parser.parse_args(argv)
    models = args.models or ["segtrt"]
    server = LocalTriton(args.repository, models, venv=args.venv, port=args.port)
    try:
        server.start()
        print(f"serving {', '.join(models)} of {args.repository} at {server.url} (Ctrl-C stops)", flush=True)
        assert server.process is not None
        server.process.wait()
        print(f"tritonserver exited: {server.log_tail()}", file=sys.stderr)
        return 1
    except SegtrtError as error:
        print(f"segtrt.serving.local: error: {error}", file=sys.stderr)
        return 2
    except KeyboardInterrupt:
        return 0
    finally:
        server.stop()


if __name__ == "__main__":
    sys.exit(main())
